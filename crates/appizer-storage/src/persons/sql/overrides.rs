//! The overrides events queries apply: merged, split-off and deleted persons.

use std::collections::HashMap;

use appizer_core::{PersonId, ProjectId};

use super::rows::id;
use super::SqlPersonStore;
use crate::persons::PersonOverrides;
use crate::StoreError;

impl SqlPersonStore {
    pub(super) async fn load_overrides(
        &self,
        project: Option<ProjectId>,
    ) -> Result<HashMap<ProjectId, PersonOverrides>, StoreError> {
        let filter = if project.is_some() {
            " WHERE project_id = $1"
        } else {
            ""
        };
        let mut out: HashMap<ProjectId, PersonOverrides> = HashMap::new();
        let sql = format!(
            "SELECT project_id, old_person_id, distinct_id, person_id, updated_at FROM \
             person_overrides{filter}"
        );
        let mut query = sqlx::query_as::<_, (String, String, String, String, i64)>(&sql);
        if let Some(p) = project {
            query = query.bind(p.to_string());
        }
        for (p, old, distinct_id, to, at) in query.fetch_all(&self.pool).await? {
            let entry = out.entry(id(&p)?).or_default();
            entry.changed_at_ms = entry.changed_at_ms.max(at);
            let (old, to): (PersonId, PersonId) = (id(&old)?, id(&to)?);
            if distinct_id.is_empty() {
                entry.by_person.insert(old, to);
            } else {
                entry.by_pair.insert((old, distinct_id), to);
            }
        }
        let sql = format!("SELECT project_id, person_id, deleted_at FROM deleted_persons{filter}");
        let mut query = sqlx::query_as::<_, (String, String, i64)>(&sql);
        if let Some(p) = project {
            query = query.bind(p.to_string());
        }
        for (p, person, at) in query.fetch_all(&self.pool).await? {
            let entry = out.entry(id(&p)?).or_default();
            entry.changed_at_ms = entry.changed_at_ms.max(at);
            entry.deleted.insert(id(&person)?);
        }
        Ok(out)
    }
}
