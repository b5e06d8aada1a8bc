//! Authentication: who is calling. Secret keys come as `Authorization: Bearer <key>`;
//! write keys (ingestion) come as HTTP Basic user name or inside the body
//! (`writeKey`, `api_key`, `token`); a signed-in team member's session comes as a
//! cookie ([`crate::dashboard_auth`]). Keys and sessions are looked up by their SHA-256
//! through a bounded cache; revoking one through this node evicts it at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appizer_core::config::AuthConfig;
use appizer_core::keys::{hash_key, KeyKind};
use appizer_core::member::{Member, Session};
use appizer_core::tenancy::{Actor, ApiKey, KeyAccess, RateLimitOverride};
use appizer_core::{ErrorCode, KeyId, MemberId, OrganizationId, ProjectId, Role};
use appizer_storage::{MetadataStore, ProjectScope, StoreError};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use parking_lot::Mutex;

use crate::error::ApiError;
use crate::state::AppState;

/// While the store is unreachable, how often a request reads a cached key again.
const STALE_RETRY: Duration = Duration::from_secs(1);
/// Key and session lookups answered from the cache because the store was unreachable.
pub const STALE_LOOKUPS_TOTAL: &str = "appizer_auth_stale_lookups_total";

/// An authenticated caller, as handlers see it (a request extension).
#[derive(Debug, Clone)]
pub struct Principal {
    pub credential: Credential,
    /// The rate limit overrides of the key's project (none for organisation keys and
    /// sessions).
    pub rate_limit: RateLimitOverride,
    /// The scope of the key's project, read with the key's organisation (none for
    /// organisation keys and sessions).
    pub scope: Option<ProjectScope>,
}

/// What a caller authenticated with.
#[derive(Debug, Clone)]
pub enum Credential {
    Key(Arc<ApiKey>),
    Session(Arc<SignedIn>),
}

/// A team member's live session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session: Session,
    pub member: Member,
}

/// How a credential is found again: the cache's key and what to read on a miss.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialHash {
    Key(String),
    Session(String),
}

impl CredentialHash {
    fn cache_key(&self) -> String {
        match self {
            CredentialHash::Key(h) => h.clone(),
            CredentialHash::Session(h) => format!("session:{h}"),
        }
    }
}

impl Principal {
    /// The key, when the caller used one.
    pub fn key(&self) -> Option<&ApiKey> {
        match &self.credential {
            Credential::Key(k) => Some(k),
            Credential::Session(_) => None,
        }
    }

    /// The signed-in member, when the caller used a session.
    pub fn signed_in(&self) -> Option<&SignedIn> {
        match &self.credential {
            Credential::Key(_) => None,
            Credential::Session(s) => Some(s),
        }
    }

    /// Who the audit log names for this caller's actions.
    pub fn actor(&self) -> Actor {
        match &self.credential {
            Credential::Key(k) => Actor::Key(k.id),
            Credential::Session(s) => Actor::Member(s.member.id),
        }
    }

    /// The key or member whose rate limit a request spends.
    pub fn limit_id(&self) -> uuid::Uuid {
        match &self.credential {
            Credential::Key(k) => k.id.as_uuid(),
            Credential::Session(s) => s.member.id.as_uuid(),
        }
    }

    /// The key a key-created record names as its creator (none for members: the audit
    /// entry names them).
    pub fn creating_key(&self) -> Option<KeyId> {
        self.key().map(|k| k.id)
    }

    pub fn organization_id(&self) -> OrganizationId {
        match &self.credential {
            Credential::Key(k) => k.organization_id,
            Credential::Session(s) => s.member.organization_id,
        }
    }

    /// The project a project key belongs to; `None` for an organisation-wide key and a
    /// session (a member's projects are those they have a role in).
    pub fn project_id(&self) -> Option<ProjectId> {
        self.key().and_then(ApiKey::project_id)
    }

