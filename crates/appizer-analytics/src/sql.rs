//! Read-only SQL for analysts, and `explain`.
//!
//! A session gets two tables and nothing else: `events`, the project's events (files
//! and buffer) with `person_id` the person each belongs to now and deleted persons'
//! events left out, and `persons` (`id`, `properties` as JSON text). The project scope
//! is in the plan of `events` itself, so no SQL can reach another project's rows.
//! One statement, a query, is accepted: DataFusion refuses DDL, DML and other
//! statements (`SQLOptions`), and no table function or file URL is enabled. `json_text`
//! reads a property: `json_text(properties, 'plan')`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::physical_plan::displayable;
use datafusion::prelude::{col, DataFrame, Expr};
use datafusion::sql::parser::{DFParser, Statement};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::model::TrendsQuery;
use crate::scope::Scope;
use crate::time::{resolve_range, Frame};
use crate::trends::FromRollups;
use crate::{AnalyticsError, Engine, QueryProject, Result};

/// Longest SQL text, in bytes.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One SELECT (or WITH ... SELECT) over `events` and `persons`.
    pub query: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SqlColumn {
    pub name: String,
    /// The Arrow type, as DataFusion names it (`Int64`, `Utf8`, ...).
    #[serde(rename = "type")]
    pub data_type: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SqlResult {
    pub columns: Vec<SqlColumn>,
    /// One object per row, keyed by column name.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
    /// More rows existed than `analytics.sql_max_rows`; only that many are here.
    pub truncated: bool,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// An SQL query to explain...
    #[serde(default)]
    pub sql: Option<String>,
    /// ...or a trends query (the plan of its first series).
    #[serde(default)]
    pub trends: Option<TrendsQuery>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExplainResult {
    /// `scan` (the plans below answer) or `rollups` (a trends series of plain event
    /// counts, added up from the files' per-quarter-hour counts; see `rollups`).
    pub answered_from: String,
    /// With `answered_from = rollups`: what is read instead of the events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollups: Option<ExplainRollups>,
    /// The logical plan after optimization (pushed-down filters and projections).
    /// With rollups: the scan of what they do not count (the range's parts outside
    /// whole quarter hours, files not rewritten since a person was deleted), empty
    /// when there is none.
    pub logical_plan: String,
    /// The physical plan: file scans with their pruning predicates.
    pub physical_plan: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExplainRollups {
    /// Parquet files whose rollups are added up.
    pub files: usize,
    /// Parquet files in the range scanned instead, with the buffered rows: when the
    /// project has deleted persons, the files not rewritten since persons last changed
    /// (their rollups may count a deleted person's events).
    pub files_scanned: usize,
    /// The whole quarter hours counted from rollups: `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Registers `events`, `persons` and `json_text` in the scope's session.
async fn register(scope: &Scope<'_>) -> Result<()> {
    let events = scope
        .events(DateTime::<Utc>::UNIX_EPOCH, far_future())
        .await?;
    let names: Vec<String> = events
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let columns: Vec<Expr> = names
        .iter()
        .map(|name| match name.as_str() {
            "person_id" => scope.actor().alias("person_id"),
            other => col(other),
        })
        .collect();
    let events = events.select(columns)?;
    scope.ctx.register_table("events", events.into_view())?;
    let rows = scope.engine.persons.property_table(scope.project).await?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("properties", DataType::Utf8, false),
    ]));
    let ids: StringArray = rows.iter().map(|(id, _)| Some(id.to_string())).collect();
    let props: StringArray = rows.iter().map(|(_, p)| Some(p.as_str())).collect();
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(props)])?;
    scope.ctx.register_table(
        "persons",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    scope
        .ctx
        .register_udf(appizer_storage::events::query::json_text_udf());
    crate::charged::charge_functions(&scope.ctx, &scope.memory_pool());
    Ok(())
}

/// An error of running the analyst's query: what the query itself did wrong (a
/// division by zero, a cast of text that is no number, a bad argument) is a 400 on
/// `field`; limits stay limits, and failures of the server stay internal.
fn query_error(field: &str, e: datafusion::error::DataFusionError) -> AnalyticsError {
    use datafusion::arrow::error::ArrowError;
    use datafusion::error::DataFusionError as E;
    let by_query = match e.find_root() {
        E::Plan(_) | E::SQL(..) | E::SchemaError(..) | E::NotImplemented(_) | E::Execution(_) => {
            true
        }
        E::ArrowError(arrow, _) => matches!(
            **arrow,
            ArrowError::DivideByZero
                | ArrowError::CastError(_)
                | ArrowError::ParseError(_)
                | ArrowError::ComputeError(_)
                | ArrowError::ArithmeticOverflow(_)
                | ArrowError::InvalidArgumentError(_)
        ),
        _ => false,
    };
    match AnalyticsError::from(e) {
        AnalyticsError::Engine(e) if by_query => AnalyticsError::invalid(field, e.to_string()),
        other => other,
    }
}

