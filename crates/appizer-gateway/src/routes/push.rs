//! Push devices. Apps register and unregister their users' devices with the project's
//! write key (`/v1/push/devices`, like the capture routes: CORS open, ingestion rate
//! limit); management lists, reads and deletes them
//! (`/api/v1/projects/{project_id}/push/devices`, `.../persons/{person_id}/devices`).
//! Provider credentials are set per project by admins (`.../push/providers/...`),
//! sealed by `appizer_push::credentials` and never answered. What a device must be is
//! `appizer_push::devices`'s rule.

use appizer_core::push::{
    Device, DeviceFilter, DeviceState, Platform, Provider, ProviderRecord, WebKeys,
};
use appizer_core::{DeviceId, PersonId, ProjectId};
use appizer_push::credentials;
use appizer_push::devices::{self, Registration};
use appizer_push::providers::webpush::WebPushConfig;
use appizer_storage::ProjectScope;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::capture::authenticate;
use super::CallerProject;
use crate::auth::write_key_from_basic;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{decode_json, ApiPath, ApiQuery};
use crate::state::AppState;

/// Devices per page by default and at most.
pub const DEFAULT_DEVICES_PAGE: u32 = 100;
pub const MAX_DEVICES_PAGE: u32 = 1_000;
/// Largest registration body.
const MAX_REGISTRATION_BYTES: usize = 16 * 1024;

/// A browser's subscription, as `PushSubscription.toJSON()` gives it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct SubscriptionBody {
    /// The push service URL; its host must be in `push.webpush_allowed_hosts`.
    pub endpoint: String,
    pub keys: KeysBody,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct KeysBody {
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The browser's 16-byte authentication secret, base64url.
    pub auth: String,
}

/// A device to register; registering the same token (or endpoint) again updates it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    /// The distinct id of the device's user; the device follows that id's person.
    #[schema(min_length = 1, max_length = 512)]
    pub distinct_id: String,
    /// `ios`, `android` or `web`.
    pub platform: String,
    /// The APNs device token (hex) or the FCM registration token.
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub token: Option<String>,
    /// A web device's subscription.
    #[serde(default)]
    pub subscription: Option<SubscriptionBody>,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub app_id: Option<String>,
    /// A language tag such as `fr-FR`.
    #[serde(default)]
    #[schema(max_length = 35)]
    pub locale: Option<String>,
    /// An IANA time zone such as `Europe/Paris`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Ignored if present: the subscription's own expiry.
    #[serde(default, rename = "expirationTime")]
    #[schema(value_type = Option<Object>)]
    pub expiration_time: Option<serde_json::Value>,
}

/// The device to unregister (opt-out): by its token, or a web device by its endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnregisterDevice {
    pub platform: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    #[schema(value_type = String, format = Uuid)]
    pub id: DeviceId,
    pub platform: Platform,
    /// The APNs or FCM token, or the Web Push endpoint.
    pub address: String,
    pub distinct_id: String,
    /// The person of `distinct_id` now; absent when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub person_id: Option<PersonId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub state: DeviceState,
    /// Why it no longer receives pushes: `opted_out`, or the provider's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Device> for DeviceView {
    fn from(d: Device) -> Self {
        Self {
            id: d.id,
            platform: d.platform,
            address: d.address,
            distinct_id: d.distinct_id,
            person_id: d.person_id,
            app_id: d.app_id,
            locale: d.locale,
            timezone: d.timezone,
            state: d.state,
            retired_reason: d.retired_reason,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DevicePage {
    pub devices: Vec<DeviceView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// Devices of this person.
    #[param(value_type = Option<String>, format = Uuid)]
    pub person_id: Option<String>,
    /// `ios`, `android` or `web`.
    pub platform: Option<String>,
    /// `active` or `retired`.
    pub state: Option<String>,
    /// Devices per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// The public routes, authenticated by a project write key.
pub fn public_routes() -> Router<AppState> {
    Router::new().route("/v1/push/devices", post(register).delete(unregister))
}

fn webpush(state: &AppState) -> WebPushConfig {
    WebPushConfig::from_config(&state.config.push)
}

fn refused(e: devices::Refused) -> ApiError {
    ApiError::invalid(e.field.clone(), e.to_string())
}

/// The write key (Bearer or HTTP Basic user name), checked and rate limited as for
/// ingestion; the scope of its project, as the key lookup read it.
async fn writer_scope(state: &AppState, headers: &HeaderMap) -> Result<ProjectScope, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let key = bearer.or_else(|| write_key_from_basic(headers));
    let (writer, _) = authenticate(state, key.as_deref()).await?;
    Ok(writer.scope)
}

async fn body<T: serde::de::DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(request.into_body(), MAX_REGISTRATION_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                appizer_core::ErrorCode::PayloadTooLarge,
                format!("the body is over {MAX_REGISTRATION_BYTES} bytes"),
            )
        })?;
    decode_json(&bytes)
}

