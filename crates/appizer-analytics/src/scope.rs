//! What every query of one project shares: its DataFusion session, time zone, the person
//! overrides that say which person each stored event belongs to now, and (loaded only
//! when a query names a person property) the project's person properties. Property
//! conditions compile to expressions here, once, for events and persons alike.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use appizer_storage::events::query::{
    effective_person_udf, json_field_text, json_number_udf, json_text_udf, json_value_text,
};
use appizer_storage::persons::PersonOverrides;
use appizer_storage::ProjectScope;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::functions::expr_fn::{lower, strpos};
use datafusion::logical_expr::{cast, create_udf, try_cast, ColumnarValue, Volatility};
use datafusion::prelude::{col, lit, DataFrame, Expr, SessionContext};
use datafusion::scalar::ScalarValue;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::model::{Operator, PropertyFilter, PropertyType, MAX_FILTERS};
use crate::{AnalyticsError, Engine, QueryProject, Result};

/// Longest property key, in bytes.
pub const MAX_KEY_BYTES: usize = 400;

pub struct Scope<'e> {
    pub engine: &'e Engine,
    pub ctx: SessionContext,
    /// The project as the query named it (id and time zone).
    pub query_project: QueryProject,
    pub project: ProjectScope,
    pub tz: Tz,
    pub now: DateTime<Utc>,
    overrides: Arc<PersonOverrides>,
    /// Every person of the project: id and properties (JSON text), loaded on demand.
    persons: OnceCell<Arc<Vec<(String, String)>>>,
    udfs: AtomicUsize,
    pool: Arc<crate::PeakPool>,
    /// What the query's own structures (persons interned, rows gathered per person,
    /// person properties) hold, charged to the same pool as the plan's operators.
    held: parking_lot::Mutex<MemoryReservation>,
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        self.engine.record_peak(self.pool.peak());
    }
}