    /// The caller's role in `project`, or outside any project (`None`): a member's
    /// organisation role there, else viewer when they have a role in some project
    /// (what the organisation's listings show them is filtered by [`Self::sees`]).
    pub fn role_in(&self, project: Option<ProjectId>) -> Option<Role> {
        match &self.credential {
            Credential::Key(k) => k.role(),
            Credential::Session(s) => {
                let access = &s.member.access;
                match project {
                    Some(p) => access.role_in(p),
                    None => access
                        .organization_role
                        .or((!access.projects.is_empty()).then_some(Role::Viewer)),
                }
            }
        }
    }

    /// Whether the caller may see `project` at all.
    pub fn sees(&self, project: ProjectId) -> bool {
        match &self.credential {
            Credential::Key(k) => k.project_id().is_none_or(|own| own == project),
            Credential::Session(s) => s.member.access.role_in(project).is_some(),
        }
    }

    /// Whether the caller acts for the whole organisation: an organisation key, or a
    /// member with an organisation role.
    pub fn is_organization_wide(&self) -> bool {
        match &self.credential {
            Credential::Key(k) => k.project_id().is_none(),
            Credential::Session(s) => s.member.access.organization_role.is_some(),
        }
    }

    /// How this caller's credential is looked up again (a live stream checks it).
    pub fn credential_hash(&self) -> CredentialHash {
        match &self.credential {
            Credential::Key(k) => CredentialHash::Key(k.key_hash.clone()),
            Credential::Session(s) => CredentialHash::Session(s.session.token_hash.clone()),
        }
    }
}

/// An authenticated write key and the scope of the project its events go to.
#[derive(Debug, Clone)]
pub struct Writer {
    pub principal: Principal,
    pub scope: ProjectScope,
}

#[derive(Debug, Clone)]
struct CachedLookup {
    /// `None`: no usable key or live session has this hash (unknown, revoked, ended).
    principal: Option<Principal>,
    fetched: Instant,
    /// A request is reading this key again; others keep the answer meanwhile.
    refreshing: bool,
}

/// Key and session lookups by hash, kept for `auth.key_cache_ttl_ms`, at most
/// `auth.key_cache_capacity` entries (expired entries go first, then everything).
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    capacity: usize,
    /// A session unused this long ends (`auth.session_idle_hours`).
    session_idle: chrono::Duration,
    entries: Mutex<HashMap<String, CachedLookup>>,
    /// Bumped by every eviction, so a read that raced one is not cached.
    evictions: AtomicU64,
    /// While the store is unreachable: when a request may next try it. Until then a
    /// known key's last answer stands without waiting for the store.
    outage: Mutex<Option<Instant>>,
}

impl KeyCache {
    pub fn new(config: &AuthConfig) -> Self {
        Self {
            ttl: Duration::from_millis(config.key_cache_ttl_ms),
            capacity: config.key_cache_capacity.max(1),
            session_idle: chrono::Duration::hours(config.session_idle_hours.max(1) as i64),
            entries: Mutex::new(HashMap::new()),
            evictions: AtomicU64::new(0),
            outage: Mutex::new(None),
        }
    }

    /// The usable (unrevoked) key whose plaintext is `plaintext`.
    ///
    /// When a lookup expires, the first request to see it reads the key again while
    /// the others keep the expired answer (for at most one more TTL): under load, an
    /// expiry would otherwise send every request in flight to the store at once.
    pub async fn lookup(
        &self,
        store: &dyn MetadataStore,
        plaintext: &str,
    ) -> Result<Option<Principal>, StoreError> {
        self.lookup_hash(store, CredentialHash::Key(hash_key(plaintext)))
            .await
    }

    /// The live session whose token is `token`.
    pub async fn lookup_session(
        &self,
        store: &dyn MetadataStore,
        token: &str,
    ) -> Result<Option<Principal>, StoreError> {
        self.lookup_hash(store, CredentialHash::Session(hash_key(token)))
            .await
    }

    /// A lookup by the credential's hash: how a long-lived answer (a live stream)
    /// checks that the key or session it was opened with is still usable.
    pub async fn lookup_hash(
        &self,
        store: &dyn MetadataStore,
        hash: CredentialHash,
    ) -> Result<Option<Principal>, StoreError> {
        let now = Instant::now();
        let cache_key = hash.cache_key();
        match self.cached(&cache_key, now) {
            Ok(answer) => Ok(answer),
            Err(evictions) => {
                let loaded = match &hash {
                    CredentialHash::Key(h) => load_principal(store, h).await,
                    CredentialHash::Session(h) => load_session(store, h, self.session_idle).await,
                };
                self.remember(cache_key, loaded, evictions, now)
            }
        }
    }

