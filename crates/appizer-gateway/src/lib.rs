//! Appizer's API gateway: the one HTTP entry point. Routing, authentication (API keys),
//! authorization (one access table), per-key rate limits, request validation, JSON
//! errors, request ids, HTTP metrics, access logs, OpenAPI, and the HTTP(S) server.
//!
//! Components never import this crate; it calls into them.

pub mod access;
pub mod auth;
pub mod cors;
pub mod dashboard;
pub mod dashboard_auth;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod observe;
pub mod rate_limit;
pub mod roles;
pub mod routes;
pub mod server;
pub mod state;

use std::sync::Arc;

use appizer_core::ErrorCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ApiResult};
pub use state::AppState;

use routes::metrics as custom_metrics;
use routes::{
    audit, campaigns, capture, events, insights, keys, members, ops, persons, projects, push,
    push_messages, query, segments, session,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Appizer API",
        description = "Management API of Appizer. Authenticate with `Authorization: Bearer <secret key>`. Errors are `{\"error\":{\"code\",\"message\",\"field\"}}`."
    ),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "secret_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("apz_sk_...")
                    .build(),
            ),
        );
    }
}

/// The management API routes with their OpenAPI description, without middleware.
pub fn management_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(projects::list_projects, projects::create_project))
        .routes(routes!(
            projects::get_project,
            projects::update_project,
            projects::delete_project
        ))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(audit::list_audit))
        .routes(routes!(events::list))
        .routes(routes!(events::live))
        .routes(routes!(events::counts))
        .routes(routes!(events::warnings))
        .routes(routes!(persons::list, persons::upsert))
        .routes(routes!(persons::get, persons::delete))
        .routes(routes!(persons::by_distinct_id))
        .routes(routes!(persons::add_distinct_id))
        .routes(routes!(persons::remove_distinct_id))
        .routes(routes!(persons::merge))
        .routes(routes!(persons::split))
        .routes(routes!(persons::merges))
        .routes(routes!(query::trends))
        .routes(routes!(query::trends_persons))
        .routes(routes!(query::funnels))
        .routes(routes!(query::retention))
        .routes(routes!(query::stickiness))
        .routes(routes!(query::lifecycle))
        .routes(routes!(query::sql))
        .routes(routes!(query::explain))
        .routes(routes!(
            custom_metrics::list_metrics,
            custom_metrics::create_metric
        ))
        .routes(routes!(
            custom_metrics::get_metric,
            custom_metrics::update_metric,
            custom_metrics::delete_metric
        ))
        .routes(routes!(custom_metrics::evaluate_metric))
        .routes(routes!(segments::list_segments, segments::create_segment))
        .routes(routes!(
            segments::get_segment,
            segments::update_segment,
            segments::delete_segment
        ))
        .routes(routes!(segments::refresh_segment))
        .routes(routes!(segments::preview_segment))
        .routes(routes!(segments::segment_persons))
        .routes(routes!(segments::segment_person))
        .routes(routes!(push::list))
        .routes(routes!(push::get, push::delete))
        .routes(routes!(push::person_devices))
        .routes(routes!(push::providers))
        .routes(routes!(push::provider, push::put_provider))
        .routes(routes!(push_messages::send))
        .routes(routes!(push_messages::get))
        .routes(routes!(campaigns::list, campaigns::create))
        .routes(routes!(campaigns::preview))
        .routes(routes!(
            campaigns::get,
            campaigns::update,
            campaigns::delete
        ))
        .routes(routes!(campaigns::schedule))
        .routes(routes!(campaigns::pause))
        .routes(routes!(campaigns::resume))
        .routes(routes!(campaigns::cancel))
        .routes(routes!(campaigns::test_send))
        .routes(routes!(campaigns::report))
        .routes(routes!(insights::list_insights, insights::create_insight))
        .routes(routes!(
            insights::get_insight,
            insights::update_insight,
            insights::delete_insight
        ))
        .routes(routes!(
            insights::list_dashboards,
            insights::create_dashboard
        ))
        .routes(routes!(
            insights::get_dashboard,
            insights::update_dashboard,
            insights::delete_dashboard
        ))
        .routes(routes!(members::list_members))
        .routes(routes!(
            members::get_member,
            members::update_member,
            members::remove_member
        ))
        .routes(routes!(members::list_sessions))
        .routes(routes!(members::revoke_session))
        .routes(routes!(members::list_invites, members::create_invite))
        .routes(routes!(members::delete_invite))
}

/// The OpenAPI document of every route the gateway serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = management_routes()
        .merge(session::routes())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .into_openapi();
    document_common_answers(&mut doc);
    campaigns::document(&mut doc);
    doc
}

/// The answers any management operation may give besides its own: a missing or bad key
/// (401), a key whose role or project does not reach the route (403), the key's rate
/// limit (429, with `Retry-After` and `X-RateLimit-*`), storage unavailable (503).
fn document_common_answers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    let common = [
        ("401", "no key, or a key that is unknown or revoked"),
        ("403", "the key's role or project does not reach this route"),
        (
            "429",
            "the key's rate limit; see Retry-After and X-RateLimit-*",
        ),
        ("503", "storage is unavailable; see Retry-After"),
    ];
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/api/") {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let takes_input = operation.request_body.is_some()
                || operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query);
            if takes_input {
                operation
                    .responses
                    .responses
                    .entry("400".to_string())
                    .or_insert_with(|| {
                        error("the body or a query parameter breaks a rule; the answer names the field").into()
                    });
            }
            for (status, description) in common {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description).into());
            }
        }
    }
}