impl<'e> Scope<'e> {
    pub async fn new(
        engine: &'e Engine,
        project: &QueryProject,
        now: DateTime<Utc>,
    ) -> Result<Scope<'e>> {
        let overrides = engine.persons.overrides(project.scope).await?;
        let (ctx, pool) = engine.session()?;
        let held = MemoryConsumer::new("query structures")
            .register(&(pool.clone() as Arc<dyn MemoryPool>));
        Ok(Self {
            held: parking_lot::Mutex::new(held),
            engine,
            ctx,
            pool,
            query_project: project.clone(),
            project: project.scope,
            tz: crate::time::zone(&project.timezone),
            now,
            overrides: Arc::new(overrides),
            persons: OnceCell::new(),
            udfs: AtomicUsize::new(0),
        })
    }

    /// The query's memory pool, for what charges it directly (SQL functions).
    pub(crate) fn memory_pool(&self) -> Arc<dyn MemoryPool> {
        self.pool.clone()
    }

    /// Charges `bytes` more of the query's own structures to its memory pool, for the
    /// rest of the query: past `analytics.query_memory_mb` the query fails with a
    /// limit error.
    pub fn hold(&self, bytes: usize) -> Result<()> {
        Ok(self.held.lock().try_grow(bytes)?)
    }

    /// For plans that group events by person: past the first 10,000 rows of a
    /// partition, when there are at least a tenth as many groups as rows, the partial
    /// aggregation passes rows on rather than grouping them twice (DataFusion's
    /// default asks for 80 % after 100,000 rows, which an event stream grouped by
    /// person rarely reaches).
    pub fn group_by_person_once(&self) {
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let execution = &mut state.config_mut().options_mut().execution;
        execution.skip_partial_aggregation_probe_ratio_threshold = 0.1;
        execution.skip_partial_aggregation_probe_rows_threshold = 10_000;
    }

    /// `None` when no person of the project was deleted: then every stored event
    /// counts, and counts need not look at person ids. Otherwise when persons last
    /// changed (ms since the epoch): files rewritten after it hold no deleted
    /// person's events.
    pub fn deletions_changed_at(&self) -> Option<i64> {
        (!self.overrides.deleted.is_empty()).then_some(self.overrides.changed_at_ms)
    }

    /// The person an event belongs to now, as text (NULL for events without one).
    pub fn actor(&self) -> Expr {
        if self.overrides.is_empty() {
            col("person_id")
        } else {
            effective_person_udf(self.overrides.clone())
                .call(vec![col("person_id"), col("distinct_id")])
        }
    }

    /// The project's events with timestamps in `[from, to)`, without those of deleted
    /// persons.
    pub async fn events(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<DataFrame> {
        let df = self
            .engine
            .events
            .events(&self.ctx, self.project, Some(from), Some(to))
            .await?;
        self.restrict(df, from, to)
    }

    /// `df`'s events with timestamps in `[from, to)`, without those of deleted persons.
    pub fn restrict(
        &self,
        df: DataFrame,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<DataFrame> {
        let mut keep = col("timestamp")
            .gt_eq(ts(from))
            .and(col("timestamp").lt(ts(to)));
        if !self.overrides.is_empty() {
            keep = keep.and(col("person_id").is_null().or(self.actor().is_not_null()));
        }
        Ok(df.filter(keep)?)
    }

    /// `event = name`, or nothing for all events.
    pub fn event_is(&self, name: Option<&str>) -> Option<Expr> {
        name.map(|n| col("event").eq(lit(n.to_string())))
    }

    /// All of `filters` as one condition (`None` for none). `field` names the list in
    /// errors (`properties`, `series[1].properties`).
    pub async fn conditions(
        &self,
        filters: &[PropertyFilter],
        field: &str,
    ) -> Result<Option<Expr>> {
        if filters.len() > MAX_FILTERS {
            return Err(AnalyticsError::invalid(
                field,
                format!("at most {MAX_FILTERS} conditions"),
            ));
        }
        let mut all: Option<Expr> = None;
        for (i, f) in filters.iter().enumerate() {
            let field = format!("{field}[{i}]");
            let condition = Condition::parse(f, &field)?;
            let expr = match f.kind {
                PropertyType::Event => condition.expr(event_property(&f.key)),
                PropertyType::Person => {
                    self.actor_in(self.persons_where(&f.key, &condition).await?)
                }
            };
            all = Some(match all {
                None => expr,
                Some(a) => a.and(expr),
            });
        }
        Ok(all)
    }

    /// The text of a property of the event or of its person (NULL when absent).
    pub async fn property(&self, kind: PropertyType, key: &str, field: &str) -> Result<Expr> {
        check_key(key, field)?;
        match kind {
            PropertyType::Event => Ok(event_property(key)),
            PropertyType::Person => {
                let persons = self.person_properties().await?;
                let values: HashMap<String, String> = persons
                    .iter()
                    .filter_map(|(id, props)| json_field_text(props, key).map(|v| (id.clone(), v)))
                    .collect();
                Ok(self.actor_lookup(values))
            }
        }
    }

    /// Every person of the project (ids as text).
    pub async fn person_ids(&self) -> Result<HashSet<String>> {
        Ok(self
            .person_properties()
            .await?
            .iter()
            .map(|(id, _)| id.clone())
            .collect())
    }

    /// The persons whose property `key` meets `condition`.
    pub async fn persons_where(&self, key: &str, condition: &Condition) -> Result<HashSet<String>> {
        Ok(self
            .person_properties()
            .await?
            .iter()
            .filter(|(_, props)| condition.matches_text(json_field_text(props, key).as_deref()))
            .map(|(id, _)| id.clone())
            .collect())
    }

    /// A query's conditions on all its events: property conditions and segments.
    pub async fn global(
        &self,
        properties: &[PropertyFilter],
        segments: &[String],
    ) -> Result<Option<Expr>> {
        let a = self.conditions(properties, "properties").await?;
        let b = self.in_segments(segments, "segments").await?;
        Ok(match (a, b) {
            (Some(a), Some(b)) => Some(a.and(b)),
            (a, b) => a.or(b),
        })
    }

    /// Only persons in every one of `segments` (stored members), as a condition.
    pub async fn in_segments(&self, segments: &[String], field: &str) -> Result<Option<Expr>> {
        if segments.len() > MAX_FILTERS {
            return Err(AnalyticsError::invalid(
                field,
                format!("at most {MAX_FILTERS} segments"),
            ));
        }
        let mut all: Option<Expr> = None;
        for (i, id) in segments.iter().enumerate() {
            let members = self
                .engine
                .stored_members(&self.query_project, id, &format!("{field}[{i}]"))
                .await?;
            let expr = self.actor_in(members);
            all = Some(match all {
                None => expr,
                Some(a) => a.and(expr),
            });
        }
        Ok(all)
    }

    async fn person_properties(&self) -> Result<Arc<Vec<(String, String)>>> {
        self.persons
            .get_or_try_init(|| async {
                let rows = self.engine.persons.property_table(self.project).await?;
                self.hold(rows.iter().map(|(_, text)| 72 + text.len()).sum())?;
                Ok::<_, AnalyticsError>(Arc::new(
                    rows.into_iter()
                        .map(|(id, text)| (id.to_string(), text))
                        .collect(),
                ))
            })
            .await
            .cloned()
    }

    fn next_udf(&self, kind: &str) -> String {
        format!("{kind}_{}", self.udfs.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether the event's person is one of `persons`.
    fn actor_in(&self, persons: HashSet<String>) -> Expr {
        let udf = create_udf(
            &self.next_udf("person_matches"),
            vec![DataType::Utf8],
            DataType::Boolean,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| {
                let ids = args[0].clone().into_array(1)?;
                let ids = ids.as_string::<i32>();
                let mut out = BooleanBuilder::with_capacity(ids.len());
                for i in 0..ids.len() {
                    out.append_value(!ids.is_null(i) && persons.contains(ids.value(i)));
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
            }),
        );
        udf.call(vec![self.actor()])
    }

    /// The value `values` holds for the event's person.
    fn actor_lookup(&self, values: HashMap<String, String>) -> Expr {
        let udf = create_udf(
            &self.next_udf("person_property"),
            vec![DataType::Utf8],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| {
                let ids = args[0].clone().into_array(1)?;
                let ids = ids.as_string::<i32>();
                let mut out = StringBuilder::with_capacity(ids.len(), ids.len() * 8);
                for i in 0..ids.len() {
                    let value = (!ids.is_null(i))
                        .then(|| values.get(ids.value(i)))
                        .flatten();
                    out.append_option(value);
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
            }),
        );
        udf.call(vec![self.actor()])
    }
}

pub fn ts(at: DateTime<Utc>) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(at.timestamp_micros()),
        Some("UTC".into()),
    ))
}

