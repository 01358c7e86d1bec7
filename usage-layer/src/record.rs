//! The record of one request, and the extensions that feed it.
//!
//! Whatever knows a fact about the request says so in one of three places, whichever
//! suits the service; the layer reads them when it builds the [`UsageRecord`]:
//!
//! * the **request's** extensions, as the layer sees the request: [`RequestId`],
//!   [`Caller`], [`Labels`], [`Provider`], [`Region`], [`RequestedModel`], [`Format`];
//! * a closure the layer calls on the request
//!   ([`UsageLayer::on_request`](crate::UsageLayer::on_request)), which may set any field;
//! * the **response's** extensions: the same types, [`Fallback`], and — on a response
//!   that is no success — the [`Outcome`] the service knows better (its own 504:
//!   [`Outcome::Timeout`]). The response wins:
//!   a router knows the provider once it has routed, and an authentication layer inside
//!   the usage layer can label its response with the [`Caller`] it found.
//!
//! The request id also comes from a header (`x-request-id` by default, as tower-http's
//! `SetRequestId` and `PropagateRequestId` set it), on the request or on the response, so
//! the record, the logs and the client share one id. Nothing is invented: a record
//! nobody labelled has no provider and no caller (and the layer warns, once).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::StatusCode;
use uuid::Uuid;

use crate::anthropic::{BedrockMetrics, BodyUsage, ParseIssue, Usage};
pub use crate::format::Format;

/// The id of a request; the key that makes storing a record idempotent.
///
/// Any non-empty string of at most [`RequestId::MAX_LEN`] visible ASCII characters —
/// a UUID, or whatever a `x-request-id` header carries. Put it in the request's
/// extensions (or send the header) to choose it; otherwise the layer generates a
/// time-ordered UUIDv7.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(Arc<str>);

#[cfg(feature = "serde")]
impl serde::Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl RequestId {
    /// The longest id taken from a header or a string; a longer one is refused.
    pub const MAX_LEN: usize = 200;

    /// A new time-ordered (v7) UUID.
    pub fn new() -> Self {
        Self::from(Uuid::now_v7())
    }

    /// An id from a string, if it is a valid one (non-empty, at most
    /// [`MAX_LEN`](Self::MAX_LEN) visible ASCII characters).
    pub fn parse(id: &str) -> Option<Self> {
        let valid = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id.bytes().all(|byte| byte.is_ascii_graphic());
        valid.then(|| Self(Arc::from(id)))
    }

