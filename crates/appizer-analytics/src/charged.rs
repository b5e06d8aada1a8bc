//! Scalar functions of analysts' SQL that charge the text they build to the query's
//! memory pool.
//!
//! A plan's operators count what they hold, but a scalar function allocates its output
//! inside one call: `repeat('x', 1500000000)` would build 1.5 GB in a single step, past
//! the pool and beyond the reach of the time limit. Every function of an SQL session is
//! wrapped: before a function that returns text or bytes runs, the most it can build
//! (`repeat`: each text times its count; `replace`: each text with every match replaced;
//! others: the size of their inputs) is reserved in the pool, and after it ran, what it
//! actually built. Past `analytics.query_memory_mb` the call fails with a
//! resources-exhausted error (a 422 limit answer), before anything is allocated.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

/// Replaces every scalar function of `ctx` by one that charges its output to `pool`.
pub(crate) fn charge_functions(ctx: &SessionContext, pool: &Arc<dyn MemoryPool>) {
    let functions: Vec<Arc<ScalarUDF>> = ctx.state().scalar_functions().values().cloned().collect();
    let mut seen = std::collections::HashSet::new();
    for udf in functions {
        if seen.insert(udf.name().to_string()) {
            ctx.register_udf(ScalarUDF::new_from_impl(Charged::new(
                udf.inner().clone(),
                pool.clone(),
            )));
        }
    }
}

