//! Write-key authentication, as the ingestion routes use it, against a real store.

mod common;

use std::sync::Arc;

use appizer::testing::TestServer;
use appizer_core::config::Config;
use appizer_core::ErrorCode;
use appizer_gateway::auth::authenticate_write_key;
use appizer_gateway::AppState;
use common::Client;
use reqwest::Method;

#[tokio::test]
async fn write_keys_resolve_to_their_project_and_nothing_else_passes() {
    let server = TestServer::start().await;
    let state = server.state.clone();

    let writer = authenticate_write_key(&state, &server.keys.write_key)
        .await
        .unwrap();
    assert_eq!(writer.scope.project(), server.keys.project_id);
    assert_eq!(writer.principal.project_id(), Some(server.keys.project_id));

    let secret = authenticate_write_key(&state, &server.keys.admin_key)
        .await
        .unwrap_err();
    assert_eq!(
        secret.code,
        ErrorCode::Forbidden,
        "secret keys never ingest"
    );
    let unknown = authenticate_write_key(&state, "apz_wk_unknown")
        .await
        .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::Unauthorized);
    assert_eq!(unknown.field.as_deref(), Some("writeKey"));

    // Revoked through the API: refused here too once this node's cache entry is gone
    // (the API evicts on its own node at once; other nodes within the cache TTL).
    let api = Client::new(&server);
    let project = server.keys.project_id;
    let keys = api
        .get(
            &format!("/api/v1/projects/{project}/keys"),
            &server.keys.admin_key,
        )
        .await;
    let write_id = keys.body["keys"][0]["id"].as_str().unwrap().to_string();
    let revoked = api
        .call(
            Method::DELETE,
            &format!("/api/v1/projects/{project}/keys/{write_id}"),
            &server.keys.admin_key,
            None,
        )
        .await;
    assert!(revoked.status.is_success());
    let fresh = AppState::new(
        Arc::new(Config::for_tests()),
        server.store.clone(),
        server.state.events.clone(),
        server.state.push.clone(),
        Arc::new(appizer_gateway::rate_limit::RateLimiter::local()),
    );
    let refused = authenticate_write_key(&fresh, &server.keys.write_key)
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Unauthorized);
    server.stop().await;
}
