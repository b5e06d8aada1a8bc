//! Authentication: who is calling. Secret keys come as `Authorization: Bearer <key>`;
//! write keys (ingestion) come as HTTP Basic user name or inside the body
//! (`writeKey`, `api_key`, `token`). Keys are looked up by their SHA-256 through a
//! bounded cache; revoking a key through this node evicts it at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appizer_core::config::AuthConfig;
use appizer_core::keys::{hash_key, KeyKind};
use appizer_core::tenancy::{ApiKey, KeyAccess, RateLimitOverride};
use appizer_core::{ErrorCode, KeyId, OrganizationId, ProjectId, Role};
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

/// An authenticated key, as handlers see it (a request extension).
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: Arc<ApiKey>,
    /// The rate limit overrides of the key's project (none for organisation keys).
    pub rate_limit: RateLimitOverride,
    /// The scope of the key's project, read with the key's organisation (none for
    /// organisation keys).
    pub scope: Option<ProjectScope>,
}

impl Principal {
    pub fn key_id(&self) -> KeyId {
        self.key.id
    }

    pub fn organization_id(&self) -> OrganizationId {
        self.key.organization_id
    }

    /// The project a project key belongs to; `None` for an organisation-wide key.
    pub fn project_id(&self) -> Option<ProjectId> {
        self.key.project_id()
    }

    pub fn role(&self) -> Option<Role> {
        self.key.role()
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
    /// `None`: no usable key has this hash (unknown or revoked).
    principal: Option<Principal>,
    fetched: Instant,
    /// A request is reading this key again; others keep the answer meanwhile.
    refreshing: bool,
}

/// Key lookups by hash, kept for `auth.key_cache_ttl_ms`, at most
/// `auth.key_cache_capacity` entries (expired entries go first, then everything).
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, CachedLookup>>,
    /// Bumped by every eviction, so a read that raced one is not cached.
    evictions: AtomicU64,
}

impl KeyCache {
    pub fn new(config: &AuthConfig) -> Self {
        Self {
            ttl: Duration::from_millis(config.key_cache_ttl_ms),
            capacity: config.key_cache_capacity.max(1),
            entries: Mutex::new(HashMap::new()),
            evictions: AtomicU64::new(0),
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
        self.lookup_hash(store, hash_key(plaintext)).await
    }

    /// [`lookup`](Self::lookup) by the key's hash: how a long-lived answer (a live
    /// stream) checks that the key it was opened with is still usable.
    pub async fn lookup_hash(
        &self,
        store: &dyn MetadataStore,
        hash: String,
    ) -> Result<Option<Principal>, StoreError> {
        let now = Instant::now();
        match self.cached(&hash, now) {
            Ok(answer) => Ok(answer),
            Err(evictions) => {
                let loaded = load_principal(store, &hash).await;
                self.remember(hash, loaded, evictions, now)
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
            Ok(principal) => principal,
            Err(e) => {
                if let Some(hit) = entries.get_mut(&hash) {
                    hit.refreshing = false;
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
        key: Arc::new(key),
        rate_limit,
        scope,
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

/// Middleware for management routes: a valid, unrevoked secret key, or 401/403.
pub async fn require_secret_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match authenticate_secret_key(&state, request.headers()).await {
        Ok(p) => p,
        Err(e) => return crate::access::refuse(&state, request, e.into_response()).await,
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
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
    if principal.key.kind() != KeyKind::Secret {
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
    match principal.key.access {
        // A project key's principal always has its scope (a lookup without the
        // project finds no principal).
        KeyAccess::Write { .. } => match principal.scope {
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
        })
    }

    fn principal(name: &str) -> Principal {
        let organization_id = OrganizationId::new();
        Principal {
            key: Arc::new(ApiKey {
                id: KeyId::new(),
                organization_id,
                access: KeyAccess::OrganizationSecret { role: Role::Admin },
                name: name.to_string(),
                display_prefix: String::new(),
                key_hash: String::new(),
                created_at: chrono::Utc::now(),
                created_by: None,
                revoked_at: None,
            }),
            rate_limit: RateLimitOverride::default(),
            scope: None,
        }
    }

    fn name(answer: Result<Option<Principal>, u64>) -> Option<String> {
        answer.ok().flatten().map(|p| p.key.name.clone())
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
