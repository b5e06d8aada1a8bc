//! Saved analytics definitions: custom metrics, segments, insights and dashboards. The
//! store keeps each as a named JSON body per project; the analytics engine gives the
//! body its meaning.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{DefinitionId, ProjectId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefinitionKind {
    Metric,
    Segment,
    /// A saved query and its display.
    Insight,
    /// A grid of insights.
    Dashboard,
}

impl DefinitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionKind::Metric => "metric",
            DefinitionKind::Segment => "segment",
            DefinitionKind::Insight => "insight",
            DefinitionKind::Dashboard => "dashboard",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            DefinitionKind::Metric,
            DefinitionKind::Segment,
            DefinitionKind::Insight,
            DefinitionKind::Dashboard,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub id: DefinitionId,
    pub project_id: ProjectId,
    pub kind: DefinitionKind,
    /// Unique per project and kind.
    pub name: String,
    pub description: String,
    pub body: Value,
    /// Segments: members at the last computation, and when that was.
    pub member_count: Option<u64>,
    pub computed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
