//! The Segment HTTP tracking API: `/v1/track|identify|page|screen|group|alias` carry one
//! message; `/v1/batch` and `/v1/import` carry `{"batch":[...], "context", "integrations",
//! "sentAt"}` whose batch-level context applies to every message.

use std::collections::HashMap;

use appizer_core::event::{Dialect, Event, MessageType, MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::fields::{self, FieldError, Scalar};
use super::{CaptureError, Decoded, MessageError, Received};

/// A request's key and messages, before the messages are decoded.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// `writeKey` from the body, if any (clients may use HTTP Basic instead).
    pub write_key: Option<String>,
    pub messages: Vec<&'a RawValue>,
    pub context: Option<Map<String, Value>>,
    pub sent_at: Option<Value>,
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(default, rename = "writeKey")]
    write_key: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default, rename = "sentAt")]
    sent_at: Option<Value>,
}

#[derive(Deserialize)]
struct SingleBody {
    #[serde(default, rename = "writeKey")]
    write_key: Option<Value>,
}

fn not_json(e: serde_json::Error) -> CaptureError {
    CaptureError::malformed("body", format!("body is not a JSON object: {e}"))
}

/// Reads the envelope of a request to the route of `route_type` (`None`: batch/import).
pub fn envelope(
    json: &[u8],
    route_type: Option<MessageType>,
) -> Result<Envelope<'_>, CaptureError> {
    let key_text = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_string));
    // A message and a batch are objects (serde would also read a struct from an array).
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        serde_json::from_slice::<IgnoredAny>(json).map_err(not_json)?;
        return Err(CaptureError::invalid(
            "body",
            "the body must be a JSON object",
        ));
    }
    if route_type.is_some() {
        let raw: &RawValue = serde_json::from_slice(json).map_err(not_json)?;
        let head: SingleBody = serde_json::from_str(raw.get()).map_err(not_json)?;
        return Ok(Envelope {
            write_key: key_text(head.write_key),
            messages: vec![raw],
            context: None,
            sent_at: None,
        });
    }
    let not_array = || CaptureError::malformed("batch", "`batch` must be an array of messages");
    // One scan when the body is well formed; a second, to name the fault, when not.
    let body: BatchBody = match serde_json::from_slice::<BatchBody>(json) {
        Ok(body) => body,
        Err(_) => {
            // An object whose only fault can be `batch`, or not an object at all.
            serde_json::from_slice::<HashMap<String, IgnoredAny>>(json).map_err(not_json)?;
            return Err(not_array());
        }
    };
    let messages = body.batch.ok_or_else(not_array)?;
    if messages.len() > MAX_BATCH_MESSAGES {
        return Err(CaptureError::malformed(
            "batch",
            format!("a batch holds at most {MAX_BATCH_MESSAGES} messages"),
        ));
    }
    let context = match body.context {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            return Err(CaptureError::malformed(
                "context",
                "`context` must be an object",
            ))
        }
    };
    Ok(Envelope {
        write_key: key_text(body.write_key),
        messages,
        context,
        sent_at: body.sent_at,
    })
}

/// Decodes every message of `envelope`; invalid ones become warnings.
pub fn decode(
    envelope: &Envelope<'_>,
    route_type: Option<MessageType>,
    received: &Received,
) -> Decoded {
    Decoded::from_results(
        envelope
            .messages
            .iter()
            .map(|raw| decode_message(raw, envelope, route_type, received)),
    )
}

/// The fields of a Segment message this server reads; object fields stay text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Scalar<'a>>,
    #[serde(borrow)]
    event: Option<Scalar<'a>>,
    #[serde(borrow)]
    user_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    anonymous_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    message_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    group_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    previous_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    name: Option<Scalar<'a>>,
    #[serde(borrow)]
    timestamp: Option<Scalar<'a>>,
    #[serde(borrow)]
    original_timestamp: Option<Scalar<'a>>,
    #[serde(borrow)]
    sent_at: Option<Scalar<'a>>,
    #[serde(borrow)]
    properties: Option<&'a RawValue>,
    #[serde(borrow)]
    traits: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
}

