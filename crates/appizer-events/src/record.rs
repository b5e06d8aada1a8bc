//! The queue record of one accepted request: its events in a compact binary layout, so
//! the workers read them back without scanning or unescaping JSON.
//!
//! Layout (little endian): the tag byte `1`, the event count (u32), then per event the
//! fields in [`Event`] order. Text is a u32 byte length and UTF-8 bytes; an optional
//! field is a presence byte (0 or 1) then the value; a time is microseconds since the
//! epoch (i64); ids are 16 bytes. This is the one record format: any other first byte
//! is refused.

use appizer_core::event::{Dialect, Event, MessageType};
use appizer_core::json::JsonObject;
use appizer_core::ProjectId;
use chrono::{DateTime, Utc};

const TAG_V1: u8 = 1;

/// Why a record could not be read (only a bug or a foreign file gets here: records are
/// checksummed).
#[derive(Debug, thiserror::Error)]
#[error("undecodable queue record: {0}")]
pub struct RecordError(String);

/// Encodes the events of one accepted request.
pub fn encode_record(events: &[Event]) -> Vec<u8> {
    let size: usize = events
        .iter()
        .map(|e| {
            96 + e.message_id.len()
                + e.event.len()
                + e.distinct_id.len()
                + e.properties.as_str().len()
                + e.traits.as_str().len()
                + e.context.as_str().len()
        })
        .sum();
    let mut out = Vec::with_capacity(5 + size);
    out.push(TAG_V1);
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for e in events {
        out.extend_from_slice(e.project_id.as_uuid().as_bytes());
        put_str(&mut out, &e.message_id);
        out.push(message_type_code(e.message_type));
        put_str(&mut out, &e.event);
        put_str(&mut out, &e.distinct_id);
        for field in [
            &e.user_id,
            &e.anonymous_id,
            &e.name,
            &e.group_id,
            &e.previous_id,
        ] {
            put_opt_str(&mut out, field.as_deref());
        }
        put_str(&mut out, e.properties.as_str());
        put_str(&mut out, e.traits.as_str());
        put_str(&mut out, e.context.as_str());
        put_opt_time(&mut out, e.original_timestamp);
        put_opt_time(&mut out, e.sent_at);
        put_time(&mut out, e.timestamp);
        put_time(&mut out, e.received_at);
        put_opt_str(&mut out, e.ip.as_deref());
        out.push(match e.dialect {
            Dialect::Segment => 0,
            Dialect::Posthog => 1,
        });
    }
    out
}

/// The events of one accepted request as queue records of at most `max_bytes` each:
/// one record unless the queue's record limit is smaller (JetStream's `max_payload`),
/// then as many as it takes, each holding whole events. A request stored in several
/// records is safe to retry after a partial failure: the workers drop the events of
/// the records that did land by their message ids.
pub fn encode_records(events: &[Event], max_bytes: usize) -> Vec<Vec<u8>> {
    let record = encode_record(events);
    if record.len() <= max_bytes || events.len() <= 1 {
        return vec![record];
    }
    let (first, second) = events.split_at(events.len() / 2);
    let mut out = encode_records(first, max_bytes);
    out.extend(encode_records(second, max_bytes));
    out
}

/// The events of a queue record.
pub fn decode_record(payload: &[u8]) -> Result<Vec<Event>, RecordError> {
    match payload.first() {
        Some(&TAG_V1) => Reader {
            rest: &payload[1..],
        }
        .events(),
        _ => Err(RecordError("unknown record tag".into())),
    }
}