/// Register a device (or update the one with the same token or endpoint).
async fn register(
    State(state): State<AppState>,
    request: Request,
) -> ApiResult<(StatusCode, Json<DeviceView>)> {
    let scope = writer_scope(&state, request.headers()).await?;
    let b: RegisterDevice = body(request).await?;
    let (endpoint, keys) = match b.subscription {
        Some(s) => (
            Some(s.endpoint),
            Some(WebKeys {
                p256dh: s.keys.p256dh,
                auth: s.keys.auth,
            }),
        ),
        None => (None, None),
    };
    let registration = Registration {
        distinct_id: b.distinct_id,
        platform: b.platform,
        token: b.token,
        endpoint,
        keys,
        app_id: b.app_id,
        locale: b.locale,
        timezone: b.timezone,
    };
    let device = devices::check(registration, &webpush(&state), Utc::now()).map_err(refused)?;
    let (device, created) = state.store.push().register(scope, &device).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(device.into())))
}

/// Unregister a device: it is retired and never sent to again, until registered anew.
async fn unregister(State(state): State<AppState>, request: Request) -> ApiResult<StatusCode> {
    let scope = writer_scope(&state, request.headers()).await?;
    let b: UnregisterDevice = body(request).await?;
    let platform = devices::platform(&b.platform).map_err(refused)?;
    let address = devices::address(
        platform,
        b.token.as_deref(),
        b.endpoint.as_deref(),
        &webpush(&state),
    )
    .map_err(|e| match e.field.as_str() {
        "subscription" | "subscription.endpoint" => ApiError::invalid("endpoint", e.rule),
        _ => refused(e),
    })?;
    state
        .store
        .push()
        .unregister(scope, platform, &address, Utc::now())
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(StatusCode::NO_CONTENT)
}

fn filter(query: DeviceQuery, person: Option<PersonId>) -> Result<DeviceFilter, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_DEVICES_PAGE);
    if !(1..=MAX_DEVICES_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_DEVICES_PAGE}"),
        ));
    }
    let person = match (person, query.person_id) {
        (Some(p), _) => Some(p),
        (None, Some(text)) => Some(
            text.parse()
                .map_err(|_| ApiError::invalid("person_id", "is not a person id"))?,
        ),
        (None, None) => None,
    };
    Ok(DeviceFilter {
        person,
        platform: query
            .platform
            .map(|p| devices::platform(&p).map_err(refused))
            .transpose()?,
        state: query
            .state
            .map(|s| {
                DeviceState::parse(&s)
                    .ok_or_else(|| ApiError::invalid("state", "must be active or retired"))
            })
            .transpose()?,
        after: query
            .cursor
            .map(|c| {
                c.parse()
                    .map_err(|_| ApiError::invalid("cursor", "is not a cursor this API returned"))
            })
            .transpose()?,
        limit: limit + 1,
    })
}

async fn page(
    state: &AppState,
    scope: ProjectScope,
    filter: DeviceFilter,
) -> ApiResult<Json<DevicePage>> {
    let limit = (filter.limit - 1) as usize;
    let mut found = state.store.push().list(scope, &filter).await?;
    let next_cursor = (found.len() > limit).then(|| {
        found.truncate(limit);
        found.last().map(|d| d.id.to_string()).unwrap_or_default()
    });
    Ok(Json(DevicePage {
        devices: found.into_iter().map(DeviceView::from).collect(),
        next_cursor,
    }))
}

/// List a project's devices, filtered by person, platform and state.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/push/devices", tag = "push", operation_id = "list_devices",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), DeviceQuery),
    responses((status = 200, body = DevicePage), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> ApiResult<Json<DevicePage>> {
    page(&state, scope, filter(query, None)?).await
}

/// A person's devices.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/persons/{person_id}/devices", tag = "push", operation_id = "list_person_devices",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("person_id" = String, Path, format = Uuid), DeviceQuery),
    responses((status = 200, body = DevicePage), (status = 404, body = ErrorBody)))]
pub async fn person_devices(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, person_id)): ApiPath<(ProjectId, PersonId)>,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> ApiResult<Json<DevicePage>> {
    state
        .events
        .identity
        .current(scope, person_id)
        .await?
        .ok_or_else(|| ApiError::not_found("person"))?;
    page(&state, scope, filter(query, Some(person_id))?).await
}

