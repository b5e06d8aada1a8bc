//! Metrics of the gateway, named `appizer_<area>_<what>_<unit>[_total]`, and the
//! process-wide Prometheus recorder that `/metrics` renders.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `method`, matched `route` and `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "appizer_http_requests_total";
/// Time from request to response head, by `method` and `route`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "appizer_http_request_duration_seconds";
/// Connections refused a slot because `server.max_connections` were open.
pub const HTTP_CONNECTIONS_WAITING_TOTAL: &str = "appizer_http_connections_waiting_total";
/// Open connections.
pub const HTTP_CONNECTIONS_OPEN: &str = "appizer_http_connections_open";
/// 1 while a background `component` (pipeline, flush, compaction, segment_refresh) is
/// healthy, 0 while it keeps failing or stopped reporting (then `/readyz` is 503).
pub const COMPONENT_HEALTHY: &str = "appizer_component_healthy";
/// 1 while a `component` works in a degraded mode (`/readyz` names it and why).
pub const COMPONENT_DEGRADED: &str = "appizer_component_degraded";
/// Consecutive failed passes of a background `component`.
pub const COMPONENT_FAILURES: &str = "appizer_component_consecutive_failures";

const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The recorder's handle, installing the recorder on first use. One per process: every
/// server in the process (tests start several) reports into it.
pub fn prometheus_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.to_string()),
                    &DURATION_BUCKETS,
                )
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            handle
        })
        .clone()
}
