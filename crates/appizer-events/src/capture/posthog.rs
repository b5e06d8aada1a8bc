//! The PostHog capture API: `/capture`, `/batch`, `/e`, `/i/v0/e`, `/track`, `/engage`.
//! A body is one event `{event, distinct_id, properties, timestamp, uuid}`, a batch
//! `{"api_key", "batch":[...], "sent_at"}`, or a bare array of events (posthog-js).
//! The key is `api_key` or `token` at the top, or `properties.token` of the events; all
//! events of a request must carry the same key.

use appizer_core::event::{Dialect, Event, MessageType, MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES};
use appizer_core::json::JsonObject;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::fields::{self, FieldError, Scalar};
use super::{CaptureError, Decoded, MessageError, Received};

#[derive(Debug)]
pub struct Envelope<'a> {
    /// The project key the request carries (top-level or the first event's token).
    pub api_key: Option<String>,
    pub messages: Vec<&'a RawValue>,
    pub sent_at: Option<Value>,
}

fn not_json(e: serde_json::Error) -> CaptureError {
    CaptureError::malformed("body", format!("body is not valid JSON: {e}"))
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Reads the envelope: the key and the raw events.
pub fn envelope(json: &[u8]) -> Result<Envelope<'_>, CaptureError> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    let (mut api_key, messages, sent_at) = if first == Some(&b'[') {
        let messages: Vec<&RawValue> = serde_json::from_slice(json).map_err(not_json)?;
        (None, messages, None)
    } else {
        let top: Map<String, Value> = serde_json::from_slice(json).map_err(not_json)?;
        let key = text(top.get("api_key")).or_else(|| text(top.get("token")));
        let sent_at = top.get("sent_at").cloned();
        let messages = if top.contains_key("batch") {
            #[derive(serde::Deserialize)]
            struct Batch<'a> {
                #[serde(borrow)]
                batch: Vec<&'a RawValue>,
            }
            let batch: Batch = serde_json::from_slice(json).map_err(|_| {
                CaptureError::malformed("batch", "`batch` must be an array of events")
            })?;
            batch.batch
        } else {
            vec![serde_json::from_slice::<&RawValue>(json).map_err(not_json)?]
        };
        (key, messages, sent_at)
    };
    if messages.len() > MAX_BATCH_MESSAGES {
        return Err(CaptureError::malformed(
            "batch",
            format!("a batch holds at most {MAX_BATCH_MESSAGES} events"),
        ));
    }
    if api_key.is_none() {
        // posthog-js puts the key in each event's properties.
        api_key = messages.first().and_then(|raw| {
            let event: Map<String, Value> = serde_json::from_str(raw.get()).ok()?;
            text(event.get("api_key"))
                .or_else(|| text(event.get("token")))
                .or_else(|| text(event.get("properties")?.get("token")))
        });
    }
    Ok(Envelope {
        api_key,
        messages,
        sent_at,
    })
}

/// Decodes every event; invalid ones become warnings.
pub fn decode(envelope: &Envelope<'_>, received: &Received) -> Decoded {
    Decoded::from_results(
        envelope
            .messages
            .iter()
            .map(|raw| decode_event(raw, envelope, received)),
    )
}

fn message_type_of(event: &str) -> MessageType {
    match event {
        "$identify" => MessageType::Identify,
        "$create_alias" => MessageType::Alias,
        "$pageview" => MessageType::Page,
        "$screen" => MessageType::Screen,
        "$groupidentify" => MessageType::Group,
        _ => MessageType::Track,
    }
}