/// One device.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/push/devices/{device_id}", tag = "push", operation_id = "get_device",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("device_id" = String, Path, format = Uuid)),
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, device_id)): ApiPath<(ProjectId, DeviceId)>,
) -> ApiResult<Json<DeviceView>> {
    let device = state
        .store
        .push()
        .get(scope, device_id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(Json(device.into()))
}

/// Delete a device (it registers again if the app sends its token again).
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/push/devices/{device_id}", tag = "push", operation_id = "delete_device",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("device_id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, device_id)): ApiPath<(ProjectId, DeviceId)>,
) -> ApiResult<StatusCode> {
    let audit = caller.audit(
        Some(scope.project()),
        "device.delete",
        "device",
        device_id,
        serde_json::json!({}),
    );
    if !state.store.push().delete(scope, device_id, &audit).await? {
        return Err(ApiError::not_found("device"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A provider as configured: what may be shown, never a secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    pub provider: Provider,
    /// APNs: team_id, key_id, topic, environment; FCM: project_id, client_email,
    /// token_uri; Web Push: subject, public_key (for `pushManager.subscribe`).
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

impl From<ProviderRecord> for ProviderView {
    fn from(r: ProviderRecord) -> Self {
        Self {
            provider: r.provider,
            settings: r.settings,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderView>,
}

/// The APNs credentials of a project (token-based authentication).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApnsBody {
    /// The 10-character team id.
    pub team_id: String,
    /// The 10-character id of the signing key.
    pub key_id: String,
    /// The `.p8` file's text (PEM).
    pub private_key: String,
    /// The app's bundle id.
    pub topic: String,
    /// `production` or `sandbox`.
    pub environment: String,
}

/// The FCM credentials of a project.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FcmBody {
    /// The service account JSON Google issues.
    #[schema(value_type = Object)]
    pub service_account: serde_json::Value,
}

/// The Web Push settings of a project.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebPushBody {
    /// A contact for push services: `mailto:...` or `https://...`.
    pub subject: String,
    /// A VAPID private key to import (32 bytes, base64url); by default one is made.
    #[serde(default)]
    pub private_key: Option<String>,
}

async fn save(
    state: &AppState,
    caller: &super::Caller,
    scope: ProjectScope,
    record: Result<ProviderRecord, devices::Refused>,
) -> ApiResult<Json<ProviderView>> {
    let record = record.map_err(refused)?;
    let audit = caller.audit(
        Some(scope.project()),
        "push_provider.put",
        "push_provider",
        record.provider.as_str(),
        serde_json::json!({ "settings": record.settings }),
    );
    state
        .store
        .push()
        .put_provider(scope, &record, &audit)
        .await?;
    Ok(Json(record.into()))
}

/// What `PUT .../push/providers/{provider}` takes: `ApnsBody` for `apns`, `FcmBody` for
/// `fcm`, `WebPushBody` for `webpush`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ProviderBody {
    Apns(ApnsBody),
    Fcm(FcmBody),
    WebPush(WebPushBody),
}

/// Set the project's credentials for a provider (replacing earlier ones). Secrets are
/// sealed under the server's master key and never answered; Web Push answers the
/// public key of the VAPID pair it made (or imported).
#[utoipa::path(put, path = "/api/v1/projects/{project_id}/push/providers/{provider}", tag = "push", operation_id = "put_provider",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("provider" = String, Path, description = "apns, fcm or webpush")),
    request_body = ProviderBody,
    responses((status = 200, body = ProviderView), (status = 404, body = ErrorBody)))]
pub async fn put_provider(
    State(state): State<AppState>,
    CallerProject { caller, scope, .. }: CallerProject,
    ApiPath((_, name)): ApiPath<(ProjectId, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<ProviderView>> {
    let provider = Provider::parse(&name).ok_or_else(|| ApiError::not_found("provider"))?;
    // Stored to the millisecond: the answer says what a later read says.
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let (master, project) = (&state.push.master, scope.project());
    let record = match provider {
        Provider::Apns => {
            let b: ApnsBody = decode_json(&body)?;
            let given = credentials::ApnsCredentials {
                team_id: b.team_id,
                key_id: b.key_id,
                private_key: b.private_key,
                topic: b.topic,
                environment: b.environment,
            };
            credentials::apns(given, master, project, now)
        }
        Provider::Fcm => {
            let b: FcmBody = decode_json(&body)?;
            let given = credentials::FcmCredentials {
                service_account: b.service_account,
            };
            credentials::fcm(given, master, project, now)
        }
        Provider::Webpush => {
            let b: WebPushBody = decode_json(&body)?;
            let given = credentials::WebPushCredentials {
                subject: b.subject,
                private_key: b.private_key,
            };
            credentials::webpush(given, master, project, now)
        }
    };
    save(&state, &caller, scope, record).await
}

/// The providers the project has configured, without their secrets.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/push/providers", tag = "push", operation_id = "list_providers",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid)),
    responses((status = 200, body = ProviderList), (status = 404, body = ErrorBody)))]
pub async fn providers(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
) -> ApiResult<Json<ProviderList>> {
    let providers = state.store.push().providers(scope).await?;
    Ok(Json(ProviderList {
        providers: providers.into_iter().map(ProviderView::from).collect(),
    }))
}

/// One provider as configured (for Web Push, the public key to subscribe with).
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/push/providers/{provider}", tag = "push", operation_id = "get_provider",
    security(("secret_key" = [])),
    params(("project_id" = String, Path, format = Uuid), ("provider" = String, Path, description = "apns, fcm or webpush")),
    responses((status = 200, body = ProviderView), (status = 404, body = ErrorBody)))]
pub async fn provider(
    State(state): State<AppState>,
    CallerProject { scope, .. }: CallerProject,
    ApiPath((_, name)): ApiPath<(ProjectId, String)>,
) -> ApiResult<Json<ProviderView>> {
    let provider = Provider::parse(&name).ok_or_else(|| ApiError::not_found("provider"))?;
    let record = state
        .store
        .push()
        .provider(scope, provider)
        .await?
        .ok_or_else(|| ApiError::not_found("provider configuration"))?;
    Ok(Json(record.into()))
}