    /// An id from a header value, if it is a valid one (see [`parse`](Self::parse)).
    pub fn from_header(value: &http::HeaderValue) -> Option<Self> {
        Self::parse(value.to_str().ok()?)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a UUID, when it is one.
    pub fn as_uuid(&self) -> Option<Uuid> {
        Uuid::try_parse(&self.0).ok()
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for RequestId {
    fn from(id: Uuid) -> Self {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        Self(Arc::from(&*id.hyphenated().encode_lower(&mut text)))
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made the request: a user and the credential they used, by whatever ids the
/// service has (UUIDs, user names, team or API-key names).
///
/// Put it in the request's extensions after authenticating — or, when authentication
/// runs inside the usage layer, in the response's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Caller {
    /// The user (or team, or project) the request is billed to.
    pub user_id: Option<String>,
    /// The access key (or API-key name) the request came with.
    pub access_key_id: Option<String>,
}

impl Caller {
    /// The longest caller id kept as given, in bytes. Stores index caller ids (Postgres
    /// refuses an index entry over ~2.7 kB, and the whole batch with it), so a longer one
    /// is cut to this length by [`UsageRecord::bound_ids`].
    pub const MAX_ID_LEN: usize = 256;

    /// A caller known by its user id.
    pub fn user(id: impl fmt::Display) -> Self {
        Self {
            user_id: Some(id.to_string()),
            access_key_id: None,
        }
    }

    /// A caller known only by the access key it used.
    pub fn access_key(id: impl fmt::Display) -> Self {
        Self {
            user_id: None,
            access_key_id: Some(id.to_string()),
        }
    }

    /// The same caller, with the access key it used.
    pub fn with_access_key(mut self, id: impl fmt::Display) -> Self {
        self.access_key_id = Some(id.to_string());
        self
    }

    /// `true` when neither a user nor a key is known.
    pub fn is_unknown(&self) -> bool {
        self.user_id.is_none() && self.access_key_id.is_none()
    }
}

/// Free-form labels of a request (`team=infra`, `feature=autocomplete`), kept with the
/// record by every sink that can.
///
/// Labels from the request, the [`on_request`](crate::UsageLayer::on_request) closure
/// and the response are merged, a later value replacing an earlier one of the same key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(transparent))]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, replacing any value it had.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The labels, in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `true` when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `other`'s labels, replacing the values of keys both have.
    pub fn merge(&mut self, other: &Labels) {
        for (key, value) in &other.0 {
            self.0.insert(key.clone(), value.clone());
        }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        )
    }
}

/// The provider that served a request: an open set, by name.
///
/// A record carries it only when someone said which provider served
/// ([`UsageRecord::provider`] is an `Option`): the layer never guesses.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(transparent))]
pub struct Provider(Cow<'static, str>);

impl Provider {
    /// The longest provider name kept as given, in bytes (the sea-orm store's column is a
    /// `VARCHAR(32)`; see [`UsageRecord::bound_ids`]).
    pub const MAX_LEN: usize = 32;

    /// The Anthropic API, on a subscription plan.
    pub const PLAN: Provider = Provider(Cow::Borrowed("plan"));
    /// Amazon Bedrock, pay per token.
    pub const BEDROCK: Provider = Provider(Cow::Borrowed("bedrock"));
    /// The OpenAI API, pay per token.
    pub const OPENAI: Provider = Provider(Cow::Borrowed("openai"));
    /// The providers with a constant, whose names come back as these constants.
    pub const BUILT_IN: [Provider; 3] = [Self::PLAN, Self::BEDROCK, Self::OPENAI];

    /// A provider by name (a built-in name gives its constant, which borrows it).
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        Self::BUILT_IN
            .into_iter()
            .find(|known| known.as_str() == name)
            .unwrap_or(Self(name))
    }

    /// The provider's name.
    pub fn as_str(&self) -> &str {
        &self.0
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
    /// The service gave up waiting for its upstream and answered itself (a 504): set by
    /// the service, as an `Outcome` in the response's extensions (the layer cannot tell
    /// its own 504 from an upstream's).
    Timeout,
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

    /// Every outcome, in the order of their declaration.
    pub const ALL: [Outcome; 8] = [
        Self::Completed,
        Self::ClientDisconnected,
        Self::UpstreamError,
        Self::StreamError,
        Self::ErrorResponse,
        Self::ServiceError,
        Self::Unparsed,
        Self::Timeout,
    ];

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
            Self::Timeout => "timeout",
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request, as the layer saw it: who, which provider and model, when, and the usage.
///
/// With feature `serde` it serialises as a flat JSON object: ids, provider and labels as
/// strings, `started_at` in RFC 3339, durations as `time_to_first_byte_ms` and
/// `duration_ms` (milliseconds, fractional), `status` as a number.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct UsageRecord {
    /// The request's id (from [`RequestId`], the request-id header, or generated).
    pub request_id: RequestId,
    /// Who made the request, as far as anyone said.
    pub caller: Caller,
    /// The provider that served it, if someone said. A store may apply its own rule to
    /// a record without one (the sea-orm store's is `bedrock`, the original system's).
    pub provider: Option<Provider>,
    /// The provider's region, if someone said (see [`Region`]).
    pub region: Option<String>,
    /// The model the client asked for, if someone said.
    pub requested_model: Option<String>,
    /// The model that served, from the response.
    pub served_model: Option<String>,
    /// Set when a fallback provider served the request.
    pub fallback: Option<Fallback>,
    /// Free-form labels (see [`Labels`]).
    pub labels: Labels,
    /// The API format the body was read as, if it was recognised (or given).
    pub format: Option<Format>,
    /// When the request reached the layer.
    pub started_at: DateTime<Utc>,
    /// From the start to the first body byte, if any byte came.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "time_to_first_byte_ms",
            serialize_with = "serialize::millis_opt"
        )
    )]
    pub time_to_first_byte: Option<Duration>,
    /// From the start to the end (whichever way it ended).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "duration_ms", serialize_with = "serialize::millis")
    )]
    pub duration: Duration,
    /// The response status; `None` when there was no response.
    #[cfg_attr(feature = "serde", serde(serialize_with = "serialize::status"))]
    pub status: Option<StatusCode>,
    /// The response was an SSE stream.
    pub streaming: bool,
    /// The usage to bill, in Anthropic's meaning of each count (see [`Usage`]);
    /// Bedrock's metrics fill counts the body did not report.
    pub usage: Usage,
    /// Bedrock's own counts, when the body carried them.
    pub bedrock_metrics: Option<BedrockMetrics>,
    /// The error type of a stream error event or an error body.
    pub error_type: Option<String>,
    /// Why the message stopped (`stop_reason`, `finish_reason`, …), when reported.
    pub stop_reason: Option<String>,
    /// Body bytes that passed the layer (as sent: compressed, if the body was).
    pub response_bytes: u64,
    /// How the request ended.
    pub outcome: Outcome,
    /// Why the usage could not be read in full, if it could not.
    pub parse_issue: Option<ParseIssue>,
}

