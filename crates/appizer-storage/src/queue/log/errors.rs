//! How the log's failures reach callers as [`QueueError`]s.

use crate::queue::QueueError;

/// The answer to appends once a write or fsync failed: the log refuses every append
/// after it, since what reached the disk is uncertain.
pub(super) fn write_failed(reason: &str) -> QueueError {
    QueueError::Io(std::io::Error::other(reason.to_string()))
}
