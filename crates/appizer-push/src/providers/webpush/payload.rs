//! A message as a service worker receives it (`event.data.json()`): title, body, icon,
//! image, badge, url, tag, `requireInteraction`, and `data` with the message's tags;
//! and the request options it implies (`TTL`, `Urgency`, `Topic` from the collapse
//! key).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::crypto::MAX_PLAINTEXT;
use super::request::{Options, Urgency};
use crate::devices::Refused;
use crate::message::{Content, Tags};

fn urgency(text: Option<&str>) -> Option<Urgency> {
    Some(match text {
        None | Some("normal") => Urgency::Normal,
        Some("very-low") => Urgency::VeryLow,
        Some("low") => Urgency::Low,
        Some("high") => Urgency::High,
        Some(_) => return None,
    })
}

/// Checks the Web options.
pub fn check(content: &Content) -> Result<(), Refused> {
    if urgency(content.web.urgency.as_deref()).is_none() {
        return Err(Refused {
            field: "web.urgency".into(),
            rule: "must be very-low, low, normal or high".into(),
        });
    }
    Ok(())
}

/// The JSON the browser decrypts, at most [`MAX_PLAINTEXT`] bytes.
pub fn build(content: &Content, tags: &Tags) -> Result<Vec<u8>, Refused> {
    let (n, o) = (&content.notification, &content.web);
    let mut payload = Map::new();
    payload.insert("title".into(), json!(n.title));
    payload.insert("body".into(), json!(n.body));
    for (key, value) in [
        ("icon", &o.icon),
        ("image", &n.image),
        ("badge", &o.badge),
        ("url", &n.url),
        ("tag", &o.tag),
    ] {
        if let Some(value) = value {
            payload.insert(key.into(), json!(value));
        }
    }
    if let Some(require) = o.require_interaction {
        payload.insert("requireInteraction".into(), json!(require));
    }
    let mut data: Map<String, Value> = n.data.clone().into_iter().collect();
    for (key, value) in tags.pairs() {
        data.insert(key.into(), json!(value));
    }
    payload.insert("data".into(), Value::Object(data));
    let bytes = serde_json::to_vec(&Value::Object(payload)).expect("JSON serializes");
    if bytes.len() > MAX_PLAINTEXT {
        return Err(Refused {
            field: "notification".into(),
            rule: format!(
                "the web payload would be {} bytes; Web Push carries at most {MAX_PLAINTEXT}",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

/// The request options: TTL, urgency, and a topic (the collapse key when it is a
/// valid one, else a digest of it).
pub fn options(content: &Content) -> Options {
    let topic = content.collapse_key.as_ref().map(|key| {
        let valid = key.len() <= 32
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            key.clone()
        } else {
            B64.encode(Sha256::digest(key.as_bytes()))[..32].to_string()
        }
    });
    Options {
        ttl: content.ttl_seconds,
        urgency: urgency(content.web.urgency.as_deref()).unwrap_or(Urgency::Normal),
        topic,
    }
}
