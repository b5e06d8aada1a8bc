//! Reading events: `GET /api/v1/projects/{project_id}/events` (filters, newest first,
//! cursor pages), `.../events/live` (Server-Sent Events), `.../events/counts` (real-time
//! counters) and `.../ingestion-warnings` (messages dropped from accepted requests).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use appizer_core::event::Event;
use appizer_storage::events::{list_events, Cursor, EventFilter, StoredEvent};
use axum::extract::{RawQuery, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use super::CallerProject;
use crate::auth::CredentialHash;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// Events per page by default and at most.
pub const DEFAULT_EVENTS_PAGE: usize = 100;
pub const MAX_EVENTS_PAGE: usize = 1_000;
/// Ingestion warnings per page, at most.
pub const MAX_WARNINGS_PAGE: u32 = 500;

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<StoredEvent>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Filters of the event listing; `property.<name>=<value>` parameters also filter on
/// event properties (strings as is, numbers and booleans as written).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Event name.
    pub event: Option<String>,
    pub distinct_id: Option<String>,
    /// RFC 3339; events at or after.
    pub after: Option<String>,
    /// RFC 3339; events before.
    pub before: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::invalid(
                field,
                "must be an RFC 3339 date-time, e.g. 2026-11-25T10:00:00Z",
            )
        })
}

/// Reads the event filter from the raw query string (named parameters plus
/// `property.<name>`); an unknown parameter is an error naming it.
fn event_filter(query: Option<&str>) -> Result<EventFilter, ApiError> {
    let mut filter = EventFilter {
        limit: DEFAULT_EVENTS_PAGE,
        ..Default::default()
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "event" => filter.event = Some(value.into_owned()),
            "distinct_id" => filter.distinct_id = Some(value.into_owned()),
            "after" => filter.after = Some(parse_time("after", &value)?),
            "before" => filter.before = Some(parse_time("before", &value)?),
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_EVENTS_PAGE).contains(n))
                    .ok_or_else(|| ApiError::invalid("limit", format!("must be between 1 and {MAX_EVENTS_PAGE}")))?
            }
            "cursor" => {
                filter.cursor = Some(
                    Cursor::decode(&value)
                        .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this API returned"))?,
                )
            }
            other => match other.strip_prefix("property.") {
                Some(name) if !name.is_empty() => {
                    filter.properties.push((name.to_string(), value.into_owned()))
                }
                _ => {
                    return Err(ApiError::invalid(
                        other,
                        "unknown parameter: use event, distinct_id, after, before, limit, cursor or property.<name>",
                    ))
                }
            },
        }
    }
    Ok(filter)
}

/// List a project's events, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/events", tag = "events",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), EventQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<EventPage>> {
    let mut filter = event_filter(query.as_deref())?;
    filter.overrides = Some(std::sync::Arc::new(
        state.store.persons().overrides(scope).await?,
    ));
    let (events, next) = list_events(&state.events.store, scope, &filter)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "event listing failed");
            ApiError::internal()
        })?;
    Ok(Json(EventPage {
        events,
        next_cursor: next.map(|c| c.encode()),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    /// Only events of this name.
    pub event: Option<String>,
    /// Only events of this distinct id.
    pub distinct_id: Option<String>,
}

/// Live events as Server-Sent Events (`event: event`, data = the event as JSON). A
/// client that falls more than the live buffer behind gets `event: dropped` and the
/// stream ends; reconnect to resume. The stream also ends with `event: closed` (data
/// `{"reason"}`) once its key is revoked (noticed within `auth.key_cache_ttl_ms`) and
/// after `server.max_stream_secs`.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/events/live", tag = "events",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), LiveQuery),
    responses((status = 200, content_type = "text/event-stream", body = String),
        (status = 404, body = ErrorBody)))]