/// `json_text(properties, key)`.
pub fn event_property(key: &str) -> Expr {
    json_text_udf().call(vec![col("properties"), lit(key.to_string())])
}

/// An event property as a number (NULL when absent or not a number); the same as
/// `numeric(event_property(key))`, without writing numbers out as text first.
pub fn event_number(key: &str, field: &str) -> Result<Expr> {
    check_key(key, field)?;
    Ok(json_number_udf().call(vec![col("properties"), lit(key.to_string())]))
}

/// A property as a number (NULL when absent or not a number).
pub fn numeric(expr: Expr) -> Expr {
    try_cast(expr, DataType::Float64)
}

fn check_key(key: &str, field: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(AnalyticsError::invalid(
            format!("{field}.key"),
            format!("must be 1 to {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A checked property condition, evaluated the same way on an event's text
/// ([`Condition::expr`]) and on a person's value ([`Condition::matches`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    operator: Operator,
    texts: Vec<String>,
    number: Option<f64>,
}

impl Condition {
    pub fn parse(f: &PropertyFilter, field: &str) -> Result<Self> {
        check_key(&f.key, field)?;
        let value_field = format!("{field}.value");
        let scalar_text = |v: &Value| match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                Ok(json_value_text(v).unwrap_or_default())
            }
            _ => Err(AnalyticsError::invalid(
                &value_field,
                "must be a string, number or boolean",
            )),
        };
        let (mut texts, mut number) = (Vec::new(), None);
        match f.operator {
            Operator::IsSet | Operator::IsNotSet => {}
            Operator::Exact | Operator::IsNot => match &f.value {
                Some(Value::Array(values)) if !values.is_empty() => {
                    for v in values {
                        texts.push(scalar_text(v)?);
                    }
                }
                Some(v) => texts.push(scalar_text(v)?),
                None => {
                    return Err(AnalyticsError::invalid(
                        value_field,
                        "is required by this operator",
                    ))
                }
            },
            Operator::Contains | Operator::NotContains => match &f.value {
                Some(v) => texts.push(scalar_text(v)?.to_lowercase()),
                None => {
                    return Err(AnalyticsError::invalid(
                        value_field,
                        "is required by this operator",
                    ))
                }
            },
            Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte => {
                number = f.value.as_ref().and_then(|v| match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                });
                if number.is_none() {
                    return Err(AnalyticsError::invalid(
                        value_field,
                        "must be a number for gt, gte, lt and lte",
                    ));
                }
            }
        }
        Ok(Self {
            operator: f.operator,
            texts,
            number,
        })
    }

    /// The condition on a text expression (a property's `json_text`).
    pub fn expr(&self, value: Expr) -> Expr {
        let any_of = |v: Expr| -> Expr {
            let list: Vec<Expr> = self.texts.iter().map(|t| lit(t.clone())).collect();
            if list.len() == 1 {
                v.eq(list.into_iter().next().expect("one"))
            } else {
                v.in_list(list, false)
            }
        };
        let contains = |v: Expr| strpos(lower(v), lit(self.texts[0].clone())).gt(lit(0i64));
        let n = || lit(self.number.unwrap_or_default());
        match self.operator {
            Operator::Exact => any_of(value),
            Operator::IsNot => value.clone().is_null().or(!any_of(value)),
            Operator::Contains => value.clone().is_not_null().and(contains(value)),
            Operator::NotContains => value.clone().is_null().or(!contains(value)),
            Operator::Gt => numeric(value).gt(n()),
            Operator::Gte => numeric(value).gt_eq(n()),
            Operator::Lt => numeric(value).lt(n()),
            Operator::Lte => numeric(value).lt_eq(n()),
            Operator::IsSet => value.is_not_null(),
            Operator::IsNotSet => value.is_null(),
        }
    }

    /// The condition on a JSON value (a person's property).
    pub fn matches(&self, value: Option<&Value>) -> bool {
        self.matches_text(value.and_then(json_value_text).as_deref())
    }

    /// The condition on a property's text, as `json_text` gives it.
    pub fn matches_text(&self, text: Option<&str>) -> bool {
        let text = text.map(str::to_string);
        let number = || text.as_deref().and_then(|t| t.trim().parse::<f64>().ok());
        let n = self.number.unwrap_or_default();
        let contains = |t: &str| t.to_lowercase().contains(&self.texts[0]);
        match self.operator {
            Operator::Exact => text.is_some_and(|t| self.texts.contains(&t)),
            Operator::IsNot => text.is_none_or(|t| !self.texts.contains(&t)),
            Operator::Contains => text.is_some_and(|t| contains(&t)),
            Operator::NotContains => text.is_none_or(|t| !contains(&t)),
            Operator::Gt => number().is_some_and(|x| x > n),
            Operator::Gte => number().is_some_and(|x| x >= n),
            Operator::Lt => number().is_some_and(|x| x < n),
            Operator::Lte => number().is_some_and(|x| x <= n),
            Operator::IsSet => text.is_some(),
            Operator::IsNotSet => text.is_none(),
        }
    }
}

