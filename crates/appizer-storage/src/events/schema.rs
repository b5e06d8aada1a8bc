//! The Arrow schema of stored events and the conversions between [`Event`]s and record
//! batches. The same schema is used by the in-memory buffer and the Parquet files, so
//! queries union them directly; JSON-valued fields (properties, traits, context) are
//! stored as JSON text.

use std::sync::Arc;

use appizer_core::event::{ContextFields, Event};
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringBuilder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use serde::Serialize;

/// Columns holding text, in schema order after the timestamps.
const TEXT_COLUMNS: [(&str, bool); 21] = [
    ("project_id", false),
    ("message_id", false),
    ("message_type", false),
    ("event", false),
    ("distinct_id", false),
    ("person_id", true),
    ("user_id", true),
    ("anonymous_id", true),
    ("name", true),
    ("group_id", true),
    ("previous_id", true),
    ("ip", true),
    ("dialect", false),
    ("browser", true),
    ("os", true),
    ("device_type", true),
    ("country", true),
    ("city", true),
    ("properties", false),
    ("traits", false),
    ("context", false),
];

/// Timestamp columns, microseconds UTC.
const TIME_COLUMNS: [(&str, bool); 4] = [
    ("timestamp", false),
    ("received_at", false),
    ("original_timestamp", true),
    ("sent_at", true),
];

/// The schema of the `events` table.
pub fn event_schema() -> SchemaRef {
    static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
            let fields: Vec<Field> = TIME_COLUMNS
                .iter()
                .map(|(name, nullable)| Field::new(*name, ts.clone(), *nullable))
                .chain(
                    TEXT_COLUMNS
                        .iter()
                        .map(|(name, nullable)| Field::new(*name, DataType::Utf8, *nullable)),
                )
                .collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// The text columns nearly every query filters or groups by, read from Parquet as
/// string views: a view points into the decoded page or dictionary instead of copying
/// each value into a new buffer.
pub const VIEW_COLUMNS: [&str; 3] = ["event", "distinct_id", "person_id"];

/// The schema queries read: [`event_schema`] with [`VIEW_COLUMNS`] as `Utf8View`.
pub fn query_schema() -> SchemaRef {
    static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields: Vec<Field> = event_schema()
                .fields()
                .iter()
                .map(|f| {
                    if VIEW_COLUMNS.contains(&f.name().as_str()) {
                        f.as_ref().clone().with_data_type(DataType::Utf8View)
                    } else {
                        f.as_ref().clone()
                    }
                })
                .collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// One record batch holding `events`, in order.
pub fn events_to_batch(events: &[Event]) -> Result<RecordBatch, ArrowError> {
    let n = events.len();
    let time = |get: &dyn Fn(&Event) -> Option<DateTime<Utc>>| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        for e in events {
            b.append_option(get(e).map(micros));
        }
        Arc::new(b.finish())
    };
    let text = |get: &dyn Fn(&Event) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for e in events {
            b.append_option(get(e));
        }
        Arc::new(b.finish())
    };
    // The enrichment columns: the context fields the workers remembered (or one scan
    // of each context here).
    let derived: Vec<_> = events.iter().map(Event::context_fields).collect();
    let derived_text = |get: fn(&ContextFields) -> &Option<String>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 8);
        for d in &derived {
            b.append_option(get(d).as_deref());
        }
        Arc::new(b.finish())
    };
    let project_id = events.first().map(|e| e.project_id.to_string());
    let columns: Vec<ArrayRef> = vec![
        time(&|e| Some(e.timestamp)),
        time(&|e| Some(e.received_at)),
        time(&|e| e.original_timestamp),
        time(&|e| e.sent_at),
        {
            // One project per batch is the common case: format its id once.
            let mut b = StringBuilder::with_capacity(n, n * 36);
            for e in events {
                match &project_id {
                    Some(id) if events[0].project_id == e.project_id => b.append_value(id),
                    _ => b.append_value(e.project_id.to_string()),
                }
            }
            Arc::new(b.finish())
        },
        text(&|e| Some(&e.message_id)),
        text(&|e| Some(e.message_type.as_str())),
        text(&|e| Some(&e.event)),
        text(&|e| Some(&e.distinct_id)),
        {
            let mut b = StringBuilder::with_capacity(n, n * 36);
            for e in events {
                b.append_option(e.person_id.map(|p| p.to_string()));
            }
            Arc::new(b.finish())
        },
        text(&|e| e.user_id.as_deref()),
        text(&|e| e.anonymous_id.as_deref()),
        text(&|e| e.name.as_deref()),
        text(&|e| e.group_id.as_deref()),
        text(&|e| e.previous_id.as_deref()),
        text(&|e| e.ip.as_deref()),
        text(&|e| Some(e.dialect.as_str())),
        derived_text(|d| &d.browser),
        derived_text(|d| &d.os),
        derived_text(|d| &d.device_type),
        derived_text(|d| &d.country),
        derived_text(|d| &d.city),
        text(&|e| Some(e.properties.as_str())),
        text(&|e| Some(e.traits.as_str())),
        text(&|e| Some(e.context.as_str())),
    ];
    RecordBatch::try_new(event_schema(), columns)
}

/// A stored event as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub message_id: String,
    pub message_type: String,
    pub event: String,
    pub distinct_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_timestamp: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub dialect: String,
    pub properties: serde_json::Value,
    pub traits: serde_json::Value,
    pub context: serde_json::Value,
}

