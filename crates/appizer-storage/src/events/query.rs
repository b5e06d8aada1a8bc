//! Listing a project's events, newest first, with filters and keyset pagination, as a
//! DataFusion plan (filters are expressions over typed values, never SQL text).

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::{col, lit, Expr, SessionContext};
use datafusion::scalar::ScalarValue;

use super::schema::{batch_to_events, StoredEvent};
use super::store::{EventStore, EventStoreError};
use crate::persons::PersonOverrides;
use crate::ProjectScope;
use appizer_core::PersonId;

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event: Option<String>,
    pub distinct_id: Option<String>,
    /// Events at or after this time.
    pub after: Option<DateTime<Utc>>,
    /// Events before this time.
    pub before: Option<DateTime<Utc>>,
    /// `properties.<key>` equals the value (a JSON string, or the text of a number or
    /// boolean).
    pub properties: Vec<(String, String)>,
    /// Continue after this position (from a previous page).
    pub cursor: Option<Cursor>,
    pub limit: usize,
    /// Only the events of this person (after merges and splits).
    pub person: Option<PersonId>,
    /// Merges, splits and deletions since the events were stored: events show the
    /// person they belong to now, and those of deleted persons are left out.
    pub overrides: Option<Arc<PersonOverrides>>,
}

/// A position in the newest-first order: (timestamp, message id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub timestamp_us: i64,
    pub message_id: String,
}

impl Cursor {
    /// Opaque text for the API.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}", self.timestamp_us, self.message_id))
    }

    pub fn decode(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (ts, id) = text.split_once(':')?;
        Some(Self {
            timestamp_us: ts.parse().ok()?,
            message_id: id.to_string(),
        })
    }
}

fn ts_lit(us: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(us),
        Some("UTC".into()),
    ))
}

