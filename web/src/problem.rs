//! RFC 9457 problem details. Every 4xx and 5xx leaves the server as `application/problem+json`:
//! handlers return `ApiError`, and `problem_layer` rewrites whatever else produced an error
//! status (axum's rejections, 404 and 405 fallbacks, body limits, panics).

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use movies_events::ValidationErrors;
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// The JSON path of the field (`name`, `genres[2]`).
    pub field: String,
    pub message: String,
}

/// A problem details body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A stable identifier of the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For validation problems: every field that broke a rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<Option<String>>) -> Self {
        Problem {
            kind: format!("urn:movies:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
        }
    }

    pub(crate) fn for_status(status: StatusCode, detail: Option<String>) -> Self {
        let slug = match status {
            StatusCode::BAD_REQUEST => "bad-request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::TOO_MANY_REQUESTS => "too-many-requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_server_error() => "internal",
            _ => "http",
        };
        Problem::new(status, slug, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // A struct of strings and numbers always serializes.
        let body = serde_json::to_vec(&self).expect("problem serializes");
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))], body).into_response()
    }
}

/// What a handler can fail with. 4xx variants explain themselves; `Internal` stays opaque to the
/// client and is logged once, here.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NotImplemented(String),
    /// Too many attempts: retry after this many seconds.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let problem = match &self {
            ApiError::Invalid(errors) => Problem {
                errors: Some(
                    errors
                        .0
                        .iter()
                        .map(|e| FieldProblem { field: e.field.clone(), message: e.message.clone() })
                        .collect(),
                ),
                ..Problem::new(status, "validation", Some("the movie breaks one or more rules".to_owned()))
            },
            ApiError::PreconditionFailed(detail) => {
                Problem::new(status, "precondition-failed", Some(detail.clone()))
            }
            ApiError::Unprocessable(detail) => Problem::new(status, "unprocessable", Some(detail.clone())),
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                Problem::for_status(status, None)
            }
            other => Problem::for_status(status, Some(other.to_string())),
        };
        let mut response = problem.into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::TooManyRequests { retry_after, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

const MAX_DETAIL_BYTES: usize = 4096;

/// Rewrites any error response that is not yet problem+json (nor an HTML page) into one, keeping its status and
/// headers (Allow, WWW-Authenticate, Retry-After) and using a plain-text body as the detail.
pub async fn problem_layer(response: Response) -> Response {
    let status = response.status();
    // A problem already, or a page for people (the console's error pages), is left as it is.
    let kept = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes() || v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || kept {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_DETAIL_BYTES).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let detail = match status {
        StatusCode::NOT_FOUND if text.is_empty() => Some("no such resource".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED if text.is_empty() => {
            Some("the resource does not allow this method".to_owned())
        }
        s if s.is_server_error() => None,
        _ if text.is_empty() => None,
        _ => Some(text),
    };
    let problem = Problem::for_status(status, detail).into_response();
    let (problem_parts, problem_body) = problem.into_parts();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    drop(problem_parts);
    Response::from_parts(parts, Body::new(problem_body))
}
