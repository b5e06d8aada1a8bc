//! Which requests this node answers, by its roles (`roles`, `serve --role`): the
//! operations endpoints always; analytics queries (`/api/v1/projects/{id}/query/...`)
//! on a node with the `query` role; everything else (ingestion, management, the
//! dashboard) on a node with the `api` role. Another request is answered 503 naming
//! the role it needs, so a load balancer's mistake is plain to see.

use appizer_core::config::Roles;
use appizer_core::ErrorCode;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// The role a request's path needs, or `None` for the operations endpoints.
pub fn needed_role(path: &str) -> Option<&'static str> {
    if matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json") {
        return None;
    }
    let is_query = path
        .strip_prefix("/api/v1/projects/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, rest)| rest == "query" || rest.starts_with("query/"));
    Some(if is_query { "query" } else { "api" })
}

fn serves(roles: &Roles, role: &str) -> bool {
    match role {
        "query" => roles.query,
        _ => roles.api,
    }
}

/// Middleware: refuses what this node's roles do not answer.
pub async fn route_by_role(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let roles = state.config.node_roles();
    if roles.api && roles.query {
        return next.run(request).await;
    }
    match needed_role(request.uri().path()) {
        Some(role) if !serves(&roles, role) => ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "this node runs the roles {}; this request is answered by nodes with the `{role}` role",
                roles.names()
            ),
        )
        .with_field("role")
        .into_response(),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_need_the_query_role_and_the_rest_the_api_role() {
        let project = "/api/v1/projects/0190b8a2-0000-7000-8000-000000000000";
        assert_eq!(
            needed_role(&format!("{project}/query/trends")),
            Some("query")
        );
        assert_eq!(needed_role(&format!("{project}/query/sql")), Some("query"));
        assert_eq!(needed_role(&format!("{project}/persons")), Some("api"));
        assert_eq!(needed_role(&format!("{project}/queryish")), Some("api"));
        assert_eq!(needed_role("/v1/batch"), Some("api"));
        assert_eq!(needed_role("/"), Some("api"));
        for ops in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
            assert_eq!(needed_role(ops), None);
        }
    }
}