/// The whole HTTP application: management API behind authentication, authorization and
/// rate limits; operations endpoints; every answer observed (request id, metrics, logs).
pub fn router(state: AppState) -> Router {
    let management: Router<AppState> = management_routes()
        .split_for_parts()
        .0
        .route_layer(from_fn_with_state(state.clone(), access::enforce))
        .route_layer(from_fn_with_state(state.clone(), auth::require_credential));
    let openapi_json: Arc<str> = openapi()
        .to_json()
        .expect("the OpenAPI document serializes")
        .into();
    Router::new()
        .merge(management)
        .merge(session::routes().split_for_parts().0)
        .merge(dashboard::routes())
        .merge(capture::routes().layer(cors::ingestion_cors()))
        .merge(push::public_routes().layer(cors::ingestion_cors()))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route(
            "/openapi.json",
            get(move || {
                let json = openapi_json.clone();
                async move { ([(CONTENT_TYPE, "application/json")], json.to_string()) }
            }),
        )
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            )
            .into_response()
        })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            answer_panic,
        ))
        .layer(from_fn_with_state(state.clone(), roles::route_by_role))
        .layer(from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}

/// A handler that panicked answers 500 like any internal error (and is logged), rather
/// than dropping the connection; no input is meant to get here.
fn answer_panic(payload: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a request handler panicked");
    ApiError::internal().into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn document() -> Value {
        serde_json::to_value(super::openapi()).unwrap()
    }

    fn schema_of<'a>(doc: &'a Value, name: &str, field: &str) -> &'a Value {
        let found = &doc["components"]["schemas"][name]["properties"][field];
        assert!(found.is_object(), "{name}.{field} is not in the document");
        found
    }

    fn parameter<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} has no parameters"))
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no {name}"))
    }

    /// The limits the handlers enforce are the ones the document states.
    #[test]
    fn the_document_states_the_limits_the_handlers_enforce() {
        use crate::routes::{definitions, persons, segments};
        let doc = document();
        let name = appizer_core::tenancy::MAX_NAME_CHARS as u64;
        for schema in [
            "CreateProject",
            "UpdateProject",
            "CreateKey",
            "NewMetric",
            "MetricChange",
            "NewSegment",
            "SegmentChange",
        ] {
            assert_eq!(
                schema_of(&doc, schema, "name")["maxLength"],
                name,
                "{schema}"
            );
        }
        for schema in ["NewMetric", "MetricChange", "NewSegment", "SegmentChange"] {
            assert_eq!(
                schema_of(&doc, schema, "description")["maxLength"],
                definitions::MAX_DESCRIPTION_CHARS as u64,
                "{schema}"
            );
        }
        let series = appizer_analytics::model::MAX_SERIES as u64;
        for schema in ["TrendsQuery", "NewMetric", "MetricChange"] {
            assert_eq!(
                schema_of(&doc, schema, "series")["maxItems"],
                series,
                "{schema}"
            );
        }
        let uploads = appizer_analytics::saved::MAX_STATIC_IDS as u64;
        for schema in ["NewSegment", "SegmentChange"] {
            assert_eq!(
                schema_of(&doc, schema, "distinct_ids")["maxItems"],
                uploads,
                "{schema}"
            );
        }
        let id = appizer_core::event::MAX_ID_BYTES as u64;
        for schema in ["UpsertPerson", "AddDistinctId"] {
            assert_eq!(
                schema_of(&doc, schema, "distinct_id")["maxLength"],
                id,
                "{schema}"
            );
        }
        use crate::routes::{audit, events};
        let project = "/api/v1/projects/{project_id}";
        let pages: [(&str, u64); 5] = [
            ("/events", events::MAX_EVENTS_PAGE as u64),
            ("/persons", persons::MAX_PERSONS_PAGE.into()),
            (
                "/segments/{segment_id}/persons",
                segments::MAX_MEMBERS_PAGE.into(),
            ),
            ("/audit-log", audit::MAX_PAGE.into()),
            ("/ingestion-warnings", events::MAX_WARNINGS_PAGE.into()),
        ];
        for (path, most) in pages {
            let path = format!("{project}{path}");
            let limit = &parameter(&doc, &path, "get", "limit")["schema"];
            assert_eq!(
                (&limit["minimum"], &limit["maximum"]),
                (&1.into(), &most.into()),
                "{path}"
            );
        }
    }

    #[test]
    fn every_management_operation_documents_the_answers_any_may_give() {
        let doc = document();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            if !path.starts_with("/api/") {
                continue;
            }
            for (method, operation) in item.as_object().unwrap() {
                for status in ["401", "403", "429", "503"] {
                    assert_eq!(
                        operation["responses"][status]["content"]["application/json"]["schema"]
                            ["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
                operations += 1;
            }
        }
        assert_eq!(
            operations,
            crate::access::ACCESS_TABLE.len() + crate::access::SELF_AUTHENTICATED.len()
        );
    }
}