    /// The cached answer, or (to read the key) the eviction count to pass to
    /// [`remember`](Self::remember); marks an expired entry as being read again.
    fn cached(&self, hash: &str, now: Instant) -> Result<Option<Principal>, u64> {
        let mut entries = self.entries.lock();
        if let Some(hit) = entries.get_mut(hash) {
            let age = now.duration_since(hit.fetched);
            if age < self.ttl || (hit.refreshing && age < 2 * self.ttl) {
                return Ok(hit.principal.clone());
            }
            let mut outage = self.outage.lock();
            match *outage {
                // The store is down: the last answer stands (there is no newer one).
                Some(next_try) if now < next_try => {
                    metrics::counter!(STALE_LOOKUPS_TOTAL).increment(1);
                    return Ok(hit.principal.clone());
                }
                // This request tries it; the others keep the answer meanwhile.
                Some(_) => *outage = Some(now + STALE_RETRY),
                None => {}
            }
            hit.refreshing = true;
        }
        Err(self.evictions.load(Ordering::Acquire))
    }

    /// Caches what was read (unless an eviction ran since `evictions` was taken: the
    /// read may predate a revocation, so it answers its own request only).
    fn remember(
        &self,
        hash: String,
        loaded: Result<Option<Principal>, StoreError>,
        evictions: u64,
        now: Instant,
    ) -> Result<Option<Principal>, StoreError> {
        let mut entries = self.entries.lock();
        let principal = match loaded {
            Ok(principal) => {
                *self.outage.lock() = None;
                principal
            }
            Err(e) => {
                let down = matches!(e, StoreError::Unavailable(_));
                if down {
                    // Requests for known keys stop waiting on the store; one tries it
                    // again a second from now (from the failure, not from the read's
                    // start: an unreachable store can take seconds to say so).
                    *self.outage.lock() = Some(now.max(Instant::now()) + STALE_RETRY);
                }
                if let Some(hit) = entries.get_mut(&hash) {
                    hit.refreshing = false;
                    if down {
                        // There is no newer answer to see: the last one stands, and
                        // ingestion goes on into the queue.
                        metrics::counter!(STALE_LOOKUPS_TOTAL).increment(1);
                        return Ok(hit.principal.clone());
                    }
                }
                return Err(e);
            }
        };
        if self.evictions.load(Ordering::Acquire) != evictions {
            entries.remove(&hash);
            return Ok(principal);
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, e| now.duration_since(e.fetched) < self.ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            hash,
            CachedLookup {
                principal: principal.clone(),
                fetched: now,
                refreshing: false,
            },
        );
        Ok(principal)
    }

    /// How long a lookup is kept (`auth.key_cache_ttl_ms`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Forgets the lookup of one key (after revocation).
    pub fn evict_key(&self, key_hash: &str) {
        let mut entries = self.entries.lock();
        self.evictions.fetch_add(1, Ordering::AcqRel);
        entries.remove(key_hash);
    }

    /// Forgets one session (after sign-out or revocation).
    pub fn evict_session(&self, token_hash: &str) {
        self.evict_key(&CredentialHash::Session(token_hash.to_string()).cache_key());
    }

    /// Forgets the sessions of a member (after their access changes or they are
    /// removed).
    pub fn evict_member(&self, member: MemberId) {
        let mut entries = self.entries.lock();
        self.evictions.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, e| {
            e.principal
                .as_ref()
                .and_then(Principal::signed_in)
                .is_none_or(|s| s.member.id != member)
        });
    }

    /// Forgets the lookups of a project's keys (after its settings change or it is deleted).
    pub fn evict_project(&self, project: ProjectId) {
        let mut entries = self.entries.lock();
        self.evictions.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, e| {
            e.principal
                .as_ref()
                .is_none_or(|p| p.project_id() != Some(project))
        });
    }
}

