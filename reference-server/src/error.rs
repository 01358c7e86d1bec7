//! Errors in the Anthropic API's shape, so clients (and their SDKs) understand them.

use axum::body::Body;
use http::{Response, StatusCode, header};

/// The body `{"type":"error","error":{"type":…,"message":…}}`.
pub fn error_body(error_type: &str, message: &str) -> String {
    serde_json::json!({
        "type": "error",
        "error": { "type": error_type, "message": message },
    })
    .to_string()
}

/// An error response of the Anthropic API's shape, with `status`.
pub fn anthropic_error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(error_body(error_type, message)))
        .expect("a valid status and a static header make a valid response")
}
