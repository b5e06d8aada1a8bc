//! The one internal event model every ingestion dialect decodes into, and the limits
//! accepted messages obey. Workers enrich events; the event store keeps them.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{OrganizationId, ProjectId};
use crate::json::{nested_string, object_fields, raw_string, JsonObject};

/// Largest message, serialized, in bytes (Segment's documented limit).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Largest ingestion request body after decompression, in bytes.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// Most messages in one batch request.
pub const MAX_BATCH_MESSAGES: usize = 2_500;
/// Longest id (distinct id, user id, message id, group id) and event name, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// The message types of the Segment spec; PostHog events are `Track` (or the type their
/// `$`-event implies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Track => "track",
            MessageType::Identify => "identify",
            MessageType::Page => "page",
            MessageType::Screen => "screen",
            MessageType::Group => "group",
            MessageType::Alias => "alias",
        }
    }

    /// Every type, in a fixed order (the queue record stores a type as its position).
    pub const ALL: [MessageType; 6] = [
        MessageType::Track,
        MessageType::Identify,
        MessageType::Page,
        MessageType::Screen,
        MessageType::Group,
        MessageType::Alias,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The event name a message of this type gets when it has none of its own.
    pub fn implied_event(self) -> &'static str {
        match self {
            MessageType::Track => "",
            MessageType::Identify => "$identify",
            MessageType::Page => "$pageview",
            MessageType::Screen => "$screen",
            MessageType::Group => "$groupidentify",
            MessageType::Alias => "$create_alias",
        }
    }
}

/// Which wire format an event arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    Segment,
    Posthog,
}

/// One event, as accepted at the edge and later enriched by the workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub project_id: ProjectId,
    /// Segment `messageId` / PostHog `uuid`: the deduplication key. Generated when the
    /// client sent none.
    pub message_id: String,
    pub message_type: MessageType,
    /// Track event name, or the name implied by the type (`$pageview`, `$identify`, ...).
    pub event: String,
    /// The id analytics count by: `userId` if given, else `anonymousId` (Segment);
    /// `distinct_id` (PostHog).
    pub distinct_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// Page or screen name (Segment `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    /// Event properties.
    pub properties: JsonObject,
    /// Identify / group traits (empty for other types).
    pub traits: JsonObject,
    /// Client context: library, ip, userAgent, locale, app, device, os, page...
    pub context: JsonObject,
    /// When the event happened, as the client said (before skew correction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_timestamp: Option<DateTime<Utc>>,
    /// When the client sent the request carrying the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// When the event happened, corrected for client clock skew (set by the workers).
    pub timestamp: DateTime<Utc>,
    /// When the server accepted the request.
    pub received_at: DateTime<Utc>,
    /// The person the distinct id belonged to when the workers processed the event
    /// (none for a placeholder id, or before identity resolution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_id: Option<crate::ids::PersonId>,
    /// The client's IP address, as the gateway saw it (socket or trusted proxy header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub dialect: Dialect,
    /// The context fields read once by the workers after enrichment
    /// ([`Event::remember_context`]); never stored or sent.
    #[serde(skip)]
    pub context_read: ContextRead,
}

/// What the workers and the event store take from an event's context: the enrichment
/// columns and the person profile's sources, read in one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextFields {
    /// `browser.name`
    pub browser: Option<String>,
    /// `os.name`
    pub os: Option<String>,
    /// `device.type`
    pub device_type: Option<String>,
    /// `location.country`
    pub country: Option<String>,
    /// `location.city`
    pub city: Option<String>,
    /// `app.version`
    pub app_version: Option<String>,
    /// `page.referrer`
    pub referrer: Option<String>,
    /// `campaign.source`, `medium`, `name`, `term` and `content`.
    pub campaign: [Option<String>; 5],
}

impl ContextFields {
    pub fn read(context: &JsonObject) -> Self {
        let [browser, os, device, location, app, page, campaign] = context.fields([
            "browser", "os", "device", "location", "app", "page", "campaign",
        ]);
        let [country, city] = match location {
            Some(l) => object_fields(l.get(), ["country", "city"]),
            None => [None, None],
        };
        let campaign = match campaign {
            Some(c) => object_fields(c.get(), ["source", "medium", "name", "term", "content"])
                .map(|v| v.and_then(raw_string)),
            None => Default::default(),
        };
        Self {
            browser: nested_string(browser, "name"),
            os: nested_string(os, "name"),
            device_type: nested_string(device, "type"),
            country: country.and_then(raw_string),
            city: city.and_then(raw_string),
            app_version: nested_string(app, "version"),
            referrer: nested_string(page, "referrer"),
            campaign,
        }
    }
}

/// [`ContextFields`] kept with an event once its context is final. Derived from the
/// context, so it takes no part in comparing events.
#[derive(Debug, Clone, Default)]
pub struct ContextRead(Option<Box<ContextFields>>);

