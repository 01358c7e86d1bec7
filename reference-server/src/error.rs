//! Errors in the Anthropic API's shape, so clients (and their SDKs) understand them.

use axum::body::Body;
use http::{Response, StatusCode, header};

/// `{"type":"error","error":{"type":…,"message":…}}` with `status`.
pub fn anthropic_error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "type": "error",
        "error": { "type": error_type, "message": message },
    });
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a static status and header make a valid response")
}