fn decode_event(
    raw: &RawValue,
    envelope: &Envelope<'_>,
    received: &Received,
) -> Result<Event, MessageError> {
    let fail = |id: &Option<String>, field: &str, reason: &str| {
        (id.clone(), (field.to_string(), reason.to_string()))
    };
    if raw.get().len() > MAX_MESSAGE_BYTES {
        return Err(fail(
            &None,
            "event",
            &format!("an event is at most {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    let mut message: Map<String, Value> = serde_json::from_str(raw.get())
        .map_err(|_| fail(&None, "event", "an event must be a JSON object"))?;
    let message_id = fields::id(&message, "uuid").ok().flatten();
    let with_id = |e: FieldError| (message_id.clone(), e);

    let event = fields::name(&message, "event").map_err(with_id)?;
    let mut properties = fields::take_object(&mut message, "properties").map_err(with_id)?;
    let props = properties.as_object_mut().expect("an object");
    let own_key = text(message.get("api_key"))
        .or_else(|| text(message.get("token")))
        .or_else(|| text(props.get("token")));
    if own_key.is_some() && own_key != envelope.api_key {
        return Err(fail(
            &message_id,
            "token",
            "all events of a request must carry the same key",
        ));
    }
    let distinct_id = fields::id(&message, "distinct_id")
        .map_err(with_id)?
        .or_else(|| fields::id(props, "distinct_id").ok().flatten())
        .or_else(|| fields::id(props, "$distinct_id").ok().flatten())
        .ok_or_else(|| fail(&message_id, "distinct_id", "is required"))?;
    // Person operations may sit beside the properties; keep them inside.
    for op in ["$set", "$set_once", "$unset"] {
        if let Some(value) = message.remove(op) {
            props.entry(op.to_string()).or_insert(value);
        }
    }
    let mut original_timestamp =
        fields::timestamp(message.get("timestamp").map(Scalar::from), "timestamp")
            .map_err(with_id)?;
    let sent_at = fields::timestamp(
        message
            .get("sent_at")
            .or(envelope.sent_at.as_ref())
            .map(Scalar::from),
        "sent_at",
    )
    .map_err(with_id)?;
    if original_timestamp.is_none() {
        // posthog-js sends `offset`: milliseconds between the event and the send.
        if let Some(offset) = message.get("offset").and_then(Value::as_i64) {
            original_timestamp =
                Some(received.received_at - chrono::Duration::milliseconds(offset));
        }
    }
    let message_type = message_type_of(&event);
    let alias = (message_type == MessageType::Alias)
        .then(|| fields::id(props, "alias").ok().flatten())
        .flatten();
    let anonymous_id = (message_type == MessageType::Identify)
        .then(|| fields::id(props, "$anon_distinct_id").ok().flatten())
        .flatten();
    let ip = text(props.get("$ip"))
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .or_else(|| received.ip.clone());
    let mut context = Map::new();
    if let Some(lib) = text(props.get("$lib")) {
        let mut library = Map::new();
        library.insert("name".into(), lib.into());
        if let Some(version) = text(props.get("$lib_version")) {
            library.insert("version".into(), version.into());
        }
        context.insert("library".into(), library.into());
    }

    let mut event = Event {
        project_id: received.project_id,
        message_id: message_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        message_type,
        event,
        distinct_id,
        user_id: None,
        anonymous_id,
        name: None,
        group_id: None,
        previous_id: alias,
        properties: JsonObject::from_map(props),
        traits: JsonObject::empty(),
        context: JsonObject::from_map(&context),
        original_timestamp,
        sent_at,
        timestamp: received.received_at,
        received_at: received.received_at,
        person_id: None,
        ip,
        dialect: Dialect::Posthog,
        context_read: Default::default(),
    };
    event.timestamp = event.corrected_timestamp();
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use appizer_core::ProjectId;
    use chrono::Utc;
    use serde_json::json;

    fn received() -> Received {
        Received {
            project_id: ProjectId::new(),
            received_at: Utc::now(),
            ip: None,
        }
    }

    fn run(body: Value) -> (Option<String>, Decoded) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let envelope = envelope(&bytes).unwrap();
        let decoded = decode(&envelope, &received());
        (envelope.api_key.clone(), decoded)
    }

    #[test]
    fn batches_single_events_and_arrays() {
        let (key, decoded) = run(json!({
            "api_key": "apz_wk_1",
            "sent_at": "2026-11-25T10:00:00Z",
            "batch": [
                {"event": "$pageview", "distinct_id": "d1", "uuid": "u-1",
                 "properties": {"$current_url": "https://x/"}, "timestamp": "2026-11-25T09:59:59Z"},
                {"event": "$identify", "distinct_id": "user@x", "properties": {"$anon_distinct_id": "d1"},
                 "$set": {"email": "user@x"}},
                {"event": "$create_alias", "properties": {"distinct_id": "user@x", "alias": "u-42"}}
            ]
        }));
        assert_eq!(key.as_deref(), Some("apz_wk_1"));
        assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
        let e = &decoded.events;
        assert_eq!(e[0].message_type, MessageType::Page);
        assert_eq!(e[0].message_id, "u-1");
        assert_eq!(
            e[0].received_at - e[0].timestamp,
            chrono::Duration::seconds(1)
        );
        assert_eq!(e[1].anonymous_id.as_deref(), Some("d1"));
        assert_eq!(
            e[1].properties.to_value()["$set"],
            json!({"email": "user@x"})
        );
        assert_eq!(e[2].distinct_id, "user@x");
        assert_eq!(e[2].previous_id.as_deref(), Some("u-42"));

        let (key, decoded) = run(json!({"api_key": "k", "event": "clicked", "distinct_id": 5}));
        assert_eq!(key.as_deref(), Some("k"));
        assert_eq!(decoded.events[0].distinct_id, "5");

        let (key, decoded) = run(json!([
            {"event": "a", "properties": {"token": "k2", "distinct_id": "d"}, "offset": 1500},
            {"event": "b", "properties": {"token": "k2", "distinct_id": "d"}}
        ]));
        assert_eq!(key.as_deref(), Some("k2"));
        assert_eq!(decoded.events.len(), 2);
        let first = &decoded.events[0];
        assert_eq!(
            first.received_at - first.timestamp,
            chrono::Duration::milliseconds(1500)
        );
    }

    #[test]
    fn bad_events_are_warnings() {
        let (_, decoded) = run(json!({"api_key": "k", "batch": [
            {"event": "ok", "distinct_id": "d"},
            {"distinct_id": "d"},
            {"event": "e"},
            {"event": "e", "distinct_id": "d", "properties": {"token": "other"}},
            {"event": "e", "distinct_id": "d", "timestamp": "later"},
            7
        ]}));
        assert_eq!(decoded.events.len(), 1);
        let fields: Vec<_> = decoded.warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(
            fields,
            ["event", "distinct_id", "token", "timestamp", "event"]
        );
        assert!(envelope(b"nope").is_err());
        assert!(envelope(br#"{"batch": {}}"#).is_err());
    }
}
