//! Request extractors that answer bad input with an [`ApiError`] naming the field:
//! JSON bodies (size limit, content type, shape), path ids and query strings.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use appizer_core::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON object body decoded into `T`, within `server.max_body_bytes`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.server.max_body_bytes;
        check_content_type(req.headers())?;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit));
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| too_large(limit))?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            // Valid JSON of another shape, or not JSON at all.
            decode_json::<serde::de::IgnoredAny>(&bytes)?;
            return Err(ApiError::invalid("body", "the body must be a JSON object"));
        }
        decode_json(&bytes).map(ApiJson)
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body exceeds the limit of {limit} bytes"),
    )
    .with_field("body")
}

fn check_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(()); // Tolerated: the body must still be JSON.
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("expected Content-Type application/json, got `{mime}`"),
        )
        .with_field("Content-Type"))
    }
}

/// Decodes JSON, naming the offending field on a shape error.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        shape_error(&path, &inner)
    })?;
    de.end().map_err(|e| shape_error(".", &e))?;
    Ok(value)
}

/// Decodes a JSON value already parsed, naming the offending field on a shape error.
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        shape_error(&path, &inner)
    })
}

fn shape_error(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let message = e.to_string();
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            ErrorCode::InvalidJson,
            format!("body is not valid JSON: {message}"),
        )
        .with_field("body"),
        Category::Data => {
            let parent = if path == "." { "" } else { path };
            // A missing field is named in the message; the path stops at its parent.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next());
            let field = match (parent, missing) {
                ("", Some(name)) => name.to_string(),
                (parent, Some(name)) => format!("{parent}.{name}"),
                ("", None) => "body".to_string(),
                (parent, None) => parent.to_string(),
            };
            ApiError::invalid(field, message)
        }
    }
}

/// A typed path parameter; a malformed id is 404 (no such resource can exist).
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::new(ErrorCode::NotFound, format!("not found: {e}")))
    }
}

/// A query string decoded into `T`; a bad parameter is 400 naming it.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::invalid(
                    if path == "." {
                        "query".to_string()
                    } else {
                        path
                    },
                    format!("invalid query string: {}", e.into_inner()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        limits: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        burst: u32,
    }

    fn field_of(body: &str) -> (ErrorCode, String) {
        let e = decode_json::<Outer>(body.as_bytes()).unwrap_err();
        (e.code, e.field.unwrap())
    }

    #[test]
    fn shape_errors_name_the_field() {
        assert_eq!(
            field_of(r#"{"name": 3}"#),
            (ErrorCode::ValidationFailed, "name".into())
        );
        assert_eq!(field_of("{}"), (ErrorCode::ValidationFailed, "name".into()));
        assert_eq!(
            field_of(r#"{"name":"a","nmae":1}"#),
            (ErrorCode::ValidationFailed, "nmae".into())
        );
        assert_eq!(
            field_of(r#"{"name":"a","limits":{"burst":-1}}"#),
            (ErrorCode::ValidationFailed, "limits.burst".into())
        );
        assert_eq!(
            field_of(r#"{"name":"a","limits":{"brust":1}}"#),
            (ErrorCode::ValidationFailed, "limits.brust".into())
        );
        assert_eq!(
            field_of(r#"{"name":"#),
            (ErrorCode::InvalidJson, "body".into())
        );
        assert_eq!(
            field_of(r#"{"name":"a"} trailing"#),
            (ErrorCode::InvalidJson, "body".into())
        );
        assert!(decode_json::<Outer>(br#"{"name":"a"}"#).is_ok());
    }
}
