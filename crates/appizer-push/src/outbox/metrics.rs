//! Metrics of push delivery, named `appizer_<area>_<what>_<unit>[_total]`.

/// Deliveries queued (due now or later), read every few seconds.
pub const QUEUE_DEPTH: &str = "appizer_push_queue_depth_deliveries";
/// Deliveries the providers accepted, by `platform`.
pub const SENT_TOTAL: &str = "appizer_push_sent_total";
/// Deliveries failed for good, by `platform` and `reason`.
pub const FAILED_TOTAL: &str = "appizer_push_failed_total";
/// Deliveries retired with their device, by `platform` and `reason`.
pub const RETIRED_TOTAL: &str = "appizer_push_retired_total";
/// Attempts to be tried again, by `platform` and `reason`.
pub const RETRIES_TOTAL: &str = "appizer_push_retries_total";
/// Provider requests in flight.
pub const IN_FLIGHT: &str = "appizer_push_in_flight_requests";
/// Messages queued through the send API (and campaigns).
pub const MESSAGES_TOTAL: &str = "appizer_push_messages_total";
/// Delivery events not appended to the event queue (retried with their batch).
pub const EVENT_APPEND_FAILURES_TOTAL: &str = "appizer_push_event_append_failures_total";
