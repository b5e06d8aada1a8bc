//! How JetStream's failures reach callers as [`QueueError`]s: the server's refusal at
//! the stream's byte limit is [`QueueError::Full`], anything else of the server's is
//! [`QueueError::Unavailable`].

use async_nats::jetstream;

use crate::queue::QueueError;

pub(super) fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

/// Whether JetStream refused a message for the stream's byte limit.
pub(super) fn is_over_budget(e: &jetstream::context::PublishError) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(api) = s.downcast_ref::<jetstream::Error>() {
            return api.to_string().contains("maximum bytes exceeded")
                || api.error_code() == jetstream::ErrorCode::STORAGE_RESOURCES_EXCEEDED;
        }
        source = s.source();
    }
    false
}

/// Whether a publish may succeed if sent again: the acknowledgement did not come (a
/// server lost, a stream leader being elected, no responders meanwhile). A message too
/// large never will.
pub(super) fn is_transient(e: &jetstream::context::PublishError) -> bool {
    use jetstream::context::PublishErrorKind as Kind;
    !matches!(
        e.kind(),
        Kind::MaxPayloadExceeded | Kind::WrongLastMessageId | Kind::WrongLastSequence
    )
}
