//! The health registry: each background loop (the ingestion workers, the Parquet
//! flush, compaction, the segment refresh) registers once and reports every pass, a
//! success or a failure. `/readyz` answers 503 naming a component that keeps failing
//! (its last `failures_to_fail` passes failed) or that stopped reporting (nothing for
//! `stale_after`); `/metrics` exports every component's state. A component may also
//! report that it works in a degraded mode (Redis unreachable, so rate limits are
//! local): still healthy, and `/readyz` names it and why.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// When a component counts as failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failed passes after which the component is failing (at least 1).
    pub failures_to_fail: u32,
    /// A component that reported nothing for this long is failing too (a loop that
    /// hangs); `None` for loops that may rightly stay quiet for long.
    pub stale_after: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            failures_to_fail: 3,
            stale_after: None,
        }
    }
}

#[derive(Debug)]
struct Component {
    policy: Policy,
    last_report: Instant,
    consecutive_failures: u32,
    last_error: Option<String>,
    degraded: Option<String>,
    passes: u64,
}

/// Every component's health; cloned handles share it.
#[derive(Debug, Clone, Default)]
pub struct HealthRegistry {
    components: Arc<Mutex<BTreeMap<&'static str, Component>>>,
}

/// One component's handle for its reports.
#[derive(Debug, Clone)]
pub struct HealthReporter {
    registry: HealthRegistry,
    name: &'static str,
}

/// A component's state as read by readiness and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentHealth {
    pub name: &'static str,
    /// Not failing by its policy.
    pub healthy: bool,
    pub consecutive_failures: u32,
    /// The error of the last failed pass, while the component has not succeeded since.
    pub last_error: Option<String>,
    /// Why the component works in a degraded mode, while it does.
    pub degraded: Option<String>,
    /// Passes reported so far, successes and failures.
    pub passes: u64,
    /// Time since the last report (or since registration).
    pub since_report: Duration,
}

impl HealthRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, Component>> {
        // A panic while holding this lock leaves plain counters behind: still usable.
        self.components.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `name` (again: its state starts over) and returns its reporter.
    pub fn register(&self, name: &'static str, policy: Policy) -> HealthReporter {
        self.lock().insert(
            name,
            Component {
                policy: Policy {
                    failures_to_fail: policy.failures_to_fail.max(1),
                    ..policy
                },
                last_report: Instant::now(),
                consecutive_failures: 0,
                last_error: None,
                degraded: None,
                passes: 0,
            },
        );
        HealthReporter {
            registry: self.clone(),
            name,
        }
    }

    /// Every registered component, by name, as of `now`.
    pub fn snapshot_at(&self, now: Instant) -> Vec<ComponentHealth> {
        self.lock()
            .iter()
            .map(|(name, c)| {
                let since_report = now.saturating_duration_since(c.last_report);
                let stale = c.policy.stale_after.is_some_and(|d| since_report > d);
                ComponentHealth {
                    name,
                    healthy: c.consecutive_failures < c.policy.failures_to_fail && !stale,
                    consecutive_failures: c.consecutive_failures,
                    last_error: c.last_error.clone(),
                    degraded: c.degraded.clone(),
                    passes: c.passes,
                    since_report,
                }
            })
            .collect()
    }

    pub fn snapshot(&self) -> Vec<ComponentHealth> {
        self.snapshot_at(Instant::now())
    }

    /// The components failing now.
    pub fn failing(&self) -> Vec<ComponentHealth> {
        self.snapshot().into_iter().filter(|c| !c.healthy).collect()
    }

    /// The healthy components working in a degraded mode now.
    pub fn degraded(&self) -> Vec<ComponentHealth> {
        self.snapshot()
            .into_iter()
            .filter(|c| c.healthy && c.degraded.is_some())
            .collect()
    }
}

impl HealthReporter {
    /// A pass succeeded.
    pub fn ok(&self) {
        if let Some(c) = self.registry.lock().get_mut(self.name) {
            c.last_report = Instant::now();
            c.consecutive_failures = 0;
            c.last_error = None;
            c.degraded = None;
            c.passes += 1;
        }
    }