/// `expr` with every call of a function not yet charged to `pool` charged to it.
fn charge_calls(
    expr: datafusion::prelude::Expr,
    pool: &Arc<dyn MemoryPool>,
) -> Result<datafusion::prelude::Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::expr::ScalarFunction;
    use datafusion::prelude::Expr;
    expr.transform_up(|e| match e {
        Expr::ScalarFunction(f) if !f.func.inner().is::<Charged>() => {
            let charged =
                ScalarUDF::new_from_impl(Charged::new(f.func.inner().clone(), pool.clone()));
            Ok(Transformed::yes(Expr::ScalarFunction(
                ScalarFunction::new_udf(Arc::new(charged), f.args),
            )))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// A scalar function whose text output is charged to a memory pool.
#[derive(Debug)]
struct Charged {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    pool: Arc<dyn MemoryPool>,
}

impl Charged {
    fn new(inner: Arc<dyn ScalarUDFImpl>, pool: Arc<dyn MemoryPool>) -> Self {
        Self {
            inner: inner.into(),
            pool,
        }
    }
}

impl PartialEq for Charged {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && Arc::ptr_eq(&self.pool, &other.pool)
    }
}

impl Eq for Charged {}

impl std::hash::Hash for Charged {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

fn builds_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

/// The bytes of text in argument `value`, per row (`rows` rows), or for the one value
/// of a scalar.
fn text_lengths(value: &ColumnarValue, rows: usize) -> Vec<usize> {
    match value {
        ColumnarValue::Scalar(s) => {
            let len = match s {
                ScalarValue::Utf8(Some(t))
                | ScalarValue::LargeUtf8(Some(t))
                | ScalarValue::Utf8View(Some(t)) => t.len(),
                ScalarValue::Binary(Some(b))
                | ScalarValue::LargeBinary(Some(b))
                | ScalarValue::BinaryView(Some(b)) => b.len(),
                _ => 0,
            };
            vec![len; rows]
        }
        ColumnarValue::Array(a) => {
            let a = a.as_ref();
            let length = |i: usize| -> usize {
                if a.is_null(i) {
                    return 0;
                }
                match a.data_type() {
                    DataType::Utf8 => a.as_string::<i32>().value(i).len(),
                    DataType::LargeUtf8 => a.as_string::<i64>().value(i).len(),
                    DataType::Utf8View => a.as_string_view().value(i).len(),
                    DataType::Binary => a.as_binary::<i32>().value(i).len(),
                    DataType::LargeBinary => a.as_binary::<i64>().value(i).len(),
                    DataType::BinaryView => a.as_binary_view().value(i).len(),
                    _ => 0,
                }
            };
            (0..a.len()).map(length).collect()
        }
    }
}

/// The count argument of `repeat`, per row.
fn counts(value: &ColumnarValue, rows: usize) -> Vec<usize> {
    let clamp = |n: i64| usize::try_from(n.max(0)).unwrap_or(usize::MAX);
    match value {
        ColumnarValue::Scalar(ScalarValue::Int64(n)) => vec![clamp(n.unwrap_or(0)); rows],
        ColumnarValue::Array(a) if a.data_type() == &DataType::Int64 => {
            let a = a.as_primitive::<Int64Type>();
            (0..a.len())
                .map(|i| if a.is_null(i) { 0 } else { clamp(a.value(i)) })
                .collect()
        }
        // Another type: the function itself coerces or refuses it; count it as one.
        _ => vec![1; rows],
    }
}

/// The most bytes `name` can build from `args` over `rows` rows.
fn output_bound(name: &str, args: &[ColumnarValue], rows: usize) -> usize {
    let rows = rows.max(1);
    match (name, args) {
        ("repeat", [text, count]) => {
            let texts = text_lengths(text, rows);
            let counts = counts(count, rows);
            texts.iter().zip(&counts).fold(0usize, |sum, (t, n)| {
                sum.saturating_add(t.saturating_mul(*n))
            })
        }
        ("replace", [text, from, to]) => {
            let (texts, froms, tos) = (
                text_lengths(text, rows),
                text_lengths(from, rows),
                text_lengths(to, rows),
            );
            (0..rows).fold(0usize, |sum, r| {
                let (t, f, to) = (texts[r], froms[r].max(1), tos[r]);
                // An empty pattern matches between every character.
                let matches = if froms[r] == 0 { t + 1 } else { t / f };
                sum.saturating_add(t.saturating_add(matches.saturating_mul(to)))
            })
        }
        // Any other function: the text of all its inputs.
        _ => args
            .iter()
            .flat_map(|a| text_lengths(a, rows))
            .fold(0usize, usize::saturating_add),
    }
}

fn output_bytes(value: &ColumnarValue) -> usize {
    match value {
        ColumnarValue::Array(a) => a.get_array_memory_size(),
        ColumnarValue::Scalar(s) => s.size(),
    }
}

impl ScalarUDFImpl for Charged {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[datafusion::prelude::Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn with_updated_config(
        &self,
        config: &datafusion::common::config::ConfigOptions,
    ) -> Option<ScalarUDF> {
        let updated = self.inner.with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(Charged::new(
            updated.inner().clone(),
            self.pool.clone(),
        )))
    }

    fn simplify(
        &self,
        args: Vec<datafusion::prelude::Expr>,
        info: &datafusion::logical_expr::simplify::SimplifyContext,
    ) -> Result<datafusion::logical_expr::simplify::ExprSimplifyResult> {
        use datafusion::logical_expr::simplify::ExprSimplifyResult;
        // A simplified call may name the functions it builds directly: charge them too.
        Ok(match self.inner.simplify(args, info)? {
            ExprSimplifyResult::Simplified(expr) => {
                ExprSimplifyResult::Simplified(charge_calls(expr, &self.pool)?)
            }
            original => original,
        })
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn output_ordering(
        &self,
        inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<datafusion::logical_expr::sort_properties::SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !builds_text(args.return_field.data_type()) {
            return self.inner.invoke_with_args(args);
        }
        let bound = output_bound(self.inner.name(), &args.args, args.number_rows);
        let reservation =
            MemoryConsumer::new(format!("sql function {}", self.inner.name())).register(&self.pool);
        reservation.try_grow(bound)?;
        let output = self.inner.invoke_with_args(args)?;
        let built = output_bytes(&output);
        if built > bound {
            reservation.try_grow(built - bound)?;
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    fn text(values: &[&str]) -> ColumnarValue {
        ColumnarValue::Array(Arc::new(StringArray::from(values.to_vec())))
    }

    #[test]
    fn bounds_cover_what_the_amplifying_functions_build() {
        let n = |v: i64| ColumnarValue::Scalar(ScalarValue::Int64(Some(v)));
        assert_eq!(output_bound("repeat", &[text(&["ab", "c"]), n(10)], 2), 30);
        let per_row = ColumnarValue::Array(Arc::new(Int64Array::from(vec![Some(3), None])));
        assert_eq!(output_bound("repeat", &[text(&["ab", "c"]), per_row], 2), 6);
        assert_eq!(output_bound("repeat", &[text(&["ab"]), n(-4)], 1), 0);
        let s = |v: &str| ColumnarValue::Scalar(ScalarValue::Utf8(Some(v.into())));
        // "xxxx" with each "x" replaced by "yyy": 4 + 4 * 3 bytes at most.
        assert_eq!(
            output_bound("replace", &[s("xxxx"), s("x"), s("yyy")], 1),
            16
        );
        assert_eq!(
            output_bound("replace", &[s("ab"), s(""), s("--")], 1),
            2 + 3 * 2
        );
        assert_eq!(
            output_bound("concat", &[text(&["ab", "cde"]), s("!")], 2),
            3 + 4
        );
        assert_eq!(
            output_bound("repeat", &[s("x"), n(i64::MAX)], 8192),
            usize::MAX,
            "saturates instead of overflowing"
        );
    }

    #[tokio::test]
    async fn text_past_the_pool_fails_before_it_is_built() {
        let pool: Arc<dyn MemoryPool> = Arc::new(
            datafusion::execution::memory_pool::GreedyMemoryPool::new(1 << 20),
        );
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_pool(pool.clone())
            .build_arc()
            .unwrap();
        let ctx = SessionContext::new_with_config_rt(Default::default(), runtime);
        charge_functions(&ctx, &pool);
        let small = ctx
            .sql("SELECT length(repeat('ab', 1000)) AS n")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let n = small[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        assert_eq!(n.value(0), 2000);
        let huge = async {
            ctx.sql("SELECT length(repeat('x', 1500000000)) AS n")
                .await?
                .collect()
                .await
        };
        let e = huge.await.unwrap_err();
        assert!(
            matches!(
                e.find_root(),
                datafusion::error::DataFusionError::ResourcesExhausted(_)
            ),
            "{e}"
        );
        assert_eq!(pool.reserved(), 0, "the reservation is released");
    }
}