async fn load_principal(
    store: &dyn MetadataStore,
    hash: &str,
) -> Result<Option<Principal>, StoreError> {
    let Some(key) = store.find_key_by_hash(hash).await? else {
        return Ok(None);
    };
    if key.is_revoked() {
        return Ok(None);
    }
    let (rate_limit, scope) = match key.project_id() {
        Some(project) => match store.get_project(key.organization_id, project).await? {
            Some((scope, p)) => (p.settings.rate_limit, Some(scope)),
            None => return Ok(None), // The project is gone.
        },
        None => (RateLimitOverride::default(), None),
    };
    Ok(Some(Principal {
        credential: Credential::Key(Arc::new(key)),
        rate_limit,
        scope,
    }))
}

/// Marks a session used at most this often.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::minutes(1);

async fn load_session(
    store: &dyn MetadataStore,
    hash: &str,
    idle: chrono::Duration,
) -> Result<Option<Principal>, StoreError> {
    let team = store.team();
    let Some((session, member)) = team.find_session(hash).await? else {
        return Ok(None);
    };
    let now = chrono::Utc::now();
    if !session.is_live(now, idle) {
        return Ok(None);
    }
    if now - session.last_seen_at >= TOUCH_EVERY {
        // Best effort: a failed touch only makes the session look older.
        if let Err(e) = team.touch_session(session.id, now).await {
            tracing::warn!(error = %e, "cannot mark a session used");
        }
    }
    Ok(Some(Principal {
        credential: Credential::Session(Arc::new(SignedIn { session, member })),
        rate_limit: RateLimitOverride::default(),
        scope: None,
    }))
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message).with_field("Authorization")
}