/// The events of a batch with the `events` schema (or a projection keeping every
/// column `StoredEvent` needs).
pub fn batch_to_events(batch: &RecordBatch) -> Result<Vec<StoredEvent>, ArrowError> {
    let missing = |name: &str| ArrowError::SchemaError(format!("column `{name}` missing"));
    let text = |name: &str| -> Result<Vec<Option<String>>, ArrowError> {
        let column = batch.column_by_name(name).ok_or_else(|| missing(name))?;
        if let Some(views) = column.as_string_view_opt() {
            return Ok((0..views.len())
                .map(|i| (!views.is_null(i)).then(|| views.value(i).to_string()))
                .collect());
        }
        let strings = column.as_string_opt::<i32>().ok_or_else(|| missing(name))?;
        Ok((0..strings.len())
            .map(|i| (!strings.is_null(i)).then(|| strings.value(i).to_string()))
            .collect())
    };
    let time = |name: &str| -> Result<Vec<Option<DateTime<Utc>>>, ArrowError> {
        let column = batch.column_by_name(name).ok_or_else(|| missing(name))?;
        let times = column
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| missing(name))?;
        Ok((0..times.len())
            .map(|i| {
                (!times.is_null(i))
                    .then(|| DateTime::from_timestamp_micros(times.value(i)))
                    .flatten()
            })
            .collect())
    };
    let json = |text: Option<String>| {
        text.and_then(|t| appizer_core::json::parse_readable(&t).ok())
            .unwrap_or(serde_json::Value::Object(Default::default()))
    };
    let [message_id, message_type, event, distinct_id, person_id, user_id, anonymous_id, name, group_id, previous_id, ip, dialect, properties, traits, context] =
        [
            "message_id",
            "message_type",
            "event",
            "distinct_id",
            "person_id",
            "user_id",
            "anonymous_id",
            "name",
            "group_id",
            "previous_id",
            "ip",
            "dialect",
            "properties",
            "traits",
            "context",
        ]
        .map(text);
    let [timestamp, received_at, original_timestamp, sent_at] =
        ["timestamp", "received_at", "original_timestamp", "sent_at"].map(time);
    let (mut message_id, mut message_type, mut event, mut distinct_id) =
        (message_id?, message_type?, event?, distinct_id?);
    let (mut person_id, mut user_id, mut anonymous_id, mut name) =
        (person_id?, user_id?, anonymous_id?, name?);
    let (mut group_id, mut previous_id, mut ip, mut dialect) =
        (group_id?, previous_id?, ip?, dialect?);
    let (mut properties, mut traits, mut context) = (properties?, traits?, context?);
    let (timestamp, received_at, original_timestamp, sent_at) =
        (timestamp?, received_at?, original_timestamp?, sent_at?);
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        out.push(StoredEvent {
            message_id: message_id[i].take().unwrap_or_default(),
            message_type: message_type[i].take().unwrap_or_default(),
            event: event[i].take().unwrap_or_default(),
            distinct_id: distinct_id[i].take().unwrap_or_default(),
            person_id: person_id[i].take(),
            user_id: user_id[i].take(),
            anonymous_id: anonymous_id[i].take(),
            name: name[i].take(),
            group_id: group_id[i].take(),
            previous_id: previous_id[i].take(),
            timestamp: timestamp[i].unwrap_or_default(),
            received_at: received_at[i].unwrap_or_default(),
            original_timestamp: original_timestamp[i],
            sent_at: sent_at[i],
            ip: ip[i].take(),
            dialect: dialect[i].take().unwrap_or_default(),
            properties: json(properties[i].take()),
            traits: json(traits[i].take()),
            context: json(context[i].take()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use appizer_core::event::MessageType;
    use appizer_core::ProjectId;
    use serde_json::json;

    pub fn sample(n: usize) -> Vec<Event> {
        let project_id = ProjectId::new();
        (0..n)
            .map(|i| {
                let at = DateTime::from_timestamp(1_795_000_000 + i as i64, 123_000).unwrap();
                let name = if i % 2 == 0 { "Signed Up" } else { "Clicked" };
                let who = format!("u{}", i % 3);
                Event {
                    message_id: format!("m{i}"),
                    user_id: Some(who.clone()),
                    properties: json!({"i": i, "plan": "pro"}).try_into().unwrap(),
                    context: json!({"browser": {"name": "Firefox"}, "location": {"city": "Lyon"}})
                        .try_into()
                        .unwrap(),
                    original_timestamp: Some(at),
                    ip: Some("203.0.113.1".into()),
                    ..Event::new(project_id, MessageType::Track, name, who, at)
                }
            })
            .collect()
    }

    #[test]
    fn events_survive_the_round_trip_through_arrow() {
        let events = sample(5);
        let batch = events_to_batch(&events).unwrap();
        assert_eq!(batch.num_rows(), 5);
        assert_eq!(batch.schema(), event_schema());
        let back = batch_to_events(&batch).unwrap();
        for (e, s) in events.iter().zip(&back) {
            assert_eq!(s.message_id, e.message_id);
            assert_eq!(s.event, e.event);
            assert_eq!(s.timestamp, e.timestamp);
            assert_eq!(e.properties, s.properties);
            assert_eq!(e.context, s.context);
            assert_eq!(s.original_timestamp, e.original_timestamp);
            assert_eq!(s.sent_at, None);
        }
        let browser = batch.column_by_name("browser").unwrap().as_string::<i32>();
        assert_eq!(browser.value(0), "Firefox");
    }
}
