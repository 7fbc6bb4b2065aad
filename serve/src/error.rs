//! Every error a client can see: an HTTP status and a JSON body `{"error": {"code", "message"}}`
//! with a stable `code`. Never a stack trace, never a token.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use facegate_face::FaceError;

/// A request that could not be answered.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (documented in docs/openapi.yaml).
    pub code: &'static str,
    /// Human-readable detail.
    pub message: String,
}

impl ApiError {
    /// An error with a status, a stable code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 500: details go to the server's log, not to the client.
    pub fn internal(context: &str, detail: impl std::fmt::Display) -> Self {
        eprintln!("facegate serve: internal error in {context}: {detail}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error (logged by the server)")
    }
}

impl From<FaceError> for ApiError {
    fn from(e: FaceError) -> Self {
        use StatusCode as S;
        match e {
            FaceError::Decode(_) | FaceError::EmptyImage { .. } => {
                Self::new(S::UNPROCESSABLE_ENTITY, "bad_image", e.to_string())
            }
            FaceError::TooLarge { .. } => Self::new(S::PAYLOAD_TOO_LARGE, "image_too_large", e.to_string()),
            FaceError::NoFace => Self::new(S::UNPROCESSABLE_ENTITY, "no_face", e.to_string()),
            FaceError::ManyFaces { .. } => Self::new(S::UNPROCESSABLE_ENTITY, "several_faces", e.to_string()),
            FaceError::FaceTooSmall { .. } => Self::new(S::UNPROCESSABLE_ENTITY, "face_too_small", e.to_string()),
            other => Self::internal("face pipeline", other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}
