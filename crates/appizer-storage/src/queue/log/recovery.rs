//! What the log finds on disk when it opens: its segments and spares, where its last
//! segment's records end (the first record that does not check ends it: a zero length
//! in unwritten space, an older segment's bytes in a reused file, or the torn write of
//! a crash, never acknowledged), and the committed consumer offset, kept in
//! `consumer.offset` and replaced atomically.

use std::fs::{self, File};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use super::segment::{
    chain_seed, delete_gradually, read_record, sync_dir, Segment, HEADER_BYTES, MAX_SPARES,
    SEGMENT_SUFFIX, SPARE_SUFFIX,
};
use super::LogConfig;
use crate::queue::QueueError;

pub(super) const OFFSET_FILE: &str = "consumer.offset";

/// The state of a log directory.
#[derive(Debug)]
pub(super) struct Recovered {
    /// By first offset.
    pub segments: Vec<Segment>,
    /// At most [`MAX_SPARES`]; more were deleted.
    pub spares: Vec<PathBuf>,
    /// The offset the next record gets.
    pub end: u64,
    /// Bytes of the last segment's records that check.
    pub valid_len: u64,
    /// CRC of the last record that checks (or the last segment's seed).
    pub chain: u32,
    pub committed: u64,
    /// Bytes of records on disk: whole closed segments and the last one's records.
    pub disk_bytes: u64,
}

/// Reads the directory of `config` (creating it).
pub(super) fn recover(config: &LogConfig) -> Result<Recovered, QueueError> {
    fs::create_dir_all(&config.dir)?;
    let mut segments: Vec<Segment> = Vec::new();
    let mut spares: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(&config.dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let base = |suffix: &str| name.strip_suffix(suffix)?.parse::<u64>().ok();
        if let Some(base) = base(SEGMENT_SUFFIX) {
            segments.push(Segment {
                base,
                path: entry.path(),
            });
        } else if base(SPARE_SUFFIX).is_some() {
            spares.push(entry.path());
        }
    }
    segments.sort_by_key(|s| s.base);
    spares.sort();
    for extra in spares.split_off(spares.len().min(MAX_SPARES)) {
        delete_gradually(&extra)?;
    }

    let (mut end, mut valid_len, mut chain) = (0u64, 0u64, chain_seed(0));
    if let Some(last) = segments.last() {
        let mut reader = BufReader::new(File::open(&last.path)?);
        chain = chain_seed(last.base);
        let mut records = 0u64;
        loop {
            match read_record(&mut reader, config.max_record_bytes, &mut chain) {
                Ok(Some(payload)) => {
                    records += 1;
                    valid_len += HEADER_BYTES + payload.len() as u64;
                }
                Ok(None) => break,
                Err(reason) => {
                    // Also how a reused segment's older bytes end it.
                    tracing::debug!(segment = %last.path.display(), valid_len, reason, "end of the queue log");
                    break;
                }
            }
        }
        end = last.base + records;
    }
    let committed = read_offset(&config.dir)?.min(end);
    let mut disk_bytes = 0;
    for (i, segment) in segments.iter().enumerate() {
        disk_bytes += if i + 1 == segments.len() {
            valid_len
        } else {
            fs::metadata(&segment.path)?.len()
        };
    }
    Ok(Recovered {
        segments,
        spares,
        end,
        valid_len,
        chain,
        committed,
        disk_bytes,
    })
}

fn read_offset(dir: &Path) -> Result<u64, QueueError> {
    match fs::read_to_string(dir.join(OFFSET_FILE)) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| QueueError::Corrupt(format!("{OFFSET_FILE} holds `{}`", text.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the committed offset atomically and durably.
pub(super) fn write_offset(dir: &Path, offset: u64) -> std::io::Result<()> {
    let tmp = dir.join(format!("{OFFSET_FILE}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(offset.to_string().as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(OFFSET_FILE))?;
    sync_dir(dir)
}