impl UsageRecord {
    /// A record of a request that started at `started_at` and has, so far, nothing else:
    /// no provider, no caller, no usage, outcome [`Outcome::Completed`]. Set the rest by field.
    pub fn new(request_id: RequestId, started_at: DateTime<Utc>) -> Self {
        Self {
            request_id,
            caller: Caller::default(),
            provider: None,
            region: None,
            requested_model: None,
            served_model: None,
            fallback: None,
            labels: Labels::default(),
            format: None,
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

    /// Cuts the ids that stores index to the lengths they can index: caller ids to
    /// [`Caller::MAX_ID_LEN`] bytes, the provider (and the fallback's) to
    /// [`Provider::MAX_LEN`]. A cut id is its
    /// first bytes, `~` and 16 hex digits of a hash of the whole id, so different long ids
    /// stay different and the same id is always cut the same way. Returns whether anything
    /// was cut.
    ///
    /// The layer does this to every record (and counts the cuts in its
    /// [`Diagnostics`](crate::diagnostics::Diagnostics)); the stores do it again for the
    /// records that reach them another way.
    pub fn bound_ids(&mut self) -> bool {
        let mut cut = false;
        for id in [&mut self.caller.user_id, &mut self.caller.access_key_id]
            .into_iter()
            .flatten()
        {
            if let Cow::Owned(bounded) = bounded_id(id, Caller::MAX_ID_LEN) {
                *id = bounded;
                cut = true;
            }
        }
        let fallback = self.fallback.as_mut().map(|fallback| &mut fallback.from);
        for provider in [self.provider.as_mut(), fallback].into_iter().flatten() {
            if let Cow::Owned(bounded) = bounded_id(provider.as_str(), Provider::MAX_LEN) {
                *provider = Provider::new(bounded);
                cut = true;
            }
        }
        cut
    }
}

/// `id` when it has at most `max` bytes; else its first bytes (on a character boundary),
/// `~` and the first 16 hex digits of its UUIDv5 (SHA-1), `max` bytes at most in all.
pub(crate) fn bounded_id(id: &str, max: usize) -> Cow<'_, str> {
    const HASH_LEN: usize = 16;
    if id.len() <= max {
        return Cow::Borrowed(id);
    }
    let mut keep = max.saturating_sub(HASH_LEN + 1);
    while !id.is_char_boundary(keep) {
        keep -= 1;
    }
    let hash = Uuid::new_v5(&Uuid::NAMESPACE_OID, id.as_bytes())
        .simple()
        .to_string();
    Cow::Owned(format!("{}~{}", &id[..keep], &hash[..HASH_LEN]))
}

/// How the fields without a `Serialize` of their own are written.
#[cfg(feature = "serde")]
mod serialize {
    use std::time::Duration;

    use http::StatusCode;
    use serde::Serializer;

    pub(super) fn millis<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_secs_f64() * 1000.0)
    }

    pub(super) fn millis_opt<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => millis(duration, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn status<S: Serializer>(
        status: &Option<StatusCode>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match status {
            Some(status) => serializer.serialize_u16(status.as_u16()),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;

    #[test]
    fn a_record_serialises_flat_with_its_units_in_the_names() {
        let started_at = DateTime::from_timestamp(1_764_600_000, 0).unwrap();
        let mut record = UsageRecord::new(RequestId::parse("req-1").unwrap(), started_at);
        record.provider = Some(Provider::OPENAI);
        record.caller = Caller::user("team-a");
        record.labels.insert("feature", "chat");
        record.format = Some(Format::OpenAiChat);
        record.status = Some(StatusCode::OK);
        record.duration = Duration::from_micros(1500);
        record.usage.input_tokens = Some(12);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["request_id"], "req-1");
        assert_eq!(json["provider"], "openai");
        assert_eq!(json["caller"]["user_id"], "team-a");
        assert_eq!(json["labels"]["feature"], "chat");
        assert_eq!(json["format"], "openai_chat");
        assert_eq!(json["started_at"], "2025-12-01T14:40:00Z");
        assert_eq!(json["status"], 200);
        assert_eq!(json["duration_ms"], 1.5);
        assert_eq!(json["time_to_first_byte_ms"], serde_json::Value::Null);
        assert_eq!(json["outcome"], "completed");
        assert_eq!(json["usage"]["input_tokens"], 12);
        assert_eq!(json["usage"]["output_tokens"], serde_json::Value::Null);
    }
}

#[cfg(test)]
mod bound_tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_cut_stays_on_a_character_boundary() {
        // 'é' is two bytes: 200 of them straddle every odd cut.
        let id = "é".repeat(200);
        let cut = bounded_id(&id, Caller::MAX_ID_LEN);
        assert!(cut.len() <= Caller::MAX_ID_LEN);
        assert!(cut.starts_with("éé"));
        assert_eq!(bounded_id("ada", Caller::MAX_ID_LEN), Cow::Borrowed("ada"));
    }

    proptest! {
        /// For any id: a short one is kept as it is; a long one becomes at most `max`
        /// bytes, starts with the id's own first bytes, and is cut again to itself.
        #[test]
        fn any_id_is_bounded(id in "\\PC{0,400}", max in 17usize..300) {
            let cut = bounded_id(&id, max);
            if id.len() <= max {
                prop_assert_eq!(&*cut, &*id);
            } else {
                prop_assert!(cut.len() <= max);
                let (head, _hash) = cut.rsplit_once('~').unwrap();
                prop_assert!(id.starts_with(head));
                prop_assert_eq!(&*bounded_id(&cut, max), &*cut);
            }
        }
    }
}