impl PartialEq for ContextRead {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Event {
    /// An event of `message_type` named `event` by `distinct_id` at `at`, with a new
    /// message id, empty properties, traits and context, and no other ids. Callers set
    /// the rest with struct update syntax.
    pub fn new(
        project_id: ProjectId,
        message_type: MessageType,
        event: impl Into<String>,
        distinct_id: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            project_id,
            message_id: uuid::Uuid::now_v7().to_string(),
            message_type,
            event: event.into(),
            distinct_id: distinct_id.into(),
            user_id: None,
            anonymous_id: None,
            name: None,
            group_id: None,
            previous_id: None,
            properties: JsonObject::empty(),
            traits: JsonObject::empty(),
            context: JsonObject::empty(),
            original_timestamp: None,
            sent_at: None,
            timestamp: at,
            received_at: at,
            person_id: None,
            ip: None,
            dialect: Dialect::Segment,
            context_read: ContextRead::default(),
        }
    }

    /// Reads the context's fields now and keeps them: the workers call this once
    /// enrichment is done, so person updates and the Arrow columns do not each scan the
    /// context again. Whoever changes the context afterwards must call it again.
    pub fn remember_context(&mut self) {
        self.context_read = ContextRead(Some(Box::new(ContextFields::read(&self.context))));
    }

    /// The context's fields: as remembered, or read now.
    pub fn context_fields(&self) -> Cow<'_, ContextFields> {
        match &self.context_read.0 {
            Some(fields) => Cow::Borrowed(fields),
            None => Cow::Owned(ContextFields::read(&self.context)),
        }
    }

    /// The timestamp corrected for client clock skew: with `sent_at`,
    /// `received_at - (sent_at - timestamp)`; without it, the client's timestamp; without
    /// either, `received_at`.
    pub fn corrected_timestamp(&self) -> DateTime<Utc> {
        match (self.original_timestamp, self.sent_at) {
            (Some(ts), Some(sent)) => self.received_at - (sent - ts),
            (Some(ts), None) => ts,
            (None, _) => self.received_at,
        }
    }
}

/// A message dropped from an accepted request, as stored for
/// `GET /api/v1/projects/{id}/ingestion-warnings`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIngestionWarning {
    pub organization_id: OrganizationId,
    pub project_id: ProjectId,
    pub message_id: Option<String>,
    /// The field at fault.
    pub field: String,
    /// The rule it broke.
    pub reason: String,
    pub dialect: Dialect,
    pub at: DateTime<Utc>,
}

/// A stored ingestion warning; `id` increases with time and is the page cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestionWarningEntry {
    pub id: i64,
    pub warning: NewIngestionWarning,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Segment => "segment",
            Dialect::Posthog => "posthog",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "segment" => Some(Dialect::Segment),
            "posthog" => Some(Dialect::Posthog),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event() -> Event {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        Event {
            message_id: "m".into(),
            user_id: Some("u".into()),
            ..Event::new(ProjectId::new(), MessageType::Track, "Signed Up", "u", at)
        }
    }

    #[test]
    fn clock_skew_is_corrected_from_sent_at() {
        let mut e = event();
        // The client's clock runs 1 hour fast; the event happened 10 s before sending.
        let client_now = e.received_at + chrono::Duration::hours(1);
        e.sent_at = Some(client_now);
        e.original_timestamp = Some(client_now - chrono::Duration::seconds(10));
        assert_eq!(
            e.corrected_timestamp(),
            e.received_at - chrono::Duration::seconds(10)
        );
        e.sent_at = None;
        assert_eq!(
            e.corrected_timestamp(),
            client_now - chrono::Duration::seconds(10)
        );
        e.original_timestamp = None;
        assert_eq!(e.corrected_timestamp(), e.received_at);
    }

    #[test]
    fn context_fields_are_read_in_one_place_and_remembered_until_read_again() {
        let mut e = event();
        e.context = serde_json::json!({
            "browser": {"name": "Firefox", "version": "120"},
            "os": {"name": "iOS"},
            "device": {"type": "mobile"},
            "location": {"country": "FR", "city": "Lyon"},
            "app": {"version": "2.1"},
            "page": {"referrer": "https://example.com/a"},
            "campaign": {"source": "news", "name": "spring", "content": 3},
        })
        .try_into()
        .unwrap();
        let expected = ContextFields {
            browser: Some("Firefox".into()),
            os: Some("iOS".into()),
            device_type: Some("mobile".into()),
            country: Some("FR".into()),
            city: Some("Lyon".into()),
            app_version: Some("2.1".into()),
            referrer: Some("https://example.com/a".into()),
            // A number is not a campaign's text.
            campaign: [Some("news".into()), None, Some("spring".into()), None, None],
        };
        assert_eq!(*e.context_fields(), expected);
        e.remember_context();
        assert!(matches!(e.context_fields(), Cow::Borrowed(_)));
        assert_eq!(*e.context_fields(), expected);
        // Remembered fields are a cache: events compare by what they hold.
        let mut fresh = e.clone();
        fresh.context_read = ContextRead::default();
        assert_eq!(fresh, e);
        // Read again after a change.
        e.context = serde_json::json!({"os": {"name": "Android"}})
            .try_into()
            .unwrap();
        e.remember_context();
        assert_eq!(
            *e.context_fields(),
            ContextFields {
                os: Some("Android".into()),
                ..ContextFields::default()
            }
        );
    }

    #[test]
    fn message_types_round_trip_and_imply_names() {
        for t in ["track", "identify", "page", "screen", "group", "alias"] {
            assert_eq!(MessageType::parse(t).unwrap().as_str(), t);
        }
        assert_eq!(MessageType::Page.implied_event(), "$pageview");
        assert!(MessageType::parse("capture").is_none());
        let e = event();
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
    }
}