fn far_future() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).expect("year 9999")
}

/// The one query in `text`, planned; anything else is refused.
async fn plan(scope: &Scope<'_>, text: &str, field: &str) -> Result<DataFrame> {
    if text.trim().is_empty() || text.len() > MAX_SQL_BYTES {
        return Err(AnalyticsError::invalid(
            field,
            format!("must be 1 to {MAX_SQL_BYTES} bytes of SQL"),
        ));
    }
    let statements = DFParser::parse_sql(text)
        .map_err(|e| AnalyticsError::invalid(field, format!("is not valid SQL: {e}")))?;
    let only_query = statements.len() == 1
        && matches!(
            statements.front(),
            Some(Statement::Statement(s)) if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Query(_))
        );
    if !only_query {
        return Err(AnalyticsError::invalid(
            field,
            "must be exactly one read-only query (SELECT or WITH ... SELECT)",
        ));
    }
    register(scope).await?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    scope
        .ctx
        .sql_with_options(text, options)
        .await
        .map_err(|e| match e {
            datafusion::error::DataFusionError::Plan(message)
            | datafusion::error::DataFusionError::SQL(_, Some(message)) => {
                AnalyticsError::invalid(field, message)
            }
            other => match AnalyticsError::from(other) {
                AnalyticsError::Engine(e) => AnalyticsError::invalid(field, e.to_string()),
                limit => limit,
            },
        })
}

pub(crate) async fn run(engine: &Engine, project: &QueryProject, text: &str) -> Result<SqlResult> {
    let scope = Scope::new(engine, project, Utc::now()).await?;
    let df = plan(&scope, text, "query").await?;
    let max = engine.config.sql_max_rows.max(1);
    let columns = df
        .schema()
        .fields()
        .iter()
        .map(|f| SqlColumn {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect();
    let batches = df
        .limit(0, Some(max + 1))?
        .collect()
        .await
        .map_err(|e| query_error("query", e))?;
    let (rows, truncated) = answer_rows(&batches, max, engine.config.sql_max_answer_bytes)?;
    Ok(SqlResult {
        columns,
        rows,
        truncated,
    })
}

/// Rows per JSON write: small enough that a write past the byte cap overshoots it by
/// little, large enough to keep the writer's per-call work small.
const ROWS_PER_WRITE: usize = 64;

/// The bytes of text and binary values in `batch`: at most the bytes of its JSON.
fn text_bytes(batch: &RecordBatch) -> usize {
    use datafusion::arrow::array::{Array, AsArray};
    batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8 => {
                let a = c.as_string::<i32>();
                let offsets = a.value_offsets();
                (offsets[a.len()] - offsets[0]) as usize
            }
            DataType::LargeUtf8 => {
                let a = c.as_string::<i64>();
                let offsets = a.value_offsets();
                (offsets[a.len()] - offsets[0]) as usize
            }
            DataType::Utf8View => c.as_string_view().lengths().map(|n| n as usize).sum(),
            DataType::Binary => {
                let a = c.as_binary::<i32>();
                let offsets = a.value_offsets();
                (offsets[a.len()] - offsets[0]) as usize
            }
            _ => 0,
        })
        .sum()
}

