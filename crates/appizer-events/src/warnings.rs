//! Ingestion warnings leave the request path through a bounded channel; one task writes
//! them to the metadata store in batches. When the channel is full (the store is slow
//! or down) further warnings are counted and dropped: a warning is advice, and
//! ingestion never waits for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use appizer_core::event::{Dialect, NewIngestionWarning};
use appizer_core::{OrganizationId, ProjectId};
use appizer_storage::MetadataStore;
use appizer_users::IdentityWarning;
use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::capture::IngestionWarning;
use crate::metrics as m;

/// Warnings waiting to be written, at most.
pub const PENDING_WARNINGS: usize = 10_000;

/// The sending side, held by the gateway.
#[derive(Clone)]
pub struct WarningSink {
    tx: mpsc::Sender<NewIngestionWarning>,
    store: Arc<dyn MetadataStore>,
    /// The organisation of each project the workers warned about.
    organizations: Arc<parking_lot::Mutex<HashMap<ProjectId, OrganizationId>>>,
}

impl std::fmt::Debug for WarningSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarningSink").finish_non_exhaustive()
    }
}

impl WarningSink {
    /// Starts the writer task; it drains what is pending when `shutdown` fires.
    pub fn start(
        store: Arc<dyn MetadataStore>,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(PENDING_WARNINGS);
        let task = tokio::spawn(write_warnings(store.clone(), rx, shutdown));
        (
            Self {
                tx,
                store,
                organizations: Arc::default(),
            },
            task,
        )
    }

    /// Queues warnings about kept events' ids (placeholders, refused merges); they are
    /// not counted as dropped events. Never waits for the writer.
    pub async fn record_identity(&self, warnings: Vec<IdentityWarning>) {
        let at = Utc::now();
        for w in warnings {
            let known = self.organizations.lock().get(&w.project_id).copied();
            let organization_id = match known {
                Some(org) => org,
                None => match self.store.project_scope(w.project_id).await {
                    Ok(Some(scope)) => {
                        let org = scope.organization();
                        self.organizations.lock().insert(w.project_id, org);
                        org
                    }
                    // A deleted project, or the store is down: the warning is advice.
                    _ => {
                        metrics::counter!(m::WARNINGS_DISCARDED_TOTAL).increment(1);
                        continue;
                    }
                },
            };
            let entry = NewIngestionWarning {
                organization_id,
                project_id: w.project_id,
                message_id: Some(w.message_id),
                field: w.field,
                reason: w.reason,
                dialect: w.dialect,
                at,
            };
            if self.tx.try_send(entry).is_err() {
                metrics::counter!(m::WARNINGS_DISCARDED_TOTAL).increment(1);
            }
        }
    }

    /// Queues the warnings of one request; never waits.
    pub fn record(
        &self,
        organization_id: OrganizationId,
        project_id: ProjectId,
        dialect: Dialect,
        warnings: Vec<IngestionWarning>,
    ) {
        let at = Utc::now();
        for w in warnings {
            metrics::counter!(m::EVENTS_DROPPED_TOTAL, "reason" => "invalid").increment(1);
            let entry = NewIngestionWarning {
                organization_id,
                project_id,
                message_id: w.message_id,
                field: w.field,
                reason: w.reason,
                dialect,
                at,
            };
            if self.tx.try_send(entry).is_err() {
                metrics::counter!(m::WARNINGS_DISCARDED_TOTAL).increment(1);
            }
        }
    }
}

async fn write_warnings(
    store: Arc<dyn MetadataStore>,
    mut rx: mpsc::Receiver<NewIngestionWarning>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::new();
    loop {
        let first = tokio::select! {
            w = rx.recv() => w,
            _ = shutdown.cancelled() => { rx.close(); rx.recv().await }
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < 500 {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        if let Err(e) = store.record_ingestion_warnings(&batch).await {
            tracing::warn!(error = %e, count = batch.len(), "cannot store ingestion warnings; dropped");
            metrics::counter!(m::WARNINGS_DISCARDED_TOTAL).increment(batch.len() as u64);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        batch.clear();
    }
}
