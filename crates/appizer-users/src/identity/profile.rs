//! What an event changes on its person: counts, seen times, `$set`, `$set_once`,
//! `$unset`, Segment traits, and the latest and initial context (browser, OS, device,
//! location, app version, referrer, UTM).

use super::resolve::implies_identified;
use appizer_core::event::{Dialect, Event, MessageType};
use appizer_core::json::raw_string;
use appizer_core::person::{PersonDelta, ProfileKey};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The object at `raw`, values serde_json cannot hold kept readably.
pub(super) fn object(raw: Option<&RawValue>) -> Option<Map<String, Value>> {
    match appizer_core::json::parse_readable(raw?.get()) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Adds what one event changes on its person.
pub(super) fn add_event(delta: &mut PersonDelta, e: &Event) {
    let at = e.timestamp.timestamp_millis();
    delta.saw(at);
    delta.identified |= implies_identified(e);
    let profile = &mut delta.profile;
    let mut latest = |key: ProfileKey, value: Option<&str>| {
        if let Some(v) = value {
            profile.see(key, v, at);
        }
    };
    // Read from the context once, usually by the decoding lanes.
    let context = e.context_fields();
    latest(ProfileKey::Browser, context.browser.as_deref());
    latest(ProfileKey::Os, context.os.as_deref());
    latest(ProfileKey::DeviceType, context.device_type.as_deref());
    latest(ProfileKey::Country, context.country.as_deref());
    latest(ProfileKey::City, context.city.as_deref());
    match e.dialect {
        Dialect::Posthog => {
            let [set, set_once, unset, app_version, referrer, referring_domain, source, medium, campaign, term, content] =
                e.properties.fields([
                    "$set",
                    "$set_once",
                    "$unset",
                    "$app_version",
                    "$referrer",
                    "$referring_domain",
                    "utm_source",
                    "utm_medium",
                    "utm_campaign",
                    "utm_term",
                    "utm_content",
                ]);
            let text = |raw: Option<&RawValue>| raw.and_then(raw_string);
            let not_direct = |raw| text(raw).filter(|r| r != "$direct");
            latest(ProfileKey::AppVersion, text(app_version).as_deref());
            latest(ProfileKey::Referrer, not_direct(referrer).as_deref());
            latest(
                ProfileKey::ReferringDomain,
                not_direct(referring_domain).as_deref(),
            );
            for (key, value) in ProfileKey::UTM
                .into_iter()
                .zip([source, medium, campaign, term, content])
            {
                latest(key, text(value).as_deref());
            }
            let props = &mut delta.properties;
            let unset: Option<Value> =
                unset.and_then(|r| appizer_core::json::parse_readable(r.get()).ok());
            props.apply_update(
                object(set).as_ref(),
                object(set_once).as_ref(),
                unset.as_ref(),
                at,
            );
        }
        Dialect::Segment => {
            latest(ProfileKey::AppVersion, context.app_version.as_deref());
            let referrer = context.referrer.as_deref();
            let domain = referrer.and_then(referring_domain_of);
            latest(ProfileKey::Referrer, referrer);
            latest(ProfileKey::ReferringDomain, domain.as_deref());
            for (key, value) in ProfileKey::UTM.into_iter().zip(&context.campaign) {
                latest(key, value.as_deref());
            }
            if e.message_type == MessageType::Identify {
                delta
                    .properties
                    .apply_update(Some(&e.traits.to_map()), None, None, at);
            }
        }
    }
}

/// `https://www.example.com/a?b` -> `www.example.com`.
pub(super) fn referring_domain_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}