/// The first rows of `batches` as JSON objects: at most `max_rows` of them, within
/// `max_bytes` of JSON, and whether rows were left out. A first row larger than
/// `max_bytes` is a limit error.
fn answer_rows(
    batches: &[RecordBatch],
    max_rows: usize,
    max_bytes: usize,
) -> Result<(Vec<Map<String, Value>>, bool)> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
    let mut written = 0;
    'batches: for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if written > max_rows || writer.get_ref().len() > max_bytes {
                break 'batches;
            }
            let mut chunk = batch.slice(offset, ROWS_PER_WRITE.min(batch.num_rows() - offset));
            // Text is never encoded past the cap: a chunk whose text alone would pass
            // it goes row by row, and a row that would pass it ends the answer.
            if writer.get_ref().len() + text_bytes(&chunk) > max_bytes {
                chunk = batch.slice(offset, 1);
                if writer.get_ref().len() + text_bytes(&chunk) > max_bytes {
                    break 'batches;
                }
            }
            writer.write(&chunk)?;
            offset += chunk.num_rows();
            written += chunk.num_rows();
        }
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    let mut rows = Vec::new();
    let mut size = 0;
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if rows.len() == max_rows || size + line.len() + 1 > max_bytes {
            break;
        }
        size += line.len() + 1;
        rows.push(serde_json::from_slice(line).map_err(|e| {
            AnalyticsError::Engine(datafusion::error::DataFusionError::External(Box::new(e)))
        })?);
    }
    if rows.is_empty() && total > 0 {
        return Err(AnalyticsError::Limit(format!(
            "answer: its first row is more than {max_bytes} bytes of JSON \
             (analytics.sql_max_answer_bytes)"
        )));
    }
    let truncated = rows.len() < total;
    Ok((rows, truncated))
}

pub(crate) async fn explain(
    engine: &Engine,
    project: &QueryProject,
    request: &ExplainRequest,
    now: DateTime<Utc>,
) -> Result<ExplainResult> {
    let scope = Scope::new(engine, project, now).await?;
    let mut rollups = None;
    let df = match (&request.sql, &request.trends) {
        (Some(sql), None) => Some(plan(&scope, sql, "sql").await?),
        (None, Some(q)) => {
            let Some(first) = q.series.first() else {
                return Err(AnalyticsError::invalid(
                    "trends.series",
                    "must hold a series",
                ));
            };
            let (from, to) = resolve_range(&q.date_range, scope.tz, now)?;
            let frame = Frame::new(scope.tz, q.interval, from, to)?;
            match FromRollups::of(&scope, q, &frame, 0, first).await? {
                Some(r) => {
                    let (from, to) = r.covered();
                    rollups = Some(ExplainRollups {
                        files: r.files(),
                        files_scanned: r.files_scanned(),
                        from,
                        to,
                    });
                    r.scans(&scope, &frame, first).await?
                }
                None => Some(crate::trends::series_plan(&scope, q, &frame).await?),
            }
        }
        _ => {
            return Err(AnalyticsError::invalid(
                "sql",
                "give exactly one of `sql` and `trends`",
            ))
        }
    };
    let (logical_plan, physical_plan) = match df {
        None => (String::new(), String::new()),
        Some(df) => {
            let logical = df.clone().into_optimized_plan()?;
            let logical = logical.display_indent().to_string();
            let physical = df.create_physical_plan().await?;
            let physical = displayable(physical.as_ref()).indent(true).to_string();
            (logical, physical)
        }
    };
    Ok(ExplainResult {
        answered_from: if rollups.is_some() { "rollups" } else { "scan" }.into(),
        rollups,
        logical_plan,
        physical_plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    fn batch(texts: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let n: Int64Array = (0..texts.len() as i64).collect();
        let s: StringArray = texts.iter().map(|t| Some(*t)).collect();
        RecordBatch::try_new(schema, vec![Arc::new(n), Arc::new(s)]).unwrap()
    }

    #[test]
    fn answers_keep_the_rows_within_both_caps() {
        let texts: Vec<String> = (0..200).map(|i| format!("row {i:03}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let batches = [batch(&refs[..150]), batch(&refs[150..])];
        let (rows, truncated) = answer_rows(&batches, 1_000, 1 << 20).unwrap();
        assert_eq!((rows.len(), truncated), (200, false));
        assert_eq!(rows[199]["s"], "row 199");

        let (rows, truncated) = answer_rows(&batches, 100, 1 << 20).unwrap();
        assert_eq!((rows.len(), truncated), (100, true));

        // Each row is `{"n":K,"s":"row KKK"}` plus a newline: 23 to 25 bytes.
        let (rows, truncated) = answer_rows(&batches, 1_000, 1_000).unwrap();
        assert!(truncated);
        let size: usize = rows
            .iter()
            .map(|r| serde_json::to_string(r).unwrap().len() + 1)
            .sum();
        assert!(size <= 1_000 && size > 1_000 - 30, "{size}");
        assert_eq!(rows.last().unwrap()["n"], rows.len() as i64 - 1);

        let big = "x".repeat(5_000);
        let e = answer_rows(&[batch(&[&big])], 10, 1_000).unwrap_err();
        assert!(matches!(e, AnalyticsError::Limit(_)), "{e}");
        assert_eq!(answer_rows(&[], 10, 1_000).unwrap(), (vec![], false));
    }
}
