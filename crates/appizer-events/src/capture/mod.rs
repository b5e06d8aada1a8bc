//! Capture: from an HTTP body to validated events.
//!
//! The gateway calls, in order: [`body::decode_body`] (gzip, form `data=`, base64,
//! lz64 to JSON bytes), the dialect's `envelope` (finds the key and the messages without
//! parsing them all), then, once the key names a project, the dialect's `decode`
//! (one [`Event`] per valid message, one [`IngestionWarning`] per invalid one).

pub mod body;
pub mod fields;
pub mod posthog;
pub mod segment;

use appizer_core::event::Event;
use appizer_core::ProjectId;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What the server knows of a request when it decodes its messages.
#[derive(Debug, Clone)]
pub struct Received {
    pub project_id: ProjectId,
    pub received_at: DateTime<Utc>,
    pub ip: Option<String>,
}

/// A message dropped from an otherwise valid request, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestionWarning {
    /// Position of the message in the request's batch (0 for a single message).
    pub index: usize,
    /// The message's id, when it had a readable one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The field at fault (`event`, `userId`, `timestamp`, ...).
    pub field: String,
    /// The rule it broke.
    pub reason: String,
}

/// The decoded messages of one request.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<Event>,
    pub warnings: Vec<IngestionWarning>,
}

/// Why one message was dropped: its id if readable, and the (field, reason).
pub type MessageError = (Option<String>, fields::FieldError);

impl Decoded {
    /// Sorts the per-message results of a request, in batch order, into events and
    /// warnings.
    pub fn from_results(results: impl Iterator<Item = Result<Event, MessageError>>) -> Self {
        let mut out = Decoded::default();
        for (index, result) in results.enumerate() {
            match result {
                Ok(event) => out.events.push(event),
                Err((message_id, (field, reason))) => out.warnings.push(IngestionWarning {
                    index,
                    message_id,
                    field,
                    reason,
                }),
            }
        }
        out
    }
}

/// Why a whole request is refused (the client gets 400, 413 or 415 and should not
/// retry).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CaptureError {
    /// Not decodable: not JSON, bad base64, bad gzip.
    #[error("{message}")]
    Malformed { field: String, message: String },
    /// Decodable, but of the wrong shape (a body that is not an object, a `batch` that
    /// is not an array).
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// A `Content-Encoding` the server does not decode.
    #[error("unsupported Content-Encoding `{0}`: send gzip or no encoding")]
    UnsupportedEncoding(String),
}

impl CaptureError {
    pub fn malformed(field: &str, message: impl Into<String>) -> Self {
        CaptureError::Malformed {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        CaptureError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
