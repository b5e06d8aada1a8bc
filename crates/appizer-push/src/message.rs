//! A message as the send API takes it: who it goes to, what it says (shared and per
//! platform), how long it may wait and what replaces it; checked whole before anything
//! is queued, including each platform's payload size.

use std::collections::BTreeMap;

use appizer_core::push::{Audience, Platform};
use appizer_core::{DefinitionId, DeviceId, MessageId, PersonId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::devices::Refused;
use crate::providers::{apns, fcm, webpush};

/// The longest a message may wait for an offline device (APNs' and FCM's limit).
pub const MAX_TTL_SECS: u32 = 28 * 24 * 3600;
/// Without `ttl_seconds`: four weeks, as FCM's default.
pub const DEFAULT_TTL_SECS: u32 = MAX_TTL_SECS;
/// The most characters of a title, and of a body.
pub const MAX_TITLE_CHARS: usize = 256;
pub const MAX_BODY_CHARS: usize = 4000;

/// The data key every delivered message carries its id under (also `$push_campaign_id`
/// and `$push_variant` when it has them), so an app can report `$push_opened` with it.
pub const MESSAGE_ID_KEY: &str = "$push_message_id";
pub const CAMPAIGN_ID_KEY: &str = "$push_campaign_id";
pub const VARIANT_KEY: &str = "$push_variant";

/// Who to send to: exactly one of these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct To {
    /// Every active device of these persons.
    #[schema(value_type = Option<Vec<String>>)]
    pub person_ids: Option<Vec<PersonId>>,
    /// Every active device of the persons of these distinct ids (and devices
    /// registered under them).
    pub distinct_ids: Option<Vec<String>>,
    /// These devices.
    #[schema(value_type = Option<Vec<String>>)]
    pub device_ids: Option<Vec<DeviceId>>,
    /// Every active device of the segment's members (as last computed).
    #[schema(value_type = Option<String>)]
    pub segment_id: Option<DefinitionId>,
}

/// What every platform shows.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    pub title: String,
    pub body: String,
    /// An image URL (a rich notification: APNs needs a service extension for it).
    pub image: Option<String>,
    /// What opening the notification opens (a deep link or a page).
    pub url: Option<String>,
    /// Extra values for the app; FCM receives them as strings (JSON text for
    /// non-strings).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: BTreeMap<String, Value>,
}

/// APNs specifics.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApnsOptions {
    /// `alert` (default), or `background` for a silent update.
    pub push_type: Option<String>,
    /// 10 (immediately, default for alerts), 5 (power-considerate; the only choice for
    /// background) or 1.
    pub priority: Option<u8>,
    pub sound: Option<String>,
    pub badge: Option<u32>,
    pub category: Option<String>,
    pub thread_id: Option<String>,
    /// `passive`, `active`, `time-sensitive` or `critical`.
    pub interruption_level: Option<String>,
}

/// Android (FCM) specifics.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AndroidOptions {
    /// `high` (default) or `normal`.
    pub priority: Option<String>,
    pub channel_id: Option<String>,
    pub sound: Option<String>,
    pub icon: Option<String>,
    /// `#rrggbb`.
    pub color: Option<String>,
    pub tag: Option<String>,
    pub click_action: Option<String>,
}

/// Web Push specifics.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebOptions {
    /// `very-low`, `low`, `normal` (default) or `high`.
    pub urgency: Option<String>,
    pub icon: Option<String>,
    pub badge: Option<String>,
    pub tag: Option<String>,
    pub require_interaction: Option<bool>,
}

/// The send API's request body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub to: To,
    /// Only these platforms (default: every platform the project has a provider for).
    pub platforms: Option<Vec<Platform>>,
    pub notification: Notification,
    #[serde(default)]
    pub apns: ApnsOptions,
    #[serde(default)]
    pub android: AndroidOptions,
    #[serde(default)]
    pub web: WebOptions,
    /// How long a provider keeps the message for an offline device (default and most:
    /// 28 days; 0: now or never).
    pub ttl_seconds: Option<u32>,
    /// A newer message with the same key replaces an undelivered older one (APNs
    /// collapse id, FCM collapse key, Web Push topic).
    pub collapse_key: Option<String>,
    /// The same key within 24 hours answers the first request and sends nothing again.
    pub idempotency_key: Option<String>,
}

/// What is stored with the message and rendered per platform at delivery.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Content {
    pub notification: Notification,
    #[serde(default)]
    pub apns: ApnsOptions,
    #[serde(default)]
    pub android: AndroidOptions,
    #[serde(default)]
    pub web: WebOptions,
    pub ttl_seconds: u32,
    pub collapse_key: Option<String>,
}

/// What a delivered message says about itself in its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    pub message_id: MessageId,
    pub campaign_id: Option<String>,
    pub variant: Option<String>,
}

impl Tags {
    /// The keys and values added to a message's data.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![(MESSAGE_ID_KEY, self.message_id.to_string())];
        if let Some(c) = &self.campaign_id {
            pairs.push((CAMPAIGN_ID_KEY, c.clone()));
        }
        if let Some(v) = &self.variant {
            pairs.push((VARIANT_KEY, v.clone()));
        }
        pairs
    }
}

fn refuse(field: &str, rule: impl Into<String>) -> Refused {
    Refused {
        field: field.into(),
        rule: rule.into(),
    }
}

/// A checked send request, ready to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub audience: Audience,
    /// The platforms asked for (all when none was named), before the project's
    /// providers narrow them.
    pub platforms: Vec<Platform>,
    pub content: Content,
    pub idempotency_key: Option<String>,
}

