//! How a Bedrock failure is answered: Anthropic's status, error type and body.

use std::error::Error;
use std::fmt;

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::RequestId;
use aws_sdk_bedrockruntime::types::error::ResponseStreamError;
use axum::body::Body;
use bytes::Bytes;
use http::{Response, StatusCode};

use super::stream::sse_event;
use crate::error::{anthropic_error, error_body};

/// The HTTP status and the Anthropic error type of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fault {
    status: StatusCode,
    error_type: &'static str,
}

impl Fault {
    pub(super) const INVALID_REQUEST: Self =
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error");
    const PERMISSION: Self = Self::new(StatusCode::FORBIDDEN, "permission_error");
    const NOT_FOUND: Self = Self::new(StatusCode::NOT_FOUND, "not_found_error");
    const RATE_LIMIT: Self = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error");
    const OVERLOADED: Self = Self::new(
        // Anthropic's own "overloaded" status, which http has no constant for.
        match StatusCode::from_u16(529) {
            Ok(status) => status,
            Err(_) => panic!("529 is a valid status code"),
        },
        "overloaded_error",
    );
    const API_ERROR: Self = Self::new(StatusCode::INTERNAL_SERVER_ERROR, "api_error");
    const TIMEOUT: Self = Self::new(StatusCode::GATEWAY_TIMEOUT, "api_error");

    const fn new(status: StatusCode, error_type: &'static str) -> Self {
        Self { status, error_type }
    }

    /// The answer to a Bedrock error code (`ThrottlingException`, …).
    fn for_code(code: Option<&str>) -> Self {
        match code {
            Some("ValidationException") => Self::INVALID_REQUEST,
            Some("AccessDeniedException") => Self::PERMISSION,
            Some("ResourceNotFoundException") => Self::NOT_FOUND,
            Some("ThrottlingException" | "ServiceQuotaExceededException") => Self::RATE_LIMIT,
            Some(
                "ModelNotReadyException" | "ServiceUnavailableException" | "ModelTimeoutException",
            ) => Self::OVERLOADED,
            // InternalServerException, ModelErrorException, ModelStreamErrorException and
            // whatever Bedrock may add.
            _ => Self::API_ERROR,
        }
    }
}

/// The error response for `fault`, saying `message`.
pub(super) fn error_response(fault: Fault, message: &str) -> Response<Body> {
    anthropic_error(fault.status, fault.error_type, message)
}

/// The code of an error inside a stream.
///
/// The event-stream reader picks the variant from the frame's `:exception-type` but
/// only fills in the code when the payload names one, which Bedrock's do not.
pub(super) fn stream_error_code(error: &ResponseStreamError) -> Option<&str> {
    Some(match error {
        ResponseStreamError::ValidationException(_) => "ValidationException",
        ResponseStreamError::ThrottlingException(_) => "ThrottlingException",
        ResponseStreamError::ModelTimeoutException(_) => "ModelTimeoutException",
        ResponseStreamError::ServiceUnavailableException(_) => "ServiceUnavailableException",
        ResponseStreamError::InternalServerException(_) => "InternalServerException",
        ResponseStreamError::ModelStreamErrorException(_) => "ModelStreamErrorException",
        other => return other.code(),
    })
}

/// A failed Bedrock call: how to answer it, and what to tell and log.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Failure {
    fault: Fault,
    /// Bedrock's error code, when Bedrock answered.
    pub(super) code: Option<String>,
    /// What Bedrock said, or what went wrong on the way (never a credential).
    pub(super) message: String,
    request_id: Option<String>,
}

impl Failure {
    /// The failure an SDK error stands for; `code_of` tells the code of a service error.
    pub(super) fn of<E, R>(error: &SdkError<E, R>, code_of: fn(&E) -> Option<&str>) -> Self
    where
        E: ProvideErrorMetadata + RequestId + Error + 'static,
        R: fmt::Debug,
    {
        match error {
            SdkError::ServiceError(service) => {
                let error = service.err();
                let code = code_of(error);
                Self {
                    fault: Fault::for_code(code),
                    code: code.map(str::to_owned),
                    message: error
                        .message()
                        .or(code)
                        .unwrap_or("Bedrock failed without saying why")
                        .to_owned(),
                    request_id: error.request_id().map(str::to_owned),
                }
            }
            SdkError::TimeoutError(_) => Self::timeout(),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => Self::timeout(),
            other => Self {
                fault: Fault::API_ERROR,
                code: None,
                message: format!("the Bedrock call failed: {}", causes(other)),
                request_id: None,
            },
        }
    }

    fn timeout() -> Self {
        Self {
            fault: Fault::TIMEOUT,
            code: None,
            message: "Bedrock did not answer in time".to_owned(),
            request_id: None,
        }
    }