pub async fn live(
    State(state): State<AppState>,
    CallerProject {
        caller, project, ..
    }: CallerProject,
    ApiQuery(query): ApiQuery<LiveQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let keep = move |e: &Event| {
        e.project_id == project.id
            && query.event.as_ref().is_none_or(|n| &e.event == n)
            && query
                .distinct_id
                .as_ref()
                .is_none_or(|d| &e.distinct_id == d)
    };
    let mut recheck = tokio::time::interval(state.keys.ttl().max(Duration::from_millis(100)));
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let live = LiveStream {
        receiver: state.events.feed.subscribe(),
        ends_at: tokio::time::Instant::now()
            + Duration::from_secs(state.config.server.max_stream_secs),
        recheck,
        credential: caller.principal.credential_hash(),
        state,
    };
    let stream = futures_util::stream::unfold(Some(live), move |live| {
        let keep = keep.clone();
        async move {
            let mut live = live?;
            let (sse, open) = live.next(&keep).await?;
            Some((Ok(sse), open.then_some(live)))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// One live stream's state between events.
struct LiveStream {
    receiver: tokio::sync::broadcast::Receiver<Arc<Event>>,
    ends_at: tokio::time::Instant,
    recheck: tokio::time::Interval,
    credential: CredentialHash,
    state: AppState,
}

impl LiveStream {
    /// The next message, and whether the stream goes on after it; `None` ends it at
    /// once (shutdown, pipeline gone).
    async fn next(&mut self, keep: &impl Fn(&Event) -> bool) -> Option<(SseEvent, bool)> {
        let closed = |reason: &str| {
            let data = serde_json::json!({ "reason": reason }).to_string();
            Some((SseEvent::default().event("closed").data(data), false))
        };
        loop {
            let next = tokio::select! {
                next = self.receiver.recv() => next,
                _ = self.state.events.closing.cancelled() => return None,
                _ = tokio::time::sleep_until(self.ends_at) => {
                    return closed("the stream reached server.max_stream_secs; reconnect");
                }
                _ = self.recheck.tick() => {
                    let state = &self.state;
                    match state.keys.lookup_hash(state.store.as_ref(), self.credential.clone()).await {
                        Ok(None) => return closed("the key was revoked or the session ended"),
                        // Unreachable storage does not end streams.
                        Ok(Some(_)) | Err(_) => continue,
                    }
                }
            };
            match next {
                Ok(event) if keep(&event) => {
                    let data = serde_json::to_string(&*event).unwrap_or_default();
                    return Some((SseEvent::default().event("event").data(data), true));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    let data = serde_json::json!({"reason": "slow consumer", "missed": missed})
                        .to_string();
                    return Some((SseEvent::default().event("dropped").data(data), false));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CountsQuery {
    /// The window ending now: `<n>m` or `<n>h`, at most 24h (default 60m).
    pub last: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventCounts {
    /// First minute of the window (UTC).
    pub from: DateTime<Utc>,
    /// Last minute of the window (UTC).
    pub to: DateTime<Utc>,
    /// Per event name: its total and its count per minute (minute start -> count).
    pub events: BTreeMap<String, EventCount>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventCount {
    pub total: u64,
    pub per_minute: BTreeMap<DateTime<Utc>, u64>,
}

fn parse_window(text: &str) -> Option<i64> {
    let (number, per_unit) = match (text.strip_suffix('m'), text.strip_suffix('h')) {
        (Some(n), _) => (n, 1),
        (_, Some(n)) => (n, 60),
        _ => return None,
    };
    let n: i64 = number.parse().ok()?;
    let minutes = n.checked_mul(per_unit)?;
    (1..=24 * 60).contains(&minutes).then_some(minutes)
}

/// Events per name and minute over the last minutes, from the real-time counters.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/events/counts", tag = "events",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), CountsQuery),
    responses((status = 200, body = EventCounts), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn counts(
    State(state): State<AppState>,
    CallerProject { project, .. }: CallerProject,
    ApiQuery(query): ApiQuery<CountsQuery>,
) -> ApiResult<Json<EventCounts>> {
    let minutes = match &query.last {
        None => 60,
        Some(text) => parse_window(text)
            .ok_or_else(|| ApiError::invalid("last", "must be <n>m or <n>h, from 1m to 24h"))?,
    };
    let now_minute = Utc::now().timestamp().div_euclid(60);
    let from_minute = now_minute - minutes + 1;
    let minute_time = |m: i64| DateTime::from_timestamp(m * 60, 0).unwrap_or_default();
    let events = state
        .events
        .feed
        .counters()
        .counts(project.id, from_minute, now_minute)
        .into_iter()
        .map(|(name, per_minute)| {
            let total = per_minute.values().sum();
            let per_minute = per_minute
                .into_iter()
                .map(|(m, c)| (minute_time(m), c))
                .collect();
            (name, EventCount { total, per_minute })
        })
        .collect();
    Ok(Json(EventCounts {
        from: minute_time(from_minute),
        to: minute_time(now_minute),
        events,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WarningView {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The field at fault.
    pub field: String,
    /// The rule it broke.
    pub reason: String,
    /// `segment` or `posthog`.
    pub dialect: &'static str,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WarningPage {
    pub warnings: Vec<WarningView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WarningQuery {
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only warnings with an id below this.
    pub before: Option<i64>,
}

/// Messages dropped from accepted requests, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/ingestion-warnings", tag = "events",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), WarningQuery),
    responses((status = 200, body = WarningPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn warnings(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiQuery(query): ApiQuery<WarningQuery>,
) -> ApiResult<Json<WarningPage>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_WARNINGS_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_WARNINGS_PAGE}"),
        ));
    }
    let entries = state
        .store
        .list_ingestion_warnings(scope, query.before, limit + 1)
        .await?;
    let more = entries.len() > limit as usize;
    let warnings: Vec<WarningView> = entries
        .into_iter()
        .take(limit as usize)
        .map(|e| WarningView {
            id: e.id,
            message_id: e.warning.message_id,
            field: e.warning.field,
            reason: e.warning.reason,
            dialect: e.warning.dialect.as_str(),
            at: e.warning.at,
        })
        .collect();
    Ok(Json(WarningPage {
        next_before: if more {
            warnings.last().map(|w| w.id)
        } else {
            None
        },
        warnings,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_filters_parse_and_name_bad_parameters() {
        let f = event_filter(Some(
            "event=Signed%20Up&property.plan=pro&limit=5&after=2026-11-25T10:00:00Z",
        ))
        .unwrap();
        assert_eq!(f.event.as_deref(), Some("Signed Up"));
        assert_eq!(f.properties, vec![("plan".to_string(), "pro".to_string())]);
        assert_eq!(f.limit, 5);
        assert!(f.after.is_some());
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=5000", "limit"),
            ("after=yesterday", "after"),
            ("cursor=zzz", "cursor"),
            ("colour=red", "colour"),
            ("property.=x", "property."),
        ] {
            assert_eq!(
                event_filter(Some(query)).unwrap_err().field.as_deref(),
                Some(field),
                "{query}"
            );
        }
    }

    #[test]
    fn count_windows() {
        assert_eq!(parse_window("60m"), Some(60));
        assert_eq!(parse_window("24h"), Some(1440));
        assert_eq!(parse_window("25h"), None);
        assert_eq!(parse_window("0m"), None);
        assert_eq!(parse_window("m"), None);
        assert_eq!(parse_window(""), None);
        // A multi-byte character where the unit is: refused, not a panic.
        assert_eq!(parse_window("1é"), None);
        assert_eq!(parse_window("é"), None);
        assert_eq!(parse_window("-5m"), None);
    }
}
