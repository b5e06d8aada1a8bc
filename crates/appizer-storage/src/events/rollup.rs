//! Event counts per event name and quarter hour of one Parquet file, written into the
//! file's own footer (key-value metadata `appizer.rollup.v1`) when the file is written.
//! A count of events over a range aligned to quarter hours then needs no scan of the
//! file: every time zone's offset is a multiple of 15 minutes, so each quarter hour lies
//! within one local hour, day, week or month. Other Parquet engines ignore the key.

use std::collections::HashMap;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::parquet::file::metadata::{KeyValue, ParquetMetaDataReader};
use serde::{Deserialize, Serialize};

/// Length of a slot, in seconds.
pub const SLOT_SECONDS: i64 = 900;
const SLOT_MICROS: i64 = SLOT_SECONDS * 1_000_000;
/// The footer key; a later layout gets a new key, so a reader never misreads one.
pub const METADATA_KEY: &str = "appizer.rollup.v1";

/// Counts per event name and slot (the slot's start is `slot * SLOT_SECONDS` seconds
/// since the epoch).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    /// Per event name: its first slot and the counts from there on, one per slot.
    events: HashMap<String, (i64, Vec<u64>)>,
}

impl Rollup {
    /// Counts the rows of `batch` (columns `event` and `timestamp` of the event schema).
    pub fn add_batch(&mut self, batch: &RecordBatch) {
        let (Some(events), Some(times)) = (
            batch.column_by_name("event"),
            batch.column_by_name("timestamp"),
        ) else {
            return;
        };
        let events = events.as_string::<i32>();
        let times = times.as_primitive::<TimestampMicrosecondType>();
        // A file's rows come sorted by name: look the name up once per run (buffered
        // rows, in arrival order, make shorter runs).
        let mut i = 0;
        while i < batch.num_rows() {
            let name = events.value(i);
            let mut end = i + 1;
            while end < batch.num_rows() && events.value(end) == name {
                end += 1;
            }
            let (first, counts) = self
                .events
                .entry(name.to_string())
                .or_insert_with(|| (times.value(i).div_euclid(SLOT_MICROS), Vec::new()));
            for row in i..end {
                if times.is_null(row) {
                    continue;
                }
                add(first, counts, times.value(row).div_euclid(SLOT_MICROS));
            }
            i = end;
        }
    }

    /// The counts of `name` (all names when `None`), as (slot, count) pairs.
    pub fn slots<'a>(&'a self, name: Option<&'a str>) -> impl Iterator<Item = (i64, u64)> + 'a {
        self.events
            .iter()
            .filter(move |(n, _)| name.is_none_or(|want| want == n.as_str()))
            .flat_map(|(_, (first, counts))| {
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(move |(i, c)| (first + i as i64, *c))
            })
    }

    pub fn total(&self) -> u64 {
        self.events.values().flat_map(|(_, c)| c).sum()
    }

    /// The footer entry holding this rollup.
    pub fn to_metadata(&self) -> KeyValue {
        KeyValue::new(
            METADATA_KEY.to_string(),
            serde_json::to_string(self).expect("a map of numbers serializes"),
        )
    }

    /// The rollup in a footer's key-value metadata, if the file has one.
    pub fn from_metadata(entries: Option<&Vec<KeyValue>>) -> Option<Self> {
        let entry = entries?.iter().find(|kv| kv.key == METADATA_KEY)?;
        serde_json::from_str(entry.value.as_deref()?).ok()
    }

    /// Reads the rollup from the footer of the Parquet file at `path` (`None` for a
    /// file written without one).
    pub fn read(path: &Path) -> std::io::Result<Option<Self>> {
        let file = std::fs::File::open(path)?;
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .map_err(std::io::Error::other)?;
        Ok(Self::from_metadata(
            metadata.file_metadata().key_value_metadata(),
        ))
    }
}

/// Adds one to `slot` in the dense counts that start at `first`, growing them either way.
fn add(first: &mut i64, counts: &mut Vec<u64>, slot: i64) {
    if counts.is_empty() {
        *first = slot;
    }
    if slot < *first {
        let grow = (*first - slot) as usize;
        counts.splice(0..0, std::iter::repeat_n(0, grow));
        *first = slot;
    }
    let at = (slot - *first) as usize;
    if at >= counts.len() {
        counts.resize(at + 1, 0);
    }
    counts[at] += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::schema::{event_schema, events_to_batch};
    use appizer_core::event::{Event, MessageType};
    use appizer_core::ProjectId;
    use chrono::{DateTime, Utc};

    fn at(secs: i64) -> DateTime<Utc> {
        // A slot boundary.
        DateTime::from_timestamp(1_794_999_600 + secs, 0).unwrap()
    }

    #[test]
    fn counts_per_name_and_quarter_hour_survive_the_footer() {
        let project = ProjectId::new();
        // Sorted by name, then time, as files are written; one late and one early row.
        let rows = [
            ("a", 0),
            ("a", 10),
            ("a", 899),
            ("a", 900),
            ("a", 5 * 900 + 1),
            ("b", -3 * 900),
            ("b", 0),
        ];
        let events: Vec<Event> = rows
            .iter()
            .map(|(name, secs)| Event::new(project, MessageType::Track, *name, "u", at(*secs)))
            .collect();
        let batch = events_to_batch(&events).unwrap();
        let mut rollup = Rollup::default();
        rollup.add_batch(&batch);
        assert_eq!(rollup.total(), 7);
        let base = at(0).timestamp().div_euclid(SLOT_SECONDS);
        let mut a: Vec<_> = rollup.slots(Some("a")).collect();
        a.sort();
        assert_eq!(a, vec![(base, 3), (base + 1, 1), (base + 5, 1)]);
        let mut all: Vec<_> = rollup.slots(None).collect();
        all.sort();
        assert_eq!(all.iter().map(|(_, c)| c).sum::<u64>(), 7);
        assert_eq!(all[0], (base - 3, 1));
        assert_eq!(rollup.slots(Some("c")).count(), 0);

        // Through a real Parquet file.
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, with: Option<&Rollup>| {
            let path = dir.path().join(name);
            let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(
                std::fs::File::create(&path).unwrap(),
                event_schema(),
                None,
            )
            .unwrap();
            writer.write(&batch).unwrap();
            if let Some(rollup) = with {
                writer.append_key_value_metadata(rollup.to_metadata());
            }
            writer.close().unwrap();
            path
        };
        let path = write("f.parquet", Some(&rollup));
        assert_eq!(Rollup::read(&path).unwrap(), Some(rollup));
        let plain = write("plain.parquet", None);
        assert_eq!(Rollup::read(&plain).unwrap(), None);
    }
}
