//! A campaign's audience over SQL: persons walked in id order (the persons index), with
//! their distinct ids' active devices, segment inclusion and exclusion as lookups in
//! the members' primary key. Each page costs its own rows, never a rescan of what came
//! before: the joins are written `CROSS JOIN` so SQLite keeps that order (without it,
//! and without table statistics, it drives the join from every device of the platform
//! and sorts them for each page); PostgreSQL plans them as the inner joins they are.

use appizer_core::PersonId;
use serde_json::{Map, Value};
use sqlx::Row;

use super::super::{ReachQuery, Reachable};
use super::outbox::placeholders;
use super::{corrupt, device_from_row, SqlPushStore};
use crate::metadata::parse_id;
use crate::{ProjectScope, StoreError};

impl SqlPushStore {
    pub(super) async fn reachable_page(
        &self,
        scope: ProjectScope,
        q: &ReachQuery,
    ) -> Result<Vec<Reachable>, StoreError> {
        if q.platforms.is_empty() {
            return Ok(Vec::new());
        }
        let mut binds: Vec<String> = vec![scope.project().to_string()];
        let mut list = |values: Vec<String>| {
            let first = binds.len() + 1;
            let n = values.len();
            binds.extend(values);
            placeholders(first, n)
        };
        let platforms = list(q.platforms.iter().map(|p| p.as_str().to_string()).collect());
        let mut sql = format!(
            "SELECT d.id, d.project_id, d.platform, d.address, d.p256dh, d.auth, \
             d.distinct_id, p.id AS person_id, p.properties, d.app_id, d.locale, d.timezone, \
             d.state, d.retired_reason, d.created_at, d.updated_at \
             FROM persons p CROSS JOIN person_distinct_ids pd CROSS JOIN push_devices d \
             WHERE pd.person_id = p.id AND pd.project_id = p.project_id \
             AND d.project_id = pd.project_id AND d.distinct_id = pd.distinct_id \
             AND p.project_id = $1 AND d.state = 'active' AND d.platform IN ({platforms})"
        );
        if !q.include.is_empty() {
            let ids = list(q.include.iter().map(ToString::to_string).collect());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM segment_members sm \
                 WHERE sm.person_id = p.id AND sm.segment_id IN ({ids}))"
            ));
        }
        if !q.exclude.is_empty() {
            let ids = list(q.exclude.iter().map(ToString::to_string).collect());
            sql.push_str(&format!(
                " AND NOT EXISTS (SELECT 1 FROM segment_members sm \
                 WHERE sm.person_id = p.id AND sm.segment_id IN ({ids}))"
            ));
        }
        if let Some(person) = q.person {
            let at = list(vec![person.to_string()]);
            sql.push_str(&format!(" AND p.id = {at}"));
        }
        if let Some(after) = q.after {
            let at = list(vec![after.to_string()]);
            sql.push_str(&format!(" AND p.id > {at}"));
        }
        let limit = q.limit.max(1);
        sql.push_str(&format!(" ORDER BY p.id, d.id LIMIT {limit}"));
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            let person_id: PersonId =
                parse_id(&row.try_get::<String, _>("person_id")?, "person id")?;
            let text: String = row.try_get("properties")?;
            let properties: Map<String, Value> =
                serde_json::from_str(&text).map_err(|_| corrupt("person properties", &text))?;
            page.push(Reachable {
                person_id,
                properties,
                device: device_from_row(row)?,
            });
        }
        // A full page may have cut its last person's devices: that person starts the next.
        if page.len() == limit as usize {
            let last = page.last().map(|r| r.person_id);
            if page.first().map(|r| r.person_id) != last {
                page.retain(|r| Some(r.person_id) != last);
            }
        }
        Ok(page)
    }
}