fn one_of<T>(field: &str, values: &[Option<T>]) -> Result<(), Refused> {
    if values.iter().filter(|v| v.is_some()).count() != 1 {
        return Err(refuse(
            field,
            "must name exactly one of person_ids, distinct_ids, device_ids, segment_id",
        ));
    }
    Ok(())
}

fn ids<T: Clone>(field: &str, list: &[T]) -> Result<Vec<T>, Refused> {
    let most = appizer_storage::push::MAX_AUDIENCE_IDS;
    if list.is_empty() || list.len() > most {
        return Err(refuse(field, format!("must list 1 to {most} ids")));
    }
    Ok(list.to_vec())
}

fn short(field: &str, value: &Option<String>, most: usize) -> Result<(), Refused> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > most => {
            Err(refuse(field, format!("must be 1 to {most} characters")))
        }
        _ => Ok(()),
    }
}

fn url(field: &str, value: &Option<String>) -> Result<(), Refused> {
    match value {
        Some(v) if v.len() > 2048 || url::Url::parse(v).is_err() => Err(refuse(
            field,
            "must be an absolute URL of at most 2048 bytes",
        )),
        _ => Ok(()),
    }
}

impl SendRequest {
    /// Checks everything but what depends on the project (its providers, its
    /// segment): the audience, the content, and each platform's payload within its
    /// provider's limit (measured with the longest tags a delivery carries).
    pub fn check(self, campaign: Option<(&str, Option<&str>)>) -> Result<Checked, Refused> {
        let to = &self.to;
        one_of(
            "to",
            &[
                to.person_ids.as_ref().map(|_| ()),
                to.distinct_ids.as_ref().map(|_| ()),
                to.device_ids.as_ref().map(|_| ()),
                to.segment_id.as_ref().map(|_| ()),
            ],
        )?;
        let audience = match (
            &to.person_ids,
            &to.distinct_ids,
            &to.device_ids,
            to.segment_id,
        ) {
            (Some(p), _, _, _) => Audience::Persons(ids("to.person_ids", p)?),
            (_, Some(d), _, _) => {
                let list = ids("to.distinct_ids", d)?;
                if list.iter().any(|d| d.is_empty() || d.len() > 200) {
                    return Err(refuse("to.distinct_ids", "each must be 1 to 200 bytes"));
                }
                Audience::DistinctIds(list)
            }
            (_, _, Some(d), _) => Audience::Devices(ids("to.device_ids", d)?),
            (_, _, _, Some(s)) => Audience::Segment(s),
            _ => unreachable!("exactly one is set"),
        };
        let platforms = match &self.platforms {
            None => Platform::ALL.to_vec(),
            Some(list) if list.is_empty() => {
                return Err(refuse("platforms", "must name at least one platform"))
            }
            Some(list) => {
                let mut list = list.clone();
                list.sort_by_key(|p| p.as_str());
                list.dedup();
                list
            }
        };
        let n = &self.notification;
        if n.title.trim().is_empty()
            && n.body.trim().is_empty()
            && self.apns.push_type.as_deref() != Some("background")
        {
            return Err(refuse(
                "notification",
                "needs a title or a body (or apns.push_type background)",
            ));
        }
        if n.title.chars().count() > MAX_TITLE_CHARS {
            return Err(refuse(
                "notification.title",
                format!("must be at most {MAX_TITLE_CHARS} characters"),
            ));
        }
        if n.body.chars().count() > MAX_BODY_CHARS {
            return Err(refuse(
                "notification.body",
                format!("must be at most {MAX_BODY_CHARS} characters"),
            ));
        }
        url("notification.image", &n.image)?;
        url("notification.url", &n.url)?;
        if let Some(key) = n
            .data
            .keys()
            .find(|k| k.starts_with("$push_") || k.is_empty())
        {
            return Err(refuse(
                "notification.data",
                format!("key `{key}` is empty or reserved ($push_ keys are set by the server)"),
            ));
        }
        let ttl_seconds = self.ttl_seconds.unwrap_or(DEFAULT_TTL_SECS);
        if ttl_seconds > MAX_TTL_SECS {
            return Err(refuse(
                "ttl_seconds",
                format!("must be at most {MAX_TTL_SECS} (28 days)"),
            ));
        }
        short("collapse_key", &self.collapse_key, 64)?;
        short("idempotency_key", &self.idempotency_key, 200)?;
        let content = Content {
            notification: self.notification,
            apns: self.apns,
            android: self.android,
            web: self.web,
            ttl_seconds,
            collapse_key: self.collapse_key,
        };
        // The longest tags a delivery of this message can carry.
        let tags = Tags {
            message_id: MessageId::new(),
            campaign_id: campaign.map(|(c, _)| c.to_string()),
            variant: campaign.and_then(|(_, v)| v.map(str::to_string)),
        };
        for platform in &platforms {
            match platform {
                Platform::Ios => apns::payload::check(&content)
                    .and_then(|()| apns::payload::build(&content, &tags).map(|_| ()))?,
                Platform::Android => fcm::payload::check(&content)
                    .and_then(|()| fcm::payload::message(&content, &tags).map(|_| ()))?,
                Platform::Web => webpush::payload::check(&content)
                    .and_then(|()| webpush::payload::build(&content, &tags).map(|_| ()))?,
            }
        }
        Ok(Checked {
            audience,
            platforms,
            content,
            idempotency_key: self.idempotency_key,
        })
    }
}