    /// A pass succeeded in a degraded mode, for `reason` (until the next `ok`).
    pub fn degraded(&self, reason: &dyn std::fmt::Display) {
        if let Some(c) = self.registry.lock().get_mut(self.name) {
            c.last_report = Instant::now();
            c.consecutive_failures = 0;
            c.last_error = None;
            c.degraded = Some(reason.to_string());
            c.passes += 1;
        }
    }

    /// A pass failed with `error`.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        if let Some(c) = self.registry.lock().get_mut(self.name) {
            c.last_report = Instant::now();
            c.consecutive_failures = c.consecutive_failures.saturating_add(1);
            c.last_error = Some(error.to_string());
            c.passes += 1;
        }
    }

    /// The outcome of a pass, reported; the result is handed back.
    pub fn report<T, E: std::fmt::Display>(&self, outcome: Result<T, E>) -> Result<T, E> {
        match &outcome {
            Ok(_) => self.ok(),
            Err(e) => self.failed(e),
        }
        outcome
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(registry: &HealthRegistry, name: &str) -> ComponentHealth {
        registry
            .snapshot()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
    }

    #[test]
    fn a_degraded_component_stays_healthy_and_is_named_until_it_recovers() {
        let registry = HealthRegistry::new();
        let limits = registry.register("rate_limit", Policy::default());
        limits.degraded(&"Redis unreachable");
        let degraded = registry.degraded();
        assert_eq!(degraded.len(), 1);
        assert_eq!(degraded[0].degraded.as_deref(), Some("Redis unreachable"));
        assert!(registry.failing().is_empty(), "degraded is not failing");
        limits.failed(&"boom");
        limits.failed(&"boom");
        limits.failed(&"boom");
        assert!(
            registry.degraded().is_empty(),
            "a failing one is failing, not degraded"
        );
        limits.ok();
        assert!(registry.degraded().is_empty() && registry.failing().is_empty());
        assert!(state(&registry, "rate_limit").degraded.is_none());
    }

    #[test]
    fn a_component_fails_after_consecutive_failures_and_recovers_on_success() {
        let registry = HealthRegistry::new();
        let flush = registry.register("flush", Policy::default());
        let other = registry.register("compaction", Policy::default());
        assert!(registry.failing().is_empty(), "registered is not failing");
        flush.failed(&"disk full");
        flush.failed(&"disk full");
        assert!(state(&registry, "flush").healthy, "two failures of three");
        let _ = flush.report(Err::<(), _>("no space left"));
        let failing = registry.failing();
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].name, "flush");
        assert_eq!(failing[0].consecutive_failures, 3);
        assert_eq!(failing[0].last_error.as_deref(), Some("no space left"));
        other.ok();
        assert_eq!(
            registry.failing().len(),
            1,
            "another's success changes nothing"
        );
        flush.ok();
        let recovered = state(&registry, "flush");
        assert!(recovered.healthy && recovered.last_error.is_none());
        assert_eq!(recovered.passes, 4);
    }

    #[test]
    fn a_component_that_stops_reporting_is_stale() {
        let registry = HealthRegistry::new();
        let workers = registry.register(
            "pipeline",
            Policy {
                stale_after: Some(Duration::from_secs(60)),
                ..Policy::default()
            },
        );
        let quiet = registry.register("segment_refresh", Policy::default());
        workers.ok();
        let later = Instant::now() + Duration::from_secs(61);
        let states = registry.snapshot_at(later);
        assert!(
            !states
                .iter()
                .find(|c| c.name == "pipeline")
                .unwrap()
                .healthy
        );
        assert!(
            states
                .iter()
                .find(|c| c.name == "segment_refresh")
                .unwrap()
                .healthy
        );
        drop(quiet);
        assert!(registry
            .snapshot_at(Instant::now())
            .iter()
            .all(|c| c.healthy));
    }
}
