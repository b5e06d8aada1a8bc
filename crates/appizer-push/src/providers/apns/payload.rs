//! A message as APNs takes it: the `aps` dictionary (alert, sound, badge, category,
//! thread, interruption level; `mutable-content` when there is an image,
//! `content-available` for a background push), the message's data and tags as custom
//! top-level keys, and the `apns-*` headers it implies.

use serde_json::{json, Map, Value};

use super::request::{Headers, MAX_PAYLOAD};
use crate::devices::Refused;
use crate::message::{Content, Tags};

const LEVELS: [&str; 4] = ["passive", "active", "time-sensitive", "critical"];

fn refuse(field: &str, rule: &str) -> Refused {
    Refused {
        field: field.into(),
        rule: rule.into(),
    }
}

/// Checks the APNs options.
pub fn check(content: &Content) -> Result<(), Refused> {
    let o = &content.apns;
    let push_type = o.push_type.as_deref().unwrap_or("alert");
    if !["alert", "background"].contains(&push_type) {
        return Err(refuse("apns.push_type", "must be alert or background"));
    }
    match (push_type, o.priority) {
        (_, None | Some(1 | 5)) | ("alert", Some(10)) => {}
        ("background", Some(10)) => {
            return Err(refuse("apns.priority", "a background push takes 1 or 5"))
        }
        _ => return Err(refuse("apns.priority", "must be 1, 5 or 10")),
    }
    if o.interruption_level
        .as_deref()
        .is_some_and(|l| !LEVELS.contains(&l))
    {
        return Err(refuse(
            "apns.interruption_level",
            "must be passive, active, time-sensitive or critical",
        ));
    }
    if content.notification.data.contains_key("aps") {
        return Err(refuse(
            "notification.data",
            "key `aps` is APNs' own dictionary",
        ));
    }
    Ok(())
}

/// The JSON payload, at most [`MAX_PAYLOAD`] bytes.
pub fn build(content: &Content, tags: &Tags) -> Result<Vec<u8>, Refused> {
    let (n, o) = (&content.notification, &content.apns);
    let background = o.push_type.as_deref() == Some("background");
    let mut aps = Map::new();
    if !background {
        let mut alert = Map::new();
        if !n.title.is_empty() {
            alert.insert("title".into(), json!(n.title));
        }
        if !n.body.is_empty() {
            alert.insert("body".into(), json!(n.body));
        }
        aps.insert("alert".into(), Value::Object(alert));
    } else {
        aps.insert("content-available".into(), json!(1));
    }
    let optional = [
        ("sound", o.sound.as_ref().map(|s| json!(s))),
        ("badge", o.badge.map(|b| json!(b))),
        ("category", o.category.as_ref().map(|c| json!(c))),
        ("thread-id", o.thread_id.as_ref().map(|t| json!(t))),
        (
            "interruption-level",
            o.interruption_level.as_ref().map(|l| json!(l)),
        ),
        ("mutable-content", n.image.as_ref().map(|_| json!(1))),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            aps.insert(key.into(), value);
        }
    }
    let mut payload = Map::new();
    payload.insert("aps".into(), Value::Object(aps));
    for (key, value) in &n.data {
        payload.insert(key.clone(), value.clone());
    }
    if let Some(url) = &n.url {
        payload.insert("url".into(), json!(url));
    }
    if let Some(image) = &n.image {
        payload.insert("image".into(), json!(image));
    }
    for (key, value) in tags.pairs() {
        payload.insert(key.into(), json!(value));
    }
    let bytes = serde_json::to_vec(&Value::Object(payload)).expect("JSON serializes");
    if bytes.len() > MAX_PAYLOAD {
        return Err(Refused {
            field: "notification".into(),
            rule: format!(
                "the iOS payload would be {} bytes; APNs takes at most {MAX_PAYLOAD}",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

/// The `apns-*` headers of a delivery with id `apns_id`, sent at `now` (seconds).
pub fn headers(content: &Content, topic: &str, apns_id: uuid::Uuid, now: i64) -> Headers {
    let background = content.apns.push_type.as_deref() == Some("background");
    Headers {
        topic: topic.to_string(),
        push_type: if background { "background" } else { "alert" }.into(),
        priority: content
            .apns
            .priority
            .unwrap_or(if background { 5 } else { 10 }),
        expiration: match content.ttl_seconds {
            0 => 0,
            ttl => now + i64::from(ttl),
        },
        collapse_id: content.collapse_key.clone(),
        apns_id,
    }
}
