//! Team members through real HTTP, as a browser signs in: sessions in cookies, the
//! CSRF token and origin check on writes, sign-out and revocation, invitations, roles
//! per project enforced by the server, password changes, removal, sign-in limits.

mod common;

use appizer::testing::{TestServer, ADMIN_EMAIL, ADMIN_PASSWORD};
use common::{Answer, Client};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A browser: the session cookie it was given and the CSRF token its page read.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
    csrf: Option<String>,
    origin: String,
}

impl Browser {
    fn new(server: &TestServer) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.base_url.clone(),
            cookie: None,
            csrf: None,
            origin: server.base_url.clone(),
        }
    }

    async fn send(&mut self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("origin", &self.origin);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", format!("appizer_session={cookie}"));
        }
        if let Some(csrf) = &self.csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = Client::answer(request.send().await.unwrap()).await;
        if let Some(set) = answer.headers.get("set-cookie") {
            let set = set.to_str().unwrap();
            let value = set
                .strip_prefix("appizer_session=")
                .and_then(|v| v.split(';').next())
                .unwrap();
            self.cookie = (!value.is_empty()).then(|| value.to_string());
        }
        if let Some(csrf) = answer.body["csrf_token"].as_str() {
            self.csrf = Some(csrf.to_string());
        }
        answer
    }

    async fn sign_in(&mut self, email: &str, password: &str) -> Answer {
        self.send(
            Method::POST,
            "/api/v1/session",
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }
}