    /// Logs the failure of a call to `model` and answers it.
    pub(super) fn answer(&self, model: &str) -> Response<Body> {
        tracing::warn!(
            bedrock.model = model,
            status = self.fault.status.as_u16(),
            bedrock.error = self.code.as_deref(),
            bedrock.request_id = self.request_id.as_deref(),
            message = %self.message,
            "Bedrock refused the request"
        );
        error_response(self.fault, &self.message)
    }

    /// The failure as the `error` event that ends a stream.
    pub(super) fn sse_event(&self) -> Bytes {
        sse_event(error_body(self.fault.error_type, &self.message).as_bytes())
    }
}

/// An error and its sources, by their `Display` (the SDK's `Debug` says too much).
fn causes(error: &dyn Error) -> String {
    let mut causes = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        causes.push_str(": ");
        causes.push_str(&cause.to_string());
        source = cause.source();
    }
    causes
}

#[cfg(test)]
mod tests {
    use aws_sdk_bedrockruntime::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError;
    use aws_sdk_bedrockruntime::types::error::{ModelStreamErrorException, ThrottlingException};
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn bedrock_errors_map_to_anthropic_statuses_and_types() {
        for (code, status, error_type) in [
            ("ValidationException", 400, "invalid_request_error"),
            ("AccessDeniedException", 403, "permission_error"),
            ("ResourceNotFoundException", 404, "not_found_error"),
            ("ThrottlingException", 429, "rate_limit_error"),
            ("ServiceQuotaExceededException", 429, "rate_limit_error"),
            ("ModelNotReadyException", 529, "overloaded_error"),
            ("ServiceUnavailableException", 529, "overloaded_error"),
            ("ModelTimeoutException", 529, "overloaded_error"),
            ("InternalServerException", 500, "api_error"),
            ("ModelErrorException", 500, "api_error"),
            ("ModelStreamErrorException", 500, "api_error"),
            ("SomethingNewException", 500, "api_error"),
        ] {
            let fault = Fault::for_code(Some(code));
            assert_eq!(
                (fault.status.as_u16(), fault.error_type),
                (status, error_type),
                "{code}"
            );
        }
        assert_eq!(Fault::for_code(None), Fault::API_ERROR);
    }

    #[test]
    fn a_service_error_says_what_bedrock_said() {
        // The deserializer keeps the code and the message in the metadata; so do we.
        let meta = ErrorMetadata::builder()
            .code("ThrottlingException")
            .message("Too many requests, please wait before trying again.")
            .build();
        let error = InvokeModelError::ThrottlingException(
            ThrottlingException::builder().meta(meta).build(),
        );
        let failure = Failure::of(
            &SdkError::service_error(error, ()),
            ProvideErrorMetadata::code,
        );
        assert_eq!(failure.fault, Fault::RATE_LIMIT);
        assert_eq!(failure.code.as_deref(), Some("ThrottlingException"));
        assert_eq!(
            failure.message,
            "Too many requests, please wait before trying again."
        );
        let response = failure.answer("a-model");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["content-type"], "application/json");
    }

    #[test]
    fn a_stream_error_is_known_by_its_variant_and_ends_the_stream_with_an_event() {
        let error = ResponseStreamError::ModelStreamErrorException(
            ModelStreamErrorException::builder()
                .meta(ErrorMetadata::builder().message("boom").build())
                .build(),
        );
        let failure = Failure::of(&SdkError::service_error(error, ()), stream_error_code);
        assert_eq!(failure.code.as_deref(), Some("ModelStreamErrorException"));
        assert_eq!(failure.fault, Fault::API_ERROR);
        let event = failure.sse_event();
        let data = event
            .strip_prefix(b"event: error\ndata: ")
            .and_then(|rest| rest.strip_suffix(b"\n\n"))
            .expect("one error event");
        assert_eq!(
            serde_json::from_slice::<Value>(data).unwrap(),
            json!({"type": "error", "error": {"type": "api_error", "message": "boom"}})
        );
    }

    #[test]
    fn timeouts_are_504_and_other_failures_500_with_their_causes() {
        let timeouts = [
            SdkError::<InvokeModelError, ()>::timeout_error("slow"),
            SdkError::dispatch_failure(ConnectorError::timeout("connect timed out".into())),
        ];
        for error in timeouts {
            let failure = Failure::of(&error, ProvideErrorMetadata::code);
            assert_eq!(failure.fault, Fault::TIMEOUT, "{error:?}");
            assert_eq!(failure.fault.error_type, "api_error");
        }
        let refused = SdkError::<InvokeModelError, ()>::dispatch_failure(ConnectorError::io(
            "connection refused".into(),
        ));
        let failure = Failure::of(&refused, ProvideErrorMetadata::code);
        assert_eq!(failure.fault, Fault::API_ERROR);
        assert_eq!(
            failure.message,
            "the Bedrock call failed: dispatch failure: io error: connection refused"
        );
    }

    #[test]
    fn error_bodies_have_the_anthropic_shape() {
        let body: Value =
            serde_json::from_str(&error_body("rate_limit_error", "slow down")).unwrap();
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
        );
    }
}