fn decode_message(
    raw: &RawValue,
    envelope: &Envelope<'_>,
    route_type: Option<MessageType>,
    received: &Received,
) -> Result<Event, MessageError> {
    let fail = |id: &Option<String>, field: &str, reason: &str| {
        (id.clone(), (field.to_string(), reason.to_string()))
    };
    if raw.get().len() > MAX_MESSAGE_BYTES {
        return Err(fail(
            &None,
            "message",
            &format!("a message is at most {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    let message: Message = serde_json::from_str(raw.get()).map_err(|e| {
        let reason = if raw.get().starts_with('{') {
            format!("a message must be a JSON object without repeated keys: {e}")
        } else {
            "a message must be a JSON object".to_string()
        };
        fail(&None, "message", &reason)
    })?;
    let message_id = fields::id_value(message.message_id, "messageId")
        .ok()
        .flatten();
    let with_id = |e: FieldError| (message_id.clone(), e);

    let message_type = match route_type {
        Some(t) => t,
        None => {
            let text = message.kind.as_ref().and_then(Scalar::as_str).unwrap_or("");
            MessageType::parse(text).ok_or_else(|| {
                fail(
                    &message_id,
                    "type",
                    "must be one of track, identify, page, screen, group, alias",
                )
            })?
        }
    };
    let user_id = fields::id_value(message.user_id, "userId").map_err(with_id)?;
    let anonymous_id = fields::id_value(message.anonymous_id, "anonymousId").map_err(with_id)?;
    let distinct_id = user_id
        .clone()
        .or_else(|| anonymous_id.clone())
        .ok_or_else(|| fail(&message_id, "userId", "userId or anonymousId is required"))?;
    let event = match message_type {
        MessageType::Track => fields::name_value(message.event, "event").map_err(with_id)?,
        other => other.implied_event().to_string(),
    };
    let group_id = fields::id_value(message.group_id, "groupId").map_err(with_id)?;
    if message_type == MessageType::Group && group_id.is_none() {
        return Err(fail(&message_id, "groupId", "is required for group"));
    }
    let previous_id = fields::id_value(message.previous_id, "previousId").map_err(with_id)?;
    if message_type == MessageType::Alias && (previous_id.is_none() || user_id.is_none()) {
        let field = if previous_id.is_none() {
            "previousId"
        } else {
            "userId"
        };
        return Err(fail(
            &message_id,
            field,
            "previousId and userId are required for alias",
        ));
    }
    let name = match message.name {
        Some(Scalar::Text(s)) if !s.is_empty() => Some(s.into_owned()),
        _ => None,
    };
    let original_timestamp = fields::timestamp(
        message.timestamp.or(message.original_timestamp),
        "timestamp",
    )
    .map_err(with_id)?;
    let sent_at = fields::timestamp(
        message
            .sent_at
            .or_else(|| envelope.sent_at.as_ref().map(Scalar::from)),
        "sentAt",
    )
    .map_err(with_id)?;
    let properties = fields::raw_object(message.properties, "properties").map_err(with_id)?;
    let traits = fields::raw_object(message.traits, "traits").map_err(with_id)?;
    let mut context = fields::raw_object(message.context, "context").map_err(with_id)?;
    if let Some(batch_context) = &envelope.context {
        context.update(|own| {
            for (key, value) in batch_context {
                own.entry(key.clone()).or_insert_with(|| value.clone());
            }
        });
    }
    let ip = context
        .str_field("ip")
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .or_else(|| received.ip.clone());

    let mut event = Event {
        project_id: received.project_id,
        message_id: message_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        message_type,
        event,
        distinct_id,
        user_id,
        anonymous_id,
        name,
        group_id,
        previous_id,
        properties,
        traits,
        context,
        original_timestamp,
        sent_at,
        timestamp: received.received_at,
        received_at: received.received_at,
        person_id: None,
        ip,
        dialect: Dialect::Segment,
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
            ip: Some("203.0.113.9".into()),
        }
    }

    fn decode_json(body: Value, route: Option<MessageType>) -> Decoded {
        let bytes = serde_json::to_vec(&body).unwrap();
        let envelope = envelope(&bytes, route).unwrap();
        decode(&envelope, route, &received())
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused_whatever_their_shape() {
        for body in ["[[1]]", "[1,2,3]", "[]", "\"x\"", " 7"] {
            for route in [None, Some(MessageType::Track)] {
                let e = envelope(body.as_bytes(), route).unwrap_err();
                assert_eq!(
                    e,
                    CaptureError::invalid("body", "the body must be a JSON object"),
                    "{body}"
                );
            }
        }
        let e = envelope(b"[1,", None).unwrap_err();
        assert!(matches!(e, CaptureError::Malformed { .. }), "{e:?}");
    }

    #[test]
    fn a_batch_decodes_every_type_and_applies_batch_context() {
        let decoded = decode_json(
            json!({
                "writeKey": "apz_wk_x",
                "context": {"library": {"name": "analytics-python", "version": "2.3"}, "locale": "fr-FR"},
                "sentAt": "2026-11-25T10:00:00Z",
                "batch": [
                    {"type": "track", "event": "Order Completed", "userId": "u1",
                     "properties": {"total": 12.5}, "messageId": "m1",
                     "timestamp": "2026-11-25T09:59:50Z", "context": {"locale": "en-GB"}},
                    {"type": "identify", "anonymousId": "a1", "traits": {"plan": "pro"}, "messageId": "m2"},
                    {"type": "page", "userId": "u1", "name": "Home", "properties": {"path": "/"}},
                    {"type": "screen", "userId": 7, "name": "Settings"},
                    {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}},
                    {"type": "alias", "previousId": "a1", "userId": "u1"}
                ]
            }),
            None,
        );
        assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
        let names: Vec<_> = decoded.events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            names,
            [
                "Order Completed",
                "$identify",
                "$pageview",
                "$screen",
                "$groupidentify",
                "$create_alias"
            ]
        );
        let track = &decoded.events[0];
        assert_eq!(track.distinct_id, "u1");
        assert_eq!(track.message_id, "m1");
        assert_eq!(track.properties, json!({"total": 12.5}));
        assert_eq!(
            track.context.to_value()["locale"],
            "en-GB",
            "the message's own context wins"
        );
        assert_eq!(
            track.context.to_value()["library"]["name"],
            "analytics-python"
        );
        assert_eq!(track.ip.as_deref(), Some("203.0.113.9"));
        // 10 s before sending, whatever the client's clock said.
        assert_eq!(
            track.received_at - track.timestamp,
            chrono::Duration::seconds(10)
        );
        assert_eq!(decoded.events[1].distinct_id, "a1");
        assert_eq!(decoded.events[1].traits, json!({"plan": "pro"}));
        assert_eq!(decoded.events[2].name.as_deref(), Some("Home"));
        assert_eq!(decoded.events[3].distinct_id, "7");
        assert_eq!(decoded.events[5].previous_id.as_deref(), Some("a1"));
        assert!(
            !decoded.events[2].message_id.is_empty(),
            "an id is generated when absent"
        );
    }

    #[test]
    fn invalid_messages_become_warnings_and_the_rest_goes_on() {
        let decoded = decode_json(
            json!({"batch": [
                {"type": "track", "userId": "u", "event": "ok"},
                {"type": "track", "event": "no id", "messageId": "x1"},
                {"type": "track", "userId": "u"},
                {"type": "track", "userId": "u", "event": "e", "timestamp": "soon"},
                {"type": "track", "userId": {"a": 1}, "event": "e"},
                {"type": "launch", "userId": "u"},
                {"type": "track", "userId": "u", "event": "e", "properties": [1]},
                {"type": "alias", "userId": "u"},
                {"type": "group", "userId": "u"},
                "not an object",
                {"type": "track", "userId": "u", "event": "big", "properties": {"x": "y".repeat(40_000)}}
            ]}),
            None,
        );
        assert_eq!(decoded.events.len(), 1);
        let fields: Vec<_> = decoded
            .warnings
            .iter()
            .map(|w| (w.index, w.field.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                (1, "userId"),
                (2, "event"),
                (3, "timestamp"),
                (4, "userId"),
                (5, "type"),
                (6, "properties"),
                (7, "previousId"),
                (8, "groupId"),
                (9, "message"),
                (10, "message"),
            ]
        );
        assert_eq!(decoded.warnings[0].message_id.as_deref(), Some("x1"));
    }

    #[test]
    fn single_message_routes_take_their_type_from_the_route() {
        let decoded = decode_json(
            json!({"userId": "u", "event": "Clicked", "writeKey": "k"}),
            Some(MessageType::Track),
        );
        assert_eq!(decoded.events.len(), 1);
        let bytes = br#"{"userId":"u","event":"e","writeKey":"apz_wk_1"}"#;
        assert_eq!(
            envelope(bytes, Some(MessageType::Track))
                .unwrap()
                .write_key
                .as_deref(),
            Some("apz_wk_1")
        );
    }

    #[test]
    fn whole_request_errors() {
        assert!(envelope(b"{", None).is_err());
        assert!(envelope(b"[]", None).is_err());
        let no_batch = envelope(br#"{"batch": 5}"#, None).unwrap_err();
        assert!(matches!(no_batch, CaptureError::Malformed { ref field, .. } if field == "batch"));
        let many = json!({"batch": vec![json!({}); MAX_BATCH_MESSAGES + 1]});
        let bytes = serde_json::to_vec(&many).unwrap();
        assert!(envelope(&bytes, None).is_err());
    }
}