/// Rejects names that are blank or too long (`event` of a step, a series).
pub fn check_event_name(name: &str, field: &str) -> Result<()> {
    // Event names share the limit of ids at ingestion.
    let max = appizer_core::event::MAX_ID_BYTES;
    if name.is_empty() || name.len() > max {
        return Err(AnalyticsError::invalid(
            field,
            format!("must be 1 to {max} bytes"),
        ));
    }
    Ok(())
}

/// Converts a timestamp column value to microseconds (for rows streamed into Rust).
pub fn micros_expr() -> Expr {
    cast(col("timestamp"), DataType::Int64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn condition(operator: Operator, value: Value) -> Condition {
        let f = PropertyFilter {
            key: "k".into(),
            kind: PropertyType::Person,
            operator,
            value: Some(value),
        };
        Condition::parse(&f, "properties[0]").unwrap()
    }

    #[test]
    fn conditions_compare_values_as_text_and_numbers() {
        let exact = condition(Operator::Exact, json!(["pro", 42, true]));
        for (v, expected) in [
            (Some(json!("pro")), true),
            (Some(json!(42)), true),
            (Some(json!("42")), true),
            (Some(json!(true)), true),
            (Some(json!("Pro")), false),
            (None, false),
        ] {
            assert_eq!(exact.matches(v.as_ref()), expected, "{v:?}");
        }
        let not = condition(Operator::IsNot, json!("pro"));
        assert!(not.matches(None), "is_not holds for an absent property");
        assert!(!not.matches(Some(&json!("pro"))));
        let contains = condition(Operator::Contains, json!("ROM"));
        assert!(contains.matches(Some(&json!("Chrome"))));
        assert!(!contains.matches(None));
        let gt = condition(Operator::Gt, json!(10));
        assert!(gt.matches(Some(&json!(10.5))));
        assert!(gt.matches(Some(&json!("11"))));
        assert!(!gt.matches(Some(&json!("ten"))));
        assert!(!gt.matches(Some(&json!(10))));
    }

    #[test]
    fn malformed_conditions_name_their_field() {
        let bad = [
            (Operator::Gt, Some(json!("ten"))),
            (Operator::Exact, None),
            (Operator::Exact, Some(json!({"a": 1}))),
            (Operator::Contains, None),
        ];
        for (operator, value) in bad {
            let f = PropertyFilter {
                key: "k".into(),
                kind: PropertyType::Event,
                operator,
                value,
            };
            let e = Condition::parse(&f, "properties[3]").unwrap_err();
            assert!(e.to_string().starts_with("properties[3].value"), "{e}");
        }
        let f = PropertyFilter {
            key: String::new(),
            kind: PropertyType::Event,
            operator: Operator::IsSet,
            value: None,
        };
        let e = Condition::parse(&f, "properties[0]").unwrap_err();
        assert!(e.to_string().starts_with("properties[0].key"), "{e}");
    }
}