/// The secret key in `Authorization: Bearer <key>`.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization header: use `Bearer <secret key>`"))?
        .to_str()
        .map_err(|_| unauthorized("Authorization header is not valid text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| unauthorized("Authorization header must be `Bearer <secret key>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(unauthorized(
            "Authorization header must be `Bearer <secret key>`",
        ));
    }
    Ok(token.trim())
}

/// Middleware for management routes: a valid, unrevoked secret key, or a live session
/// cookie (its writes with their CSRF token, from the dashboard's origin); else
/// 401/403.
pub async fn require_credential(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let authenticated = if request.headers().contains_key(AUTHORIZATION) {
        authenticate_secret_key(&state, request.headers()).await
    } else {
        authenticate_session(&state, request.method(), request.headers()).await
    };
    let principal = match authenticated {
        Ok(p) => p,
        Err(e) => return crate::access::refuse(&state, request, e.into_response()).await,
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The live session of the request's cookie, its writes checked against cross-site
/// forgery ([`crate::dashboard_auth::check_write`]).
pub async fn authenticate_session(
    state: &AppState,
    method: &axum::http::Method,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let Some(token) = crate::dashboard_auth::session_token(headers) else {
        return Err(unauthorized(
            "missing Authorization header: use `Bearer <secret key>`, or sign in",
        ));
    };
    let principal = state
        .keys
        .lookup_session(state.store.as_ref(), &token)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "the session has ended (signed out, expired or revoked); sign in again",
            )
            .with_field(crate::dashboard_auth::SESSION_COOKIE)
        })?;
    crate::dashboard_auth::check_write(method, headers, &token, &state.config)?;
    Ok(principal)
}

async fn authenticate_secret_key(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let token = bearer_token(headers)?;
    let principal = state
        .keys
        .lookup(state.store.as_ref(), token)
        .await?
        .ok_or_else(|| unauthorized("invalid or revoked API key"))?;
    if principal.key().is_none_or(|k| k.kind() != KeyKind::Secret) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a write key can only send events; use a secret key (apz_sk_...) here",
        )
        .with_field("Authorization"));
    }
    Ok(principal)
}

/// The write key sent as the HTTP Basic user name (Segment clients), if any.
pub fn write_key_from_basic(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    (!user.is_empty()).then(|| user.to_string())
}

/// The write key carried in a JSON body: Segment `writeKey`, PostHog `api_key` or
/// `token`, at the top level.
pub fn write_key_from_body(body: &serde_json::Value) -> Option<&str> {
    ["writeKey", "api_key", "token"]
        .iter()
        .find_map(|name| body.get(name)?.as_str())
        .filter(|k| !k.is_empty())
}

/// Resolves a write key for ingestion: 401 if unknown or revoked, 403 if it is a
/// secret key (secret keys never travel inside apps).
pub async fn authenticate_write_key(state: &AppState, plaintext: &str) -> Result<Writer, ApiError> {
    let invalid = || {
        ApiError::new(ErrorCode::Unauthorized, "invalid or revoked write key")
            .with_field("writeKey")
    };
    let principal = state
        .keys
        .lookup(state.store.as_ref(), plaintext)
        .await?
        .ok_or_else(invalid)?;
    match principal.key().map(|k| k.access) {
        // A project key's principal always has its scope (a lookup without the
        // project finds no principal).
        Some(KeyAccess::Write { .. }) => match principal.scope {
            Some(scope) => Ok(Writer { principal, scope }),
            None => Err(invalid()),
        },
        _ => Err(ApiError::new(
            ErrorCode::Forbidden,
            "ingestion needs a project write key (apz_wk_...)",
        )
        .with_field("writeKey")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn cache(ttl_ms: u64) -> KeyCache {
        KeyCache::new(&AuthConfig {
            key_cache_ttl_ms: ttl_ms,
            key_cache_capacity: 100,
            ..AuthConfig::default()
        })
    }

    fn principal(name: &str) -> Principal {
        let organization_id = OrganizationId::new();
        Principal {
            credential: Credential::Key(Arc::new(ApiKey {
                id: KeyId::new(),
                organization_id,
                access: KeyAccess::OrganizationSecret { role: Role::Admin },
                name: name.to_string(),
                display_prefix: String::new(),
                key_hash: String::new(),
                created_at: chrono::Utc::now(),
                created_by: None,
                revoked_at: None,
            })),
            rate_limit: RateLimitOverride::default(),
            scope: None,
        }
    }

    fn name(answer: Result<Option<Principal>, u64>) -> Option<String> {
        answer
            .ok()
            .flatten()
            .and_then(|p| p.key().map(|k| k.name.clone()))
    }

    #[test]
    fn an_expired_lookup_is_read_again_by_one_request_while_the_others_keep_it() {
        let keys = cache(1_000);
        let t0 = Instant::now();
        let ev = keys.cached("h", t0).expect_err("empty cache: read the key");
        keys.remember("h".into(), Ok(Some(principal("old"))), ev, t0)
            .unwrap();
        assert_eq!(
            name(keys.cached("h", t0 + Duration::from_millis(999))).as_deref(),
            Some("old")
        );

        // Expired: the first request reads again, the others keep the old answer.
        let later = t0 + Duration::from_millis(1_500);
        let ev = keys
            .cached("h", later)
            .expect_err("expired: this request reads");
        assert_eq!(name(keys.cached("h", later)).as_deref(), Some("old"));
        keys.remember("h".into(), Ok(Some(principal("new"))), ev, later)
            .unwrap();
        assert_eq!(name(keys.cached("h", later)).as_deref(), Some("new"));

        // A read that never finishes stops covering for the others after one more TTL.
        let stuck = later + Duration::from_millis(1_200);
        keys.cached("h", stuck).expect_err("expired: read again");
        assert!(keys.cached("h", stuck + Duration::from_millis(100)).is_ok());
        assert!(keys
            .cached("h", later + Duration::from_millis(2_000))
            .is_err());
    }

    #[test]
    fn a_failed_read_lets_the_next_request_try_again() {
        let keys = cache(1_000);
        let t0 = Instant::now();
        keys.remember("h".into(), Ok(Some(principal("old"))), 0, t0)
            .unwrap();
        let later = t0 + Duration::from_millis(1_500);
        let ev = keys.cached("h", later).unwrap_err();
        let failed = keys.remember("h".into(), Err(StoreError::Setup("down".into())), ev, later);
        assert!(failed.is_err());
        assert!(
            keys.cached("h", later).is_err(),
            "no read is in flight any more"
        );
    }

    #[test]
    fn while_the_store_is_down_the_last_answer_stands() {
        let keys = cache(5_000);
        let t0 = Instant::now();
        keys.remember("h".into(), Ok(Some(principal("known"))), 0, t0)
            .unwrap();
        let later = t0 + Duration::from_secs(6);
        let ev = keys.cached("h", later).unwrap_err();
        let down = StoreError::Unavailable(sqlx::Error::PoolTimedOut);
        let answer = keys.remember("h".into(), Err(down), ev, later).unwrap();
        assert_eq!(name(Ok(answer)).as_deref(), Some("known"));
        // Answered without the store for a second; then one request tries it while
        // the others keep the answer.
        let soon = later + Duration::from_millis(900);
        assert_eq!(name(keys.cached("h", soon)).as_deref(), Some("known"));
        let probe = later + Duration::from_millis(1_100);
        let ev = keys
            .cached("h", probe)
            .expect_err("this one tries the store");
        assert_eq!(name(keys.cached("h", probe)).as_deref(), Some("known"));
        // Back: the answer read is cached as any other.
        keys.remember("h".into(), Ok(Some(principal("again"))), ev, probe)
            .unwrap();
        let after = probe + Duration::from_secs(4);
        assert_eq!(name(keys.cached("h", after)).as_deref(), Some("again"));
        assert!(
            keys.cached("h", probe + Duration::from_secs(6)).is_err(),
            "and expires"
        );
        // A key never seen gets the store's error.
        let ev = keys.cached("other", later).unwrap_err();
        let down = StoreError::Unavailable(sqlx::Error::PoolTimedOut);
        assert!(keys.remember("other".into(), Err(down), ev, later).is_err());
    }

    #[test]
    fn a_read_that_raced_an_eviction_is_not_cached() {
        let keys = cache(1_000);
        let t0 = Instant::now();
        let ev = keys.cached("h", t0).unwrap_err();
        // The key is revoked (and evicted) while this read is in flight.
        keys.evict_key("h");
        let answer = keys
            .remember("h".into(), Ok(Some(principal("stale"))), ev, t0)
            .unwrap();
        assert!(answer.is_some(), "the read answers its own request");
        assert!(keys.cached("h", t0).is_err(), "but is not cached");
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_tokens_are_parsed_and_malformed_headers_name_the_header() {
        assert_eq!(
            bearer_token(&headers("Bearer apz_sk_x")).unwrap(),
            "apz_sk_x"
        );
        assert_eq!(
            bearer_token(&headers("bearer  apz_sk_x ")).unwrap(),
            "apz_sk_x"
        );
        for bad in ["apz_sk_x", "Basic abc", "Bearer ", "Token apz"] {
            let e = bearer_token(&headers(bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthorized, "{bad}");
            assert_eq!(e.field.as_deref(), Some("Authorization"));
        }
        assert!(bearer_token(&HeaderMap::new()).is_err());
    }

    #[test]
    fn write_keys_come_from_basic_user_or_body_fields() {
        // "apz_wk_abc:" base64-encoded, as the Segment clients send it.
        let b64 = base64::engine::general_purpose::STANDARD.encode("apz_wk_abc:");
        assert_eq!(
            write_key_from_basic(&headers(&format!("Basic {b64}"))).as_deref(),
            Some("apz_wk_abc")
        );
        let no_colon = base64::engine::general_purpose::STANDARD.encode("apz_wk_abc");
        assert_eq!(
            write_key_from_basic(&headers(&format!("basic {no_colon}"))).as_deref(),
            Some("apz_wk_abc")
        );
        assert_eq!(write_key_from_basic(&headers("Basic !!!")), None);
        assert_eq!(write_key_from_basic(&headers("Bearer apz_wk_abc")), None);

        let segment = serde_json::json!({"writeKey": "apz_wk_1", "batch": []});
        let posthog = serde_json::json!({"api_key": "apz_wk_2"});
        let token = serde_json::json!({"token": "apz_wk_3"});
        assert_eq!(write_key_from_body(&segment), Some("apz_wk_1"));
        assert_eq!(write_key_from_body(&posthog), Some("apz_wk_2"));
        assert_eq!(write_key_from_body(&token), Some("apz_wk_3"));
        assert_eq!(
            write_key_from_body(&serde_json::json!({"writeKey": ""})),
            None
        );
    }
}
