//! Enrichment done by the workers: browser, OS and device from the user agent
//! (`woothee`), written into the event's context where the client did not say.

use appizer_core::event::Event;
use serde_json::{json, Value};

/// Parses `context.userAgent` (Segment) or `properties.$raw_user_agent` / `$user_agent`
/// (PostHog) and fills `context.browser`, `context.os` and `context.device.type` when
/// the client did not set them.
pub fn enrich_user_agent(event: &mut Event, parser: &woothee::parser::Parser) {
    let agent = event
        .context
        .get("userAgent")
        .or_else(|| event.properties.get("$raw_user_agent"))
        .or_else(|| event.properties.get("$user_agent"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(agent) = agent else { return };
    let Some(parsed) = parser.parse(&agent) else {
        return;
    };
    let Value::Object(context) = &mut event.context else {
        return;
    };
    let known = |s: &str| !s.is_empty() && s != "UNKNOWN";
    if known(parsed.name) && !context.contains_key("browser") {
        context.insert(
            "browser".into(),
            json!({"name": parsed.name, "version": parsed.version}),
        );
    }
    if known(parsed.os) && !context.contains_key("os") {
        context.insert(
            "os".into(),
            json!({"name": parsed.os, "version": parsed.os_version.as_ref()}),
        );
    }
    let device_type = match parsed.category {
        "pc" => Some("desktop"),
        "smartphone" | "mobilephone" => Some("mobile"),
        "crawler" => Some("bot"),
        "appliance" => Some("appliance"),
        _ => None,
    };
    if let Some(kind) = device_type {
        let device = context.entry("device").or_insert_with(|| json!({}));
        if let Value::Object(device) = device {
            device.entry("type").or_insert_with(|| kind.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appizer_core::event::{Dialect, MessageType};
    use appizer_core::ProjectId;

    fn event(context: Value) -> Event {
        let now = chrono::Utc::now();
        Event {
            project_id: ProjectId::new(),
            message_id: "m".into(),
            message_type: MessageType::Page,
            event: "$pageview".into(),
            distinct_id: "d".into(),
            user_id: None,
            anonymous_id: Some("d".into()),
            name: None,
            group_id: None,
            previous_id: None,
            properties: json!({}),
            traits: json!({}),
            context,
            original_timestamp: None,
            sent_at: None,
            timestamp: now,
            received_at: now,
            ip: None,
            dialect: Dialect::Segment,
        }
    }

    #[test]
    fn browsers_os_and_devices_come_from_the_user_agent() {
        let parser = woothee::parser::Parser::new();
        let firefox =
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0";
        let mut e = event(json!({"userAgent": firefox}));
        enrich_user_agent(&mut e, &parser);
        assert_eq!(e.context["browser"]["name"], "Firefox");
        assert_eq!(e.context["browser"]["version"], "120.0");
        assert_eq!(e.context["os"]["name"], "Windows 10");
        assert_eq!(e.context["device"]["type"], "desktop");

        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        let mut e = event(json!({"userAgent": iphone, "os": {"name": "iOS", "version": "17.0.1"}}));
        enrich_user_agent(&mut e, &parser);
        assert_eq!(e.context["device"]["type"], "mobile");
        assert_eq!(
            e.context["os"]["version"], "17.0.1",
            "the client's own value is kept"
        );

        let mut e = event(json!({}));
        enrich_user_agent(&mut e, &parser);
        assert_eq!(e.context, json!({}));
    }
}
