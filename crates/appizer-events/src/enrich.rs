//! Enrichment done by the workers: browser, OS and device from the user agent
//! (`woothee`), written into the event's context where the client did not say. Parses
//! are cached per distinct user agent: a site's traffic repeats a few thousand agents.

use std::collections::HashMap;

use appizer_core::event::Event;
use appizer_core::json::{object_fields, raw_string};
use serde_json::{json, Value};

/// Distinct user agents remembered; past this the cache starts over.
pub const USER_AGENT_CACHE_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq)]
struct Parsed {
    browser: Option<(String, String)>,
    os: Option<(String, String)>,
    device_type: Option<&'static str>,
}

/// A user-agent parser with a bounded cache of results.
pub struct UserAgents {
    parser: woothee::parser::Parser,
    cache: HashMap<String, Parsed>,
}

impl std::fmt::Debug for UserAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgents")
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl Default for UserAgents {
    fn default() -> Self {
        Self {
            parser: woothee::parser::Parser::new(),
            cache: HashMap::new(),
        }
    }
}

impl UserAgents {
    fn parse(&mut self, agent: &str) -> Parsed {
        if let Some(hit) = self.cache.get(agent) {
            return hit.clone();
        }
        let known = |s: &str| !s.is_empty() && s != "UNKNOWN";
        let parsed = match self.parser.parse(agent) {
            Some(p) => Parsed {
                browser: known(p.name).then(|| (p.name.to_string(), p.version.to_string())),
                os: known(p.os).then(|| (p.os.to_string(), p.os_version.to_string())),
                device_type: match p.category {
                    "pc" => Some("desktop"),
                    "smartphone" | "mobilephone" => Some("mobile"),
                    "crawler" => Some("bot"),
                    "appliance" => Some("appliance"),
                    _ => None,
                },
            },
            None => Parsed::default(),
        };
        if self.cache.len() >= USER_AGENT_CACHE_ENTRIES {
            self.cache.clear();
        }
        self.cache.insert(agent.to_string(), parsed.clone());
        parsed
    }

    /// Parses `context.userAgent` (Segment) or `properties.$raw_user_agent` /
    /// `$user_agent` (PostHog) and fills `context.browser`, `context.os` and
    /// `context.device.type` when the client did not set them.
    pub fn enrich(&mut self, event: &mut Event) {
        let [agent, browser, os, device] =
            event
                .context
                .fields(["userAgent", "browser", "os", "device"]);
        let agent = agent.and_then(raw_string).or_else(|| {
            let [raw, plain] = event.properties.fields(["$raw_user_agent", "$user_agent"]);
            raw.and_then(raw_string)
                .or_else(|| plain.and_then(raw_string))
        });
        let Some(agent) = agent else { return };
        let (has_browser, has_os) = (browser.is_some(), os.is_some());
        // `device` present: only a missing `type` inside it is filled (rare; via the tree).
        let device = device.map(|d| object_fields(d.get(), ["type"])[0].is_some());
        let parsed = self.parse(&agent);
        let mut added = Vec::with_capacity(3);
        if let (Some((name, version)), false) = (parsed.browser, has_browser) {
            added.push(("browser", json!({"name": name, "version": version})));
        }
        if let (Some((name, version)), false) = (parsed.os, has_os) {
            added.push(("os", json!({"name": name, "version": version})));
        }
        let context = &mut event.context;
        if let Some(kind) = parsed.device_type {
            match device {
                None => added.push(("device", json!({"type": kind}))),
                Some(false) => context.update(|c| {
                    if let Some(Value::Object(d)) = c.get_mut("device") {
                        d.entry("type").or_insert_with(|| kind.into());
                    }
                }),
                Some(true) => {}
            }
        }
        context.prepend(&added);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appizer_core::event::MessageType;
    use appizer_core::ProjectId;

    fn event(context: Value) -> Event {
        Event {
            anonymous_id: Some("d".into()),
            context: context.try_into().unwrap(),
            ..Event::new(
                ProjectId::new(),
                MessageType::Page,
                "$pageview",
                "d",
                chrono::Utc::now(),
            )
        }
    }

    #[test]
    fn browsers_os_and_devices_come_from_the_user_agent() {
        let mut agents = UserAgents::default();
        let firefox =
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0";
        for _ in 0..2 {
            // The second time from the cache, with the same result.
            let mut e = event(json!({"userAgent": firefox}));
            agents.enrich(&mut e);
            assert_eq!(e.context.to_value()["browser"]["name"], "Firefox");
            assert_eq!(e.context.to_value()["browser"]["version"], "120.0");
            assert_eq!(e.context.to_value()["os"]["name"], "Windows 10");
            assert_eq!(e.context.to_value()["device"]["type"], "desktop");
        }
        assert_eq!(agents.cache.len(), 1);

        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        let mut e = event(json!({"userAgent": iphone, "os": {"name": "iOS", "version": "17.0.1"}}));
        agents.enrich(&mut e);
        assert_eq!(e.context.to_value()["device"]["type"], "mobile");
        assert_eq!(
            e.context.to_value()["os"]["version"],
            "17.0.1",
            "the client's own value is kept"
        );

        let mut e = event(json!({}));
        agents.enrich(&mut e);
        assert_eq!(e.context, json!({}));

        let mut e = event(json!({"userAgent": firefox, "device": {"model": "X"}}));
        agents.enrich(&mut e);
        assert_eq!(
            e.context.to_value()["device"],
            json!({"model": "X", "type": "desktop"})
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut agents = UserAgents::default();
        for i in 0..(USER_AGENT_CACHE_ENTRIES + 10) {
            agents.parse(&format!("Agent/{i}"));
        }
        assert!(agents.cache.len() <= USER_AGENT_CACHE_ENTRIES);
    }
}
