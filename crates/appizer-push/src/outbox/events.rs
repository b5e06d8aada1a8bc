//! Delivery events: every final outcome of a delivery becomes an event on the device's
//! distinct id, through the event queue like any captured event: `$push_sent`, or
//! `$push_failed` with `$push_error` (a retired device's too, with `$push_retired`).
//! Each carries `$push_message_id`, `$push_device_id`, `$push_platform` and, for a
//! campaign's message, `$push_campaign_id` and `$push_variant`.
//!
//! An event's message id is made of the message, the device and the outcome, so a
//! delivery completed twice (a crash between the event and the outbox's record)
//! stores one event: the workers drop the duplicate.

use appizer_core::event::{Event, MessageType};
use appizer_core::json::JsonObject;
use appizer_core::push::{Delivery, DeliveryOutcome};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::message::{Tags, CAMPAIGN_ID_KEY, MESSAGE_ID_KEY, VARIANT_KEY};

pub const SENT: &str = "$push_sent";
pub const FAILED: &str = "$push_failed";
/// Reported by apps through any capture route.
pub const DELIVERED: &str = "$push_delivered";
pub const OPENED: &str = "$push_opened";

/// The event of a final `outcome` (none for a retry, or a device deleted meanwhile).
pub fn event(
    delivery: &Delivery,
    tags: Option<&Tags>,
    outcome: &DeliveryOutcome,
    at: DateTime<Utc>,
) -> Option<Event> {
    let device = delivery.device.as_ref()?;
    let (name, suffix, error, retired) = match outcome {
        DeliveryOutcome::Sent => (SENT, "sent", None, false),
        DeliveryOutcome::Failed(reason) => (FAILED, "failed", Some(reason), false),
        DeliveryOutcome::Retired(reason) => (FAILED, "retired", Some(reason), true),
        DeliveryOutcome::Retry { .. } | DeliveryOutcome::Held | DeliveryOutcome::Cancelled => {
            return None
        }
    };
    let mut properties = Map::new();
    properties.insert(
        MESSAGE_ID_KEY.into(),
        json!(delivery.message_id.to_string()),
    );
    properties.insert(
        "$push_device_id".into(),
        json!(delivery.device_id.to_string()),
    );
    properties.insert("$push_platform".into(), json!(delivery.platform.as_str()));
    if let Some(tags) = tags {
        if let Some(c) = &tags.campaign_id {
            properties.insert(CAMPAIGN_ID_KEY.into(), json!(c));
        }
        if let Some(v) = &tags.variant {
            properties.insert(VARIANT_KEY.into(), json!(v));
        }
    }
    if let Some(error) = error {
        properties.insert("$push_error".into(), json!(error));
    }
    if retired {
        properties.insert("$push_retired".into(), Value::Bool(true));
    }
    Some(Event {
        message_id: format!(
            "push:{}:{}:{suffix}",
            delivery.message_id, delivery.device_id
        ),
        properties: JsonObject::from_map(&properties),
        received_at: at,
        ..Event::new(
            delivery.project_id,
            MessageType::Track,
            name,
            device.distinct_id.clone(),
            at,
        )
    })
}
