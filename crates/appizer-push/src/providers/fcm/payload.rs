//! A message as FCM HTTP v1 takes it (the `message` object without its `token`): the
//! notification, the data as strings (with the message's tags), and the `android`
//! block (priority, TTL, collapse key, channel, sound, icon, colour, tag, click action).

use serde_json::{json, Map, Value};

use crate::devices::Refused;
use crate::message::{Content, Tags};

/// The most FCM takes in one message.
pub const MAX_PAYLOAD: usize = 4096;

/// Data keys FCM keeps for itself.
const RESERVED: [&str; 4] = ["from", "notification", "message_type", "collapse_key"];

fn refuse(field: &str, rule: &str) -> Refused {
    Refused {
        field: field.into(),
        rule: rule.into(),
    }
}

/// Checks the Android options.
pub fn check(content: &Content) -> Result<(), Refused> {
    let o = &content.android;
    if o.priority
        .as_deref()
        .is_some_and(|p| p != "high" && p != "normal")
    {
        return Err(refuse("android.priority", "must be high or normal"));
    }
    let hex = |c: &str| {
        c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
    };
    if o.color.as_deref().is_some_and(|c| !hex(c)) {
        return Err(refuse("android.color", "must be #rrggbb"));
    }
    if let Some(key) = content.notification.data.keys().find(|k| {
        RESERVED.contains(&k.as_str()) || k.starts_with("google.") || k.starts_with("gcm.")
    }) {
        return Err(Refused {
            field: "notification.data".into(),
            rule: format!("key `{key}` is reserved by FCM"),
        });
    }
    Ok(())
}

/// The `message` object, at most [`MAX_PAYLOAD`] bytes serialized.
pub fn message(content: &Content, tags: &Tags) -> Result<Value, Refused> {
    let (n, o) = (&content.notification, &content.android);
    let mut notification = Map::new();
    if !n.title.is_empty() {
        notification.insert("title".into(), json!(n.title));
    }
    if !n.body.is_empty() {
        notification.insert("body".into(), json!(n.body));
    }
    if let Some(image) = &n.image {
        notification.insert("image".into(), json!(image));
    }
    let mut data = Map::new();
    for (key, value) in &n.data {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        data.insert(key.clone(), json!(text));
    }
    if let Some(url) = &n.url {
        data.insert("url".into(), json!(url));
    }
    for (key, value) in tags.pairs() {
        data.insert(key.into(), json!(value));
    }
    let mut android_notification = Map::new();
    for (key, value) in [
        ("channel_id", &o.channel_id),
        ("sound", &o.sound),
        ("icon", &o.icon),
        ("color", &o.color),
        ("tag", &o.tag),
        ("click_action", &o.click_action),
    ] {
        if let Some(value) = value {
            android_notification.insert(key.into(), json!(value));
        }
    }
    let mut android = Map::new();
    let priority = match o.priority.as_deref() {
        Some("normal") => "NORMAL",
        _ => "HIGH",
    };
    android.insert("priority".into(), json!(priority));
    android.insert("ttl".into(), json!(format!("{}s", content.ttl_seconds)));
    if let Some(key) = &content.collapse_key {
        android.insert("collapse_key".into(), json!(key));
    }
    if !android_notification.is_empty() {
        android.insert("notification".into(), Value::Object(android_notification));
    }
    let mut message = Map::new();
    if !notification.is_empty() {
        message.insert("notification".into(), Value::Object(notification));
    }
    message.insert("data".into(), Value::Object(data));
    message.insert("android".into(), Value::Object(android));
    let message = Value::Object(message);
    let size = message.to_string().len();
    if size > MAX_PAYLOAD {
        return Err(Refused {
            field: "notification".into(),
            rule: format!(
                "the Android message would be {size} bytes; FCM takes at most {MAX_PAYLOAD}"
            ),
        });
    }
    Ok(message)
}
