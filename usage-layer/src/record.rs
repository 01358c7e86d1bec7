//! The record of one request, and the extensions that feed it.
//!
//! Whatever knows a fact about the request puts it in the request's or the response's
//! extensions; the layer reads them when it builds the [`UsageRecord`]:
//!
//! * on the **request**: [`RequestId`] (else one is generated), [`Caller`];
//! * on the **response** (or the request, the response winning): [`Provider`],
//!   [`Region`], [`RequestedModel`], [`Fallback`] — the router knows them once it has routed.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::StatusCode;
use uuid::Uuid;

use crate::anthropic::{BedrockMetrics, BodyUsage, ParseIssue, Usage};

/// The id of a request; the key that makes storing a record idempotent.
///
/// Put it in the request's extensions to choose it (e.g. to match your logs);
/// otherwise the layer generates a time-ordered UUIDv7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub Uuid);

impl RequestId {
    /// A new time-ordered (v7) id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who made the request: put it in the request's extensions after authenticating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The user the access key belongs to.
    pub user_id: Option<Uuid>,
    /// The access key the request came with.
    pub access_key_id: Option<Uuid>,
}

/// The provider that served a request: an open set with `plan` and `bedrock` built in.
///
/// A request nobody labelled is `bedrock` (the original system's rule, kept for
/// compatibility).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Provider(Cow<'static, str>);

impl Provider {
    /// The Anthropic API, on a subscription plan.
    pub const PLAN: Provider = Provider(Cow::Borrowed("plan"));
    /// Amazon Bedrock, pay per token.
    pub const BEDROCK: Provider = Provider(Cow::Borrowed("bedrock"));

    /// Any other provider, by name.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self(name.into())
    }

    /// The provider's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Provider {
    fn default() -> Self {
        Self::BEDROCK
    }
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider's region that served the request (an AWS region for Bedrock); prices
/// are looked up by it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Region(pub String);

/// The model the client asked for (the request body's `model`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestedModel(pub String);

/// The request was served by a fallback provider, and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fallback {
    /// The provider that was tried first.
    pub from: Provider,
    /// Why it was left, e.g. `rate_limited`, `overloaded`, `server_error`, `timeout`.
    pub reason: Cow<'static, str>,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The body was delivered to its end (for a stream: the message was seen to its end).
    Completed,
    /// The client went away (the body or the response future was dropped) first.
    ClientDisconnected,
    /// The upstream failed: the body returned an error, or a stream ended before its message did.
    UpstreamError,
    /// The stream carried an `event: error`.
    StreamError,
    /// The response's status was not a success; the record has the status, no usage.
    ErrorResponse,
    /// The inner service returned an error instead of a response.
    ServiceError,
    /// The body was delivered, but its usage could not be read (see [`UsageRecord::parse_issue`]).
    Unparsed,
}

impl Outcome {
    /// The outcome of a successful response whose body was read to its end.
    ///
    /// A stream must have ended its message (`message_stop`); an `error` event makes it a
    /// [`StreamError`](Self::StreamError), a read problem [`Unparsed`](Self::Unparsed).
    pub fn of_ended_body(body: &BodyUsage, streaming: bool) -> Outcome {
        if body.error_type.is_some() {
            Outcome::StreamError
        } else if body.issue.is_some() {
            Outcome::Unparsed
        } else if streaming && !body.complete {
            Outcome::UpstreamError
        } else {
            Outcome::Completed
        }
    }

    /// A stable snake_case name, for storage and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::ClientDisconnected => "client_disconnected",
            Self::UpstreamError => "upstream_error",
            Self::StreamError => "stream_error",
            Self::ErrorResponse => "error_response",
            Self::ServiceError => "service_error",
            Self::Unparsed => "unparsed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request, as the layer saw it: who, which provider and model, when, and the usage.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageRecord {
    /// The request's id (from [`RequestId`] or generated).
    pub request_id: RequestId,
    /// Who made the request, if known.
    pub caller: Caller,
    /// The provider that served it (default `bedrock`).
    pub provider: Provider,
    /// The provider's region, if someone said (see [`Region`]).
    pub region: Option<String>,
    /// The model the client asked for, if someone said.
    pub requested_model: Option<String>,
    /// The model that served, from the response.
    pub served_model: Option<String>,
    /// Set when a fallback provider served the request.
    pub fallback: Option<Fallback>,
    /// When the request reached the layer.
    pub started_at: DateTime<Utc>,
    /// From the start to the first body byte, if any byte came.
    pub time_to_first_byte: Option<Duration>,
    /// From the start to the end (whichever way it ended).
    pub duration: Duration,
    /// The response status; `None` when there was no response.
    pub status: Option<StatusCode>,
    /// The response was an SSE stream.
    pub streaming: bool,
    /// The usage to bill (Anthropic's counts; Bedrock's metrics for counts it did not report).
    pub usage: Usage,
    /// Bedrock's own counts, when the body carried them.
    pub bedrock_metrics: Option<BedrockMetrics>,
    /// The `error.type` of a stream `error` event or an error body.
    pub error_type: Option<String>,
    /// The message's `stop_reason`, when reported.
    pub stop_reason: Option<String>,
    /// Body bytes that passed the layer.
    pub response_bytes: u64,
    /// How the request ended.
    pub outcome: Outcome,
    /// Why the usage could not be read in full, if it could not.
    pub parse_issue: Option<ParseIssue>,
}

impl UsageRecord {
    /// A record of a request that started at `started_at` and has, so far, nothing else:
    /// provider `bedrock`, no usage, outcome [`Outcome::Completed`]. Set the rest by field.
    pub fn new(request_id: RequestId, started_at: DateTime<Utc>) -> Self {
        Self {
            request_id,
            caller: Caller::default(),
            provider: Provider::default(),
            region: None,
            requested_model: None,
            served_model: None,
            fallback: None,
            started_at,
            time_to_first_byte: None,
            duration: Duration::ZERO,
            status: None,
            streaming: false,
            usage: Usage::default(),
            bedrock_metrics: None,
            error_type: None,
            stop_reason: None,
            response_bytes: 0,
            outcome: Outcome::Completed,
            parse_issue: None,
        }
    }

    /// The model to price by: the one that served if known, else the one asked for.
    pub fn model(&self) -> Option<&str> {
        self.served_model
            .as_deref()
            .or(self.requested_model.as_deref())
    }
}