/// Invites `email` with `access` as the admin key and accepts it in a new browser.
async fn join(server: &TestServer, email: &str, access: Value) -> (Browser, String) {
    let api = Client::new(server);
    let invite = api
        .post(
            "/api/v1/invites",
            &server.keys.admin_key,
            json!({"email": email, "name": "New", "access": access}),
        )
        .await;
    assert_eq!(invite.status, StatusCode::CREATED, "{:#}", invite.body);
    assert!(invite.body["link"].as_str().unwrap().ends_with(&format!(
        "/accept-invite#token={}",
        invite.body["token"].as_str().unwrap()
    )));
    let mut browser = Browser::new(server);
    let joined = browser
        .post(
            "/api/v1/invites/accept",
            json!({"token": invite.body["token"], "password": "the member's password"}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{:#}", joined.body);
    assert_eq!(joined.body["member"]["email"], email);
    let again = Browser::new(server)
        .post(
            "/api/v1/invites/accept",
            json!({"token": invite.body["token"], "password": "another password"}),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::NOT_FOUND,
        "an invitation works once"
    );
    let id = joined.body["member"]["id"].as_str().unwrap().to_string();
    (browser, id)
}

#[tokio::test]
async fn a_member_signs_in_works_through_the_cookie_and_signs_out() {
    let server = TestServer::start().await;
    let mut browser = Browser::new(&server);

    let wrong = browser.sign_in(ADMIN_EMAIL, "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (wrong.error_code(), wrong.error_field()),
        ("unauthorized", "password")
    );
    assert!(wrong.headers.get("set-cookie").is_none());
    let unknown = browser.sign_in("nobody@example.com", ADMIN_PASSWORD).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown.body["error"]["message"],
        wrong.body["error"]["message"]
    );
    let malformed = browser.sign_in("not an email", ADMIN_PASSWORD).await;
    assert_eq!(
        (malformed.status, malformed.error_field()),
        (StatusCode::BAD_REQUEST, "email")
    );

    let signed_in = browser.sign_in(" Admin@Example.com ", ADMIN_PASSWORD).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{:#}", signed_in.body);
    let cookie = signed_in.headers["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP here: {cookie}");
    assert_eq!(signed_in.body["member"]["email"], ADMIN_EMAIL);
    assert_eq!(
        signed_in.body["member"]["access"]["organization_role"],
        "admin"
    );
    assert!(signed_in.body["member"].get("password_hash").is_none());

    // The cookie opens the management API as the member's role does.
    let projects = browser.get("/api/v1/projects").await;
    assert_eq!(projects.status, StatusCode::OK);
    assert_eq!(projects.body["projects"].as_array().unwrap().len(), 1);
    let me = browser.get("/api/v1/session").await;
    assert_eq!(me.body["member"]["email"], ADMIN_EMAIL);
    assert_eq!(me.body["csrf_token"], signed_in.body["csrf_token"]);

    // Writes need the CSRF token and the dashboard's own origin.
    let csrf = browser.csrf.take();
    let forged = browser
        .post("/api/v1/projects", json!({"name": "Forged"}))
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.error_field(), "X-CSRF-Token");
    browser.csrf = csrf;
    browser.origin = "https://evil.example".into();
    let cross_site = browser
        .post("/api/v1/projects", json!({"name": "Forged"}))
        .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    assert_eq!(cross_site.error_field(), "Origin");
    browser.origin = server.base_url.clone();
    let made = browser
        .post("/api/v1/projects", json!({"name": "Second"}))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:#}", made.body);
    assert_eq!(
        Client::new(&server)
            .get("/api/v1/projects", &server.keys.admin_key)
            .await
            .body["projects"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "no forged write went through"
    );

    // The audit log names the member.
    let project = made.body["project"]["id"].as_str().unwrap();
    let log = browser
        .get(&format!("/api/v1/projects/{project}/audit-log"))
        .await;
    let member_id = signed_in.body["member"]["id"].as_str().unwrap();
    assert_eq!(
        log.body["entries"][0]["actor"],
        format!("member:{member_id}")
    );

    let sessions = browser.get("/api/v1/session/sessions").await;
    assert_eq!(sessions.body["sessions"][0]["current"], true);
    assert_eq!(sessions.body["sessions"][0]["live"], true);

    let out = browser.send(Method::DELETE, "/api/v1/session", None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(browser.cookie.is_none(), "the cookie is cleared");
    browser.cookie = Some(
        cookie["appizer_session=".len()..]
            .split(';')
            .next()
            .unwrap()
            .into(),
    );
    let after = browser.get("/api/v1/projects").await;
    assert_eq!(
        after.status,
        StatusCode::UNAUTHORIZED,
        "the session ended with sign-out"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_session_is_refused_at_once_and_a_password_change_ends_the_others() {
    let server = TestServer::start().await;
    let mut laptop = Browser::new(&server);
    let mut phone = Browser::new(&server);
    laptop.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let phone_session = phone.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.body["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(phone.get("/api/v1/projects").await.status, StatusCode::OK);
    let listed = laptop.get("/api/v1/session/sessions").await;
    assert_eq!(listed.body["sessions"].as_array().unwrap().len(), 2);
    let revoked = laptop
        .send(
            Method::DELETE,
            &format!("/api/v1/session/sessions/{phone_session}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        phone.get("/api/v1/projects").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(laptop.get("/api/v1/projects").await.status, StatusCode::OK);

    // A password change keeps this session and ends every other.
    let mut tablet = Browser::new(&server);
    tablet.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let wrong = laptop
        .post(
            "/api/v1/session/password",
            json!({"current_password": "wrong", "new_password": "a new password here"}),
        )
        .await;
    assert_eq!(wrong.error_field(), "current_password");
    let short = laptop
        .post(
            "/api/v1/session/password",
            json!({"current_password": ADMIN_PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(
        (short.status, short.error_field()),
        (StatusCode::BAD_REQUEST, "new_password")
    );
    let changed = laptop
        .post(
            "/api/v1/session/password",
            json!({"current_password": ADMIN_PASSWORD, "new_password": "a new password here"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{:#}", changed.body);
    assert_eq!(laptop.get("/api/v1/projects").await.status, StatusCode::OK);
    assert_eq!(
        tablet.get("/api/v1/projects").await.status,
        StatusCode::UNAUTHORIZED
    );
    let old = Browser::new(&server)
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = Browser::new(&server)
        .sign_in(ADMIN_EMAIL, "a new password here")
        .await;
    assert_eq!(new.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn an_invited_viewer_reads_their_project_only_and_the_server_refuses_their_writes() {
    let server = TestServer::start().await;
    let api = Client::new(&server);
    let admin = &server.keys.admin_key;
    let project = server.keys.project_id.to_string();
    let other = api
        .post("/api/v1/projects", admin, json!({"name": "Other"}))
        .await
        .body["project"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut viewer, viewer_id) = join(
        &server,
        "viewer@example.com",
        json!({"projects": {&project: "viewer"}}),
    )
    .await;

    let projects = viewer.get("/api/v1/projects").await;
    let ids: Vec<&str> = projects.body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [project.as_str()],
        "only the project they have a role in"
    );
    assert_eq!(
        viewer
            .get(&format!("/api/v1/projects/{project}/events"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        viewer
            .get(&format!("/api/v1/projects/{other}/events"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // What a page would hide, the server refuses: a forged key creation, with a valid
    // CSRF token and origin.
    let forged = viewer
        .post(
            &format!("/api/v1/projects/{project}/keys"),
            json!({"name": "mine", "role": "admin"}),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.error_code(), "forbidden");
    let keys = api
        .get(&format!("/api/v1/projects/{project}/keys"), admin)
        .await;
    assert!(keys.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["name"] != "mine"));
    let invite = viewer
        .post(
            "/api/v1/invites",
            json!({"email": "x@example.com", "name": "X", "access": {"organization_role": "admin"}}),
        )
        .await;
    assert_eq!(invite.status, StatusCode::FORBIDDEN);
    assert_eq!(viewer.get("/api/v1/members").await.status, StatusCode::OK);

    // Made an analyst of the project, they sign in again and may define metrics.
    let promoted = api
        .call(
            Method::PATCH,
            &format!("/api/v1/members/{viewer_id}"),
            admin,
            Some(json!({"access": {"projects": {&project: "analyst"}}})),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{:#}", promoted.body);
    assert_eq!(
        viewer.get("/api/v1/projects").await.status,
        StatusCode::UNAUTHORIZED,
        "a change of access ends the member's sessions"
    );
    viewer
        .sign_in("viewer@example.com", "the member's password")
        .await;
    let metric = viewer
        .post(
            &format!("/api/v1/projects/{project}/metrics"),
            json!({"name": "Signups", "series": [{"event": "signup"}]}),
        )
        .await;
    assert_eq!(metric.status, StatusCode::CREATED, "{:#}", metric.body);

    // Removed, their session ends; the last admin cannot be removed.
    let removed = api
        .call(
            Method::DELETE,
            &format!("/api/v1/members/{viewer_id}"),
            admin,
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        viewer.get("/api/v1/projects").await.status,
        StatusCode::UNAUTHORIZED
    );
    let members = api.get("/api/v1/members", admin).await;
    let admin_member = members.body["members"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let last = api
        .call(
            Method::DELETE,
            &format!("/api/v1/members/{admin_member}"),
            admin,
            None,
        )
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT, "{:#}", last.body);
    let bad = api
        .post(
            "/api/v1/invites",
            admin,
            json!({"email": "y@example.com", "name": "Y",
                   "access": {"projects": {"0189a7e4-0000-7000-8000-000000000000": "viewer"}}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.error_field().starts_with("access.projects."),
        "{:#}",
        bad.body
    );
    let taken = api
        .post(
            "/api/v1/invites",
            admin,
            json!({"email": ADMIN_EMAIL, "name": "Again", "access": {"organization_role": "viewer"}}),
        )
        .await;
    assert_eq!(
        (taken.status, taken.error_field()),
        (StatusCode::CONFLICT, "email")
    );
    server.stop().await;
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_account_and_per_address() {
    let server = TestServer::start_with(|c| {
        c.auth.sign_in_attempts_per_account = 3;
        c.auth.sign_in_attempts_per_address = 5;
    })
    .await;
    let mut browser = Browser::new(&server);
    for _ in 0..3 {
        let wrong = browser.sign_in(ADMIN_EMAIL, "guess").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    }
    // The account's allowance is spent: even the right password waits.
    let limited = browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:#}",
        limited.body
    );
    assert!(
        limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Other accounts from the same address: one more attempt, then the address waits.
    let other = browser.sign_in("someone@example.com", "guess").await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    let address = browser.sign_in("else@example.com", "guess").await;
    assert_eq!(address.status, StatusCode::TOO_MANY_REQUESTS);
    server.stop().await;
}
