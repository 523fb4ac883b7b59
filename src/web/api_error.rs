//! The JSON API's one error type: `{"error":{"code","message","details"?}}`, always.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<String>,
    /// Sent as `Retry-After` and as `retry_after` inside the error object.
    pub retry_after: Option<u64>,
}

/// What a client should wait after a "busy" answer.
pub const BUSY_RETRY_AFTER_SECS: u64 = 5;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Invalid username or password.",
        )
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Missing, expired or revoked session token. Sign in again.",
        )
    }

    pub fn backend_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
            "The NAS cannot be reached right now. Nothing was changed. Try again later.",
        )
    }

    /// Every verification slot is taken; `Retry-After` tells the client when to come back.
    pub fn busy() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
            "The portal is busy. Nothing was changed. Try again in a few seconds.",
        );
        e.retry_after = Some(BUSY_RETRY_AFTER_SECS);
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(secs) = self.retry_after {
            error["retry_after"] = json!(secs);
        }
        if !self.details.is_empty() {
            error["details"] = json!(self.details);
        }
        let response = (self.status, Json(json!({ "error": error }))).into_response();
        match self.retry_after {
            Some(secs) => super::responses::with_retry_after(response, secs),
            None => response,
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is larger than 16 KiB.",
            );
        }
        use axum::extract::rejection::JsonRejection as R;
        let message = match rejection {
            R::MissingJsonContentType(_) => {
                "Send the body as JSON with Content-Type: application/json."
            }
            R::JsonDataError(_) => {
                "The JSON body is missing a field or has a field of the wrong type."
            }
            R::JsonSyntaxError(_) => "The body is not valid JSON.",
            _ => "The request body could not be read.",
        };
        Self::bad_request(message)
    }
}