/// `json_text(json, key)`: the value at `key` of a JSON object as text (strings
/// unquoted, numbers and booleans as serde_json writes them, objects and arrays as
/// compact JSON); NULL when absent or null. One scan of each object, building nothing
/// for the other keys.
pub fn json_text_udf() -> ScalarUDF {
    create_udf(
        "json_text",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let mut out = StringBuilder::new();
            each_field(args, |doc_key| match doc_key {
                Some((doc, key)) => out.append_option(json_field_text(doc, key).as_deref()),
                None => out.append_null(),
            })?;
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

/// `json_number(json, key)`: the value at `key` as a number, as
/// `TRY_CAST(json_text(json, key) AS DOUBLE)` gives it (numbers, and strings that
/// spell one; NULL otherwise), without writing numbers out as text first.
pub fn json_number_udf() -> ScalarUDF {
    create_udf(
        "json_number",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let mut out = Float64Builder::new();
            each_field(args, |doc_key| {
                out.append_option(doc_key.and_then(|(doc, key)| json_field_number(doc, key)))
            })?;
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

/// Calls `each` with every row's (document, key) of a `(json, key)` call, `None` where
/// either is NULL.
fn each_field(
    args: &[ColumnarValue],
    mut each: impl FnMut(Option<(&str, &str)>),
) -> datafusion::error::Result<()> {
    let docs = args[0].clone().into_array(1)?;
    let docs = docs.as_string::<i32>();
    // The key is a constant in every plan built here; a column is read row by row.
    let (constant, keys) = match &args[1] {
        ColumnarValue::Scalar(ScalarValue::Utf8(key)) => (key.as_deref(), None),
        other => (None, Some(other.clone().into_array(docs.len())?)),
    };
    for i in 0..docs.len() {
        let key = match &keys {
            None => constant,
            Some(keys) => {
                let keys = keys.as_string::<i32>();
                (!keys.is_null(i)).then(|| keys.value(i))
            }
        };
        each(key.filter(|_| !docs.is_null(i)).map(|k| (docs.value(i), k)));
    }
    Ok(())
}

/// The number `json_number` gives for `key` of the JSON object `doc`.
pub fn json_field_number(doc: &str, key: &str) -> Option<f64> {
    let raw = appizer_core::json::object_fields(doc, [key])[0]?.get();
    match raw.as_bytes().first()? {
        b'-' | b'0'..=b'9' => serde_json::from_str::<f64>(raw).ok(),
        b'"' => {
            let text = raw_text(raw)?;
            <Float64Type as datafusion::arrow::compute::kernels::cast_utils::Parser>::parse(&text)
        }
        _ => None,
    }
}

/// The text `json_text` gives for `key` of the JSON object `doc`.
pub fn json_field_text(doc: &str, key: &str) -> Option<String> {
    raw_text(appizer_core::json::object_fields(doc, [key])[0]?.get())
}

/// The text `json_text` gives for one raw JSON value.
fn raw_text(raw: &str) -> Option<String> {
    match raw.as_bytes().first()? {
        b'n' => None,
        b't' | b'f' => Some(raw.to_string()),
        b'"' => match raw[1..raw.len() - 1].contains('\\') {
            false => Some(raw[1..raw.len() - 1].to_string()),
            true => serde_json::from_str::<String>(raw).ok(),
        },
        _ => serde_json::from_str::<serde_json::Value>(raw)
            .ok()
            .map(|v| v.to_string()),
    }
}

/// The text of a JSON value as `json_text` gives it (`None` for null).
pub fn json_value_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `effective_person(person_id, distinct_id)`: the person an event belongs to now under
/// `overrides` (NULL for a deleted person; the stored id when nothing changed).
pub fn effective_person_udf(overrides: Arc<PersonOverrides>) -> ScalarUDF {
    create_udf(
        "effective_person",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (persons, ids) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
            let mut out = StringBuilder::with_capacity(persons.len(), persons.len() * 36);
            for i in 0..persons.len() {
                if persons.is_null(i) {
                    out.append_null();
                    continue;
                }
                let stored = persons.value(i);
                match stored.parse::<PersonId>() {
                    Ok(p) => match overrides.effective(p, ids.value(i)) {
                        Some(now) if now == p => out.append_value(stored),
                        Some(now) => out.append_value(now.to_string()),
                        None => out.append_null(),
                    },
                    Err(_) => out.append_value(stored),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

/// One page of events, newest first, and the cursor of the next page if there is one.
pub async fn list_events(
    store: &EventStore,
    scope: ProjectScope,
    filter: &EventFilter,
) -> Result<(Vec<StoredEvent>, Option<Cursor>), EventStoreError> {
    let ctx = SessionContext::new();
    let json_text = json_text_udf();
    let before = match (&filter.cursor, filter.before) {
        (Some(c), Some(b)) => {
            Some(b.min(DateTime::from_timestamp_micros(c.timestamp_us + 1).unwrap_or(b)))
        }
        (Some(c), None) => DateTime::from_timestamp_micros(c.timestamp_us + 1),
        (None, b) => b,
    };
    let mut df = store.events(&ctx, scope, filter.after, before).await?;
    let mut predicates = Vec::new();
    if let Some(event) = &filter.event {
        predicates.push(col("event").eq(lit(event.clone())));
    }
    if let Some(id) = &filter.distinct_id {
        predicates.push(col("distinct_id").eq(lit(id.clone())));
    }
    if let Some(after) = filter.after {
        predicates.push(col("timestamp").gt_eq(ts_lit(after.timestamp_micros())));
    }
    if let Some(before) = filter.before {
        predicates.push(col("timestamp").lt(ts_lit(before.timestamp_micros())));
    }
    for (key, value) in &filter.properties {
        predicates.push(
            json_text
                .call(vec![col("properties"), lit(key.clone())])
                .eq(lit(value.clone())),
        );
    }
    let overrides = filter.overrides.clone().filter(|o| !o.is_empty());
    match (&overrides, filter.person) {
        (Some(o), person) => {
            let effective =
                effective_person_udf(o.clone()).call(vec![col("person_id"), col("distinct_id")]);
            // Events without a person stay; those of deleted persons go.
            predicates.push(
                col("person_id")
                    .is_null()
                    .or(effective.clone().is_not_null()),
            );
            if let Some(p) = person {
                let stored: Vec<Expr> = o
                    .stored_ids_of(p)
                    .iter()
                    .map(|id| lit(id.to_string()))
                    .collect();
                predicates.push(col("person_id").in_list(stored, false));
                predicates.push(effective.eq(lit(p.to_string())));
            }
        }
        (None, Some(p)) => predicates.push(col("person_id").eq(lit(p.to_string()))),
        (None, None) => {}
    }
    if let Some(c) = &filter.cursor {
        let at = ts_lit(c.timestamp_us);
        predicates.push(
            col("timestamp").lt(at.clone()).or(col("timestamp")
                .eq(at)
                .and(col("message_id").lt(lit(c.message_id.clone())))),
        );
    }
    if let Some(all) = predicates.into_iter().reduce(Expr::and) {
        df = df.filter(all)?;
    }
    let batches = df
        .sort(vec![
            col("timestamp").sort(false, false),
            col("message_id").sort(false, false),
        ])?
        .limit(0, Some(filter.limit + 1))?
        .collect()
        .await?;
    let mut events = Vec::new();
    for batch in &batches {
        events.extend(batch_to_events(batch)?);
    }
    if let Some(o) = &overrides {
        for e in &mut events {
            if let Some(stored) = e.person_id.as_deref().and_then(|p| p.parse().ok()) {
                e.person_id = o.effective(stored, &e.distinct_id).map(|p| p.to_string());
            }
        }
    }
    let next = if events.len() > filter.limit {
        events.truncate(filter.limit);
        events.last().map(|e| Cursor {
            timestamp_us: e.timestamp.timestamp_micros(),
            message_id: e.message_id.clone(),
        })
    } else {
        None
    };
    Ok((events, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::store::EventStoreConfig;
    use crate::open_metadata_store;
    use appizer_core::event::{Event, MessageType};
    use appizer_core::ProjectId;
    use serde_json::json;

    fn event(project: ProjectId, i: i64, name: &str, who: &str, props: serde_json::Value) -> Event {
        let at = DateTime::from_timestamp(1_795_000_000 + i, 0).unwrap();
        Event {
            message_id: format!("m{i:03}"),
            user_id: Some(who.into()),
            properties: props.try_into().unwrap(),
            ..Event::new(project, MessageType::Track, name, who, at)
        }
    }

    #[test]
    fn json_number_is_the_text_cast_to_a_number() {
        let doc = r#"{"int":42,"neg":-1.5,"exp":2.5e3,"big":18446744073709551617,"s":"12.25","bad":"12 apples","t":true,"n":null,"o":{"a":1},"esc":"\u0031\u0030"}"#;
        for key in [
            "int", "neg", "exp", "big", "s", "bad", "t", "n", "o", "esc", "absent",
        ] {
            let by_text = json_field_text(doc, key).and_then(|t| {
                <Float64Type as datafusion::arrow::compute::kernels::cast_utils::Parser>::parse(&t)
            });
            assert_eq!(json_field_number(doc, key), by_text, "{key}");
        }
        assert_eq!(json_field_number(doc, "exp"), Some(2500.0));
        assert_eq!(json_field_number(doc, "s"), Some(12.25));
        assert_eq!(json_field_number(doc, "esc"), Some(10.0));
        assert_eq!(json_field_number(doc, "t"), None);
        assert_eq!(json_field_number(doc, "bad"), None);
    }

    #[test]
    fn json_text_reads_one_field_as_text() {
        let doc = r#"{"s": "a\"b", "plain": "x y", "n": 1.50, "i": 42, "b": true, "z": null,
            "o": {"k": [1, 2]}, "n": 2.5}"#;
        let text = |key| json_field_text(doc, key);
        assert_eq!(text("s").as_deref(), Some("a\"b"));
        assert_eq!(text("plain").as_deref(), Some("x y"));
        assert_eq!(
            text("n").as_deref(),
            Some("2.5"),
            "the last of a repeated key"
        );
        assert_eq!(text("i").as_deref(), Some("42"));
        assert_eq!(text("b").as_deref(), Some("true"));
        assert_eq!(text("o").as_deref(), Some(r#"{"k":[1,2]}"#));
        assert_eq!(text("z"), None);
        assert_eq!(text("missing"), None);
        assert_eq!(json_field_text("not json", "s"), None);
        for (value, expected) in [
            (json!("a\"b"), Some("a\"b")),
            (json!(42), Some("42")),
            (json!(true), Some("true")),
            (json!({"k": [1, 2]}), Some(r#"{"k":[1,2]}"#)),
            (json!(null), None),
        ] {
            assert_eq!(json_value_text(&value).as_deref(), expected);
        }
    }

    #[tokio::test]
    async fn filters_order_and_pages_across_files_and_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let catalog =
            open_metadata_store(&format!("sqlite://{}", dir.path().join("m.db").display()))
                .await
                .unwrap();
        let store = EventStore::open(EventStoreConfig::new(dir.path().join("e")), catalog).unwrap();
        let (p, other) = (ProjectId::new(), ProjectId::new());
        let first: Vec<Event> = (0..10)
            .map(|i| {
                event(
                    p,
                    i,
                    if i % 2 == 0 { "view" } else { "buy" },
                    if i < 5 { "ann" } else { "bob" },
                    json!({"plan": if i % 3 == 0 { "pro" } else { "free" }, "n": i}),
                )
            })
            .collect();
        store.append(first, 1).unwrap();
        store.flush().await.unwrap();
        let second: Vec<Event> = (10..14)
            .map(|i| event(p, i, "view", "cy", json!({"plan": "pro", "n": i})))
            .collect();
        store.append(second, 2).unwrap();
        store
            .append(vec![event(other, 20, "view", "x", json!({}))], 3)
            .unwrap();

        let ids = |events: &[StoredEvent]| {
            events
                .iter()
                .map(|e| e.message_id.clone())
                .collect::<Vec<_>>()
        };
        let all = EventFilter {
            limit: 100,
            ..Default::default()
        };
        let (events, next) = list_events(&store, ProjectScope::for_tests(p), &all)
            .await
            .unwrap();
        assert_eq!(events.len(), 14, "other projects never appear");
        assert_eq!(events[0].message_id, "m013", "newest first");
        assert!(next.is_none());

        let (views, _) = list_events(
            &store,
            ProjectScope::for_tests(p),
            &EventFilter {
                event: Some("view".into()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(views.len(), 9);
        let (bob, _) = list_events(
            &store,
            ProjectScope::for_tests(p),
            &EventFilter {
                distinct_id: Some("bob".into()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(ids(&bob), ["m009", "m008", "m007", "m006", "m005"]);
        let (pro, _) = list_events(
            &store,
            ProjectScope::for_tests(p),
            &EventFilter {
                properties: vec![("plan".into(), "pro".into())],
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            ids(&pro),
            ["m013", "m012", "m011", "m010", "m009", "m006", "m003", "m000"]
        );
        let (n7, _) = list_events(
            &store,
            ProjectScope::for_tests(p),
            &EventFilter {
                properties: vec![("n".into(), "7".into())],
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(ids(&n7), ["m007"]);
        let window = EventFilter {
            after: DateTime::from_timestamp(1_795_000_003, 0),
            before: DateTime::from_timestamp(1_795_000_006, 0),
            limit: 100,
            ..Default::default()
        };
        assert_eq!(
            ids(&list_events(&store, ProjectScope::for_tests(p), &window)
                .await
                .unwrap()
                .0),
            ["m005", "m004", "m003"]
        );

        // Pages of 5 cover everything once, in order.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = EventFilter {
                limit: 5,
                cursor: cursor.clone(),
                ..Default::default()
            };
            let (events, next) = list_events(&store, ProjectScope::for_tests(p), &page)
                .await
                .unwrap();
            seen.extend(ids(&events));
            match next {
                Some(c) => cursor = Some(Cursor::decode(&c.encode()).unwrap()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 14);
        assert_eq!(
            seen,
            ids(&list_events(&store, ProjectScope::for_tests(p), &all)
                .await
                .unwrap()
                .0)
        );
    }
}