fn message_type_code(t: MessageType) -> u8 {
    MessageType::ALL
        .iter()
        .position(|m| *m == t)
        .expect("every type is listed") as u8
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn put_time(out: &mut Vec<u8>, t: DateTime<Utc>) {
    out.extend_from_slice(&t.timestamp_micros().to_le_bytes());
}

fn put_opt_time(out: &mut Vec<u8>, t: Option<DateTime<Utc>>) {
    match t {
        Some(t) => {
            out.push(1);
            put_time(out, t);
        }
        None => out.push(0),
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.rest.len() < n {
            return Err(RecordError("record ends early".into()));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn string(&mut self) -> Result<String, RecordError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RecordError("text is not UTF-8".into()))
    }

    fn flag(&mut self) -> Result<bool, RecordError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError("bad presence byte".into())),
        }
    }

    fn opt_string(&mut self) -> Result<Option<String>, RecordError> {
        if self.flag()? {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }

    fn object(&mut self) -> Result<JsonObject, RecordError> {
        let text = self.string()?;
        if !text.starts_with('{') {
            return Err(RecordError("an object field is not an object".into()));
        }
        Ok(JsonObject::from_trusted_text(text))
    }

    fn time(&mut self) -> Result<DateTime<Utc>, RecordError> {
        let micros = i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
        DateTime::from_timestamp_micros(micros).ok_or_else(|| RecordError("bad time".into()))
    }

    fn opt_time(&mut self) -> Result<Option<DateTime<Utc>>, RecordError> {
        if self.flag()? {
            self.time().map(Some)
        } else {
            Ok(None)
        }
    }

    fn events(mut self) -> Result<Vec<Event>, RecordError> {
        let count = self.u32()? as usize;
        // Each event takes well over 64 bytes: a corrupt count cannot over-allocate.
        let mut events = Vec::with_capacity(count.min(self.rest.len() / 64 + 1));
        for _ in 0..count {
            events.push(self.event()?);
        }
        if !self.rest.is_empty() {
            return Err(RecordError("bytes after the last event".into()));
        }
        Ok(events)
    }

    fn event(&mut self) -> Result<Event, RecordError> {
        let project = uuid::Uuid::from_slice(self.take(16)?).expect("16 bytes");
        let message_id = self.string()?;
        let message_type = *MessageType::ALL
            .get(self.byte()? as usize)
            .ok_or_else(|| RecordError("bad message type".into()))?;
        Ok(Event {
            project_id: ProjectId::from(project),
            message_id,
            message_type,
            event: self.string()?,
            distinct_id: self.string()?,
            user_id: self.opt_string()?,
            anonymous_id: self.opt_string()?,
            name: self.opt_string()?,
            group_id: self.opt_string()?,
            previous_id: self.opt_string()?,
            properties: self.object()?,
            traits: self.object()?,
            context: self.object()?,
            original_timestamp: self.opt_time()?,
            sent_at: self.opt_time()?,
            timestamp: self.time()?,
            received_at: self.time()?,
            person_id: None,
            ip: self.opt_string()?,
            dialect: match self.byte()? {
                0 => Dialect::Segment,
                1 => Dialect::Posthog,
                _ => return Err(RecordError("bad dialect".into())),
            },
            context_read: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events() -> Vec<Event> {
        let at = DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap();
        let full = Event {
            user_id: Some("u1".into()),
            anonymous_id: Some("anon \"é\"".into()),
            name: Some("Home".into()),
            group_id: Some("g".into()),
            previous_id: Some("p".into()),
            properties: json!({"price": 79.99, "tags": ["a", "b"], "nested": {"x": null}})
                .try_into()
                .unwrap(),
            traits: json!({"plan": "pro"}).try_into().unwrap(),
            context: json!({"userAgent": "Mozilla/5.0", "ip": "203.0.113.9"})
                .try_into()
                .unwrap(),
            original_timestamp: Some(at - chrono::Duration::seconds(3)),
            sent_at: Some(at),
            ip: Some("203.0.113.9".into()),
            dialect: Dialect::Posthog,
            ..Event::new(
                ProjectId::new(),
                MessageType::Identify,
                "$identify",
                "u1",
                at,
            )
        };
        let bare = Event::new(ProjectId::new(), MessageType::Alias, "", "d", at);
        vec![full, bare]
    }

    #[test]
    fn events_round_trip() {
        let events = events();
        let record = encode_record(&events);
        assert_eq!(record[0], TAG_V1);
        assert_eq!(decode_record(&record).unwrap(), events);
        assert!(decode_record(&encode_record(&[])).unwrap().is_empty());
    }

    #[test]
    fn a_request_over_the_record_limit_is_split_into_records_of_whole_events() {
        let many: Vec<Event> = (0..40).flat_map(|_| events()).collect();
        let whole = encode_record(&many);
        assert_eq!(encode_records(&many, whole.len()), vec![whole.clone()]);

        let limit = whole.len() / 5;
        let records = encode_records(&many, limit);
        assert!(records.len() >= 5, "{} records", records.len());
        assert!(records.iter().all(|r| r.len() <= limit));
        let back: Vec<Event> = records
            .iter()
            .flat_map(|r| decode_record(r).unwrap())
            .collect();
        assert_eq!(back, many, "every event once, in order");

        // One event over the limit still goes as one record: the queue refuses it.
        let one = &many[..1];
        assert_eq!(encode_records(one, 10), vec![encode_record(one)]);
    }

    #[test]
    fn a_record_of_another_format_is_refused() {
        let json = serde_json::to_vec(&events()).unwrap();
        assert!(
            decode_record(&json).is_err(),
            "JSON records are no format of this queue"
        );
        assert!(decode_record(&[2, 0, 0, 0, 0]).is_err());
        assert!(decode_record(&[]).is_err());
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let record = encode_record(&events());
        for cut in 0..record.len() {
            assert!(decode_record(&record[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = record.clone();
        extra.push(0);
        assert!(decode_record(&extra).is_err());
        let mut huge_count = record;
        huge_count[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_record(&huge_count).is_err());
        assert!(decode_record(b"x").is_err());
    }
}
