//! Usage: the token counts a response reports, and how they accumulate.
//!
//! The counts and their meaning are Anthropic's, whatever the [`Format`] of the body;
//! OpenAI's are translated (see [`Usage`]).
//!
//! The accumulation rule is the official SDK's: `message_start.message.usage` is the
//! starting point; every field a `message_delta.usage` carries (and is not `null`)
//! overwrites the current value — the values are cumulative, never added up — and
//! fields it does not carry keep their `message_start` value. A count nobody reported
//! stays `None`, which is not the same as a reported `0`.
//!
//! [`JsonReader`] reads the same [`BodyUsage`] from a non-streaming JSON response
//! (a `"type": "message"` body, or an `"type": "error"` body).
//!
//! ```
//! use usage_layer::anthropic::JsonReader;
//!
//! let mut reader = JsonReader::new(16 * 1024 * 1024);
//! reader.feed(br#"{"type":"message","model":"claude-sonnet-4-5","usage":"#);
//! reader.feed(br#"{"input_tokens":12,"output_tokens":40,"cache_read_input_tokens":0}}"#);
//! let body = reader.finish();
//! assert_eq!(body.usage.input_tokens, Some(12));
//! assert_eq!(body.usage.output_tokens, Some(40));
//! assert_eq!(body.usage.cache_read_input_tokens, Some(0));
//! assert_eq!(body.usage.cache_creation_input_tokens, None); // not reported
//! assert_eq!(body.model.as_deref(), Some("claude-sonnet-4-5"));
//! assert!(body.complete);
//! ```

use std::borrow::Cow;

use serde::Deserialize;

use crate::buffer::append_bounded;
use crate::format::Format;

/// Token counts of one message, in Anthropic's meaning; `None` means "not reported".
///
/// OpenAI bodies are translated to the same meaning: `input_tokens` is the *uncached*
/// input (OpenAI's `prompt_tokens` / `input_tokens` minus `cached_tokens`),
/// `cache_read_input_tokens` is `cached_tokens`, `cache_creation_input_tokens` is not
/// reported (OpenAI does not bill cache writes), `output_tokens` is `completion_tokens`
/// / `output_tokens` (reasoning included, as billed), and `reasoning_tokens` tells how
/// many of those were reasoning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Usage {
    /// `input_tokens`: uncached input tokens.
    pub input_tokens: Option<u64>,
    /// `output_tokens`.
    pub output_tokens: Option<u64>,
    /// `cache_creation_input_tokens`: input tokens written to the prompt cache.
    pub cache_creation_input_tokens: Option<u64>,
    /// `cache_read_input_tokens`: input tokens read from the prompt cache.
    pub cache_read_input_tokens: Option<u64>,
    /// `cache_creation.ephemeral_5m_input_tokens`: cache writes with a 5-minute TTL.
    pub ephemeral_5m_input_tokens: Option<u64>,
    /// `cache_creation.ephemeral_1h_input_tokens`: cache writes with a 1-hour TTL.
    pub ephemeral_1h_input_tokens: Option<u64>,
    /// `server_tool_use.web_search_requests`.
    pub web_search_requests: Option<u64>,
    /// `server_tool_use.web_fetch_requests`.
    pub web_fetch_requests: Option<u64>,
    /// OpenAI's `reasoning_tokens`: the part of `output_tokens` spent on reasoning.
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// Overwrites every field that `newer` reports; keeps the others (the SDK's rule).
    pub fn overwrite_with(&mut self, newer: &Usage) {
        fn take(field: &mut Option<u64>, newer: Option<u64>) {
            if newer.is_some() {
                *field = newer;
            }
        }
        take(&mut self.input_tokens, newer.input_tokens);
        take(&mut self.output_tokens, newer.output_tokens);
        take(
            &mut self.cache_creation_input_tokens,
            newer.cache_creation_input_tokens,
        );
        take(
            &mut self.cache_read_input_tokens,
            newer.cache_read_input_tokens,
        );
        take(
            &mut self.ephemeral_5m_input_tokens,
            newer.ephemeral_5m_input_tokens,
        );
        take(
            &mut self.ephemeral_1h_input_tokens,
            newer.ephemeral_1h_input_tokens,
        );
        take(&mut self.web_search_requests, newer.web_search_requests);
        take(&mut self.web_fetch_requests, newer.web_fetch_requests);
        take(&mut self.reasoning_tokens, newer.reasoning_tokens);
    }

    /// The four billed counts by a short name — `input`, `output`, `cache_read`,
    /// `cache_write` — as metrics label them; `None`: not reported.
    pub fn billed_counts(&self) -> [(&'static str, Option<u64>); 4] {
        [
            ("input", self.input_tokens),
            ("output", self.output_tokens),
            ("cache_read", self.cache_read_input_tokens),
            ("cache_write", self.cache_creation_input_tokens),
        ]
    }

    /// `true` when no field was reported at all.
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
}

/// Amazon Bedrock's own count, from an `amazon-bedrock-invocationMetrics` object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[serde(rename_all = "camelCase")]
pub struct BedrockMetrics {
    /// `inputTokenCount`.
    pub input_token_count: Option<u64>,
    /// `outputTokenCount`.
    pub output_token_count: Option<u64>,
    /// `cacheReadInputTokenCount`.
    pub cache_read_input_token_count: Option<u64>,
    /// `cacheWriteInputTokenCount`.
    pub cache_write_input_token_count: Option<u64>,
    /// `invocationLatency`, in milliseconds.
    pub invocation_latency: Option<u64>,
    /// `firstByteLatency`, in milliseconds.
    pub first_byte_latency: Option<u64>,
}

/// Why a body's usage could not be read in full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum ParseIssue {
    /// The body had a `content-encoding` this build does not decode (without the
    /// `decompress` feature: any but `identity`); it was not read.
    ContentEncoded,
    /// The body's `content-type` is neither `text/event-stream` nor JSON; it was not read.
    UnsupportedContentType,
    /// An event (or a JSON body) was larger than the configured cap and was dropped.
    OverCap,
    /// An event the usage depends on (or a JSON body) was not valid JSON of the expected shape.
    Malformed,
    /// A frame's data was not contiguous enough to be observed without copying.
    UnobservableFrame,
    /// The compressed body was corrupt or ended inside its compressed stream; what was
    /// decoded before that was read.
    Undecodable,
}

/// Counters a reader keeps while it reads one body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// SSE events dispatched (events with at least one `data` line).
    pub events: u64,
    /// Events (or JSON bodies) dropped because they exceeded the cap.
    pub over_cap: u64,
    /// Events (or JSON bodies) that were read but did not parse.
    pub malformed: u64,
}

/// What one response body told about its message: usage, served model, errors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BodyUsage {
    /// The accumulated token counts.
    pub usage: Usage,
    /// The model that served the request (`message_start.message.model` or the body's `model`).
    pub model: Option<String>,
    /// The message id (`msg_…`).
    pub message_id: Option<String>,
    /// `stop_reason`, when reported.
    pub stop_reason: Option<String>,
    /// The `error.type` of an `error` event or an error body.
    pub error_type: Option<String>,
    /// Bedrock's own counts, when the body carried them.
    pub bedrock_metrics: Option<BedrockMetrics>,
    /// The message was seen to its end (`message_stop`, or a whole `message` body).
    pub complete: bool,
    /// Counters of the read.
    pub stats: ReadStats,
    /// The first problem met while reading, if any.
    pub issue: Option<ParseIssue>,
    /// The format the body was read as: the one given, else the first one recognised.
    pub format: Option<Format>,
}

impl BodyUsage {
    /// The usage to bill: Anthropic's counts, with counts it did not report taken from
    /// Bedrock's invocation metrics when those are present.
    pub fn billed_usage(&self) -> Usage {
        let mut usage = self.usage;
        if let Some(metrics) = &self.bedrock_metrics {
            let fill = |field: &mut Option<u64>, from: Option<u64>| {
                if field.is_none() {
                    *field = from;
                }
            };
            fill(&mut usage.input_tokens, metrics.input_token_count);
            fill(&mut usage.output_tokens, metrics.output_token_count);
            fill(
                &mut usage.cache_read_input_tokens,
                metrics.cache_read_input_token_count,
            );
            fill(
                &mut usage.cache_creation_input_tokens,
                metrics.cache_write_input_token_count,
            );
        }
        usage
    }

    pub(crate) fn note_issue(&mut self, issue: ParseIssue) {
        self.issue.get_or_insert(issue);
        match issue {
            ParseIssue::OverCap => self.stats.over_cap += 1,
            ParseIssue::Malformed => self.stats.malformed += 1,
            _ => {}
        }
    }
}

/// The kinds of event (or body) the usage depends on; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// Anthropic `message_start`.
    MessageStart,
    /// Anthropic `message_delta`.
    MessageDelta,
    /// Anthropic `message_stop`: read for Bedrock's `amazon-bedrock-invocationMetrics`,
    /// and to know the message ended.
    MessageStop,
    /// A stream's error event (Anthropic's or the Responses API's), or an error body.
    Error,
    /// A whole non-streaming Anthropic message body.
    Message,
    /// Responses `response.created` / `response.in_progress`: the model, before any usage.
    ResponseStarted,
    /// Responses `response.completed` / `response.incomplete` / `response.failed`, or a
    /// whole non-streaming `response` body: the usage.
    ResponseEnded,
    /// A Chat Completions stream chunk (`chat.completion.chunk`).
    ChatChunk,
    /// A whole non-streaming `chat.completion` body.
    ChatCompletion,
    Other,
}

impl EventKind {
    /// The kind an SSE event name or a JSON `"type"` names.
    ///
    /// Inline, and a byte's test for the names nearly every event has
    /// (`content_block_delta`, `ping`): every name we read starts with `m`, `e` or `r`,
    /// and only those go on to be compared, out of line.
    #[inline]
    pub(crate) fn from_name(name: &[u8]) -> Self {
        match name.first() {
            Some(b'm' | b'e' | b'r') => Self::from_read_name(name),
            _ => Self::Other,
        }
    }

    #[inline(never)]
    fn from_read_name(name: &[u8]) -> Self {
        match name {
            b"message_start" => Self::MessageStart,
            b"message_delta" => Self::MessageDelta,
            b"message_stop" => Self::MessageStop,
            b"error" => Self::Error,
            b"message" => Self::Message,
            _ => Self::from_response_name(name),
        }
    }

    /// The Responses API's names (`response.completed`, …).
    fn from_response_name(name: &[u8]) -> Self {
        match name.strip_prefix(b"response.") {
            Some(b"created" | b"in_progress") => Self::ResponseStarted,
            Some(b"completed" | b"incomplete" | b"failed") => Self::ResponseEnded,
            _ => Self::Other,
        }
    }

    /// The kind a JSON `"object"` names (OpenAI's bodies and chunks).
    fn from_object(object: &str) -> Self {
        match object {
            "chat.completion.chunk" => Self::ChatChunk,
            "chat.completion" => Self::ChatCompletion,
            "response" => Self::ResponseEnded,
            _ => Self::Other,
        }
    }

    /// Whether events of this kind are buffered and parsed.
    pub(crate) fn is_read(self) -> bool {
        self != Self::Other
    }

    /// The format that uses this kind, where only one does.
    fn format(self) -> Option<Format> {
        match self {
            Self::MessageStart | Self::MessageDelta | Self::MessageStop | Self::Message => {
                Some(Format::Anthropic)
            }
            Self::ResponseStarted | Self::ResponseEnded => Some(Format::OpenAiResponses),
            Self::ChatChunk | Self::ChatCompletion => Some(Format::OpenAiChat),
            Self::Error | Self::Other => None,
        }
    }
}

/// A `usage` object of any format: Anthropic's fields and OpenAI's.
#[derive(Deserialize)]
struct UsageJson {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation: Option<CacheCreationJson>,
    server_tool_use: Option<ServerToolUseJson>,
    // OpenAI: Chat Completions names, then Responses names.
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<TokenDetailsJson>,
    completion_tokens_details: Option<TokenDetailsJson>,
    input_tokens_details: Option<TokenDetailsJson>,
    output_tokens_details: Option<TokenDetailsJson>,
}

#[derive(Deserialize)]
struct CacheCreationJson {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ServerToolUseJson {
    web_search_requests: Option<u64>,
    web_fetch_requests: Option<u64>,
}

#[derive(Deserialize)]
struct TokenDetailsJson {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

impl UsageJson {
    /// The counts in Anthropic's meaning, read as `format` reports them.
    fn into_usage(self, format: Format) -> Usage {
        if format.is_openai() {
            return self.openai_usage();
        }
        let cache = self.cache_creation;
        let tools = self.server_tool_use;
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
            ephemeral_5m_input_tokens: cache.as_ref().and_then(|c| c.ephemeral_5m_input_tokens),
            ephemeral_1h_input_tokens: cache.as_ref().and_then(|c| c.ephemeral_1h_input_tokens),
            web_search_requests: tools.as_ref().and_then(|t| t.web_search_requests),
            web_fetch_requests: tools.as_ref().and_then(|t| t.web_fetch_requests),
            reasoning_tokens: None,
        }
    }

    /// OpenAI's input count includes the cached tokens; Anthropic's does not.
    fn openai_usage(self) -> Usage {
        let prompt = self.prompt_tokens.or(self.input_tokens);
        let input_details = self.prompt_tokens_details.or(self.input_tokens_details);
        let output_details = self
            .completion_tokens_details
            .or(self.output_tokens_details);
        let cached = input_details.and_then(|details| details.cached_tokens);
        Usage {
            input_tokens: prompt.map(|prompt| prompt.saturating_sub(cached.unwrap_or(0))),
            output_tokens: self.completion_tokens.or(self.output_tokens),
            cache_read_input_tokens: cached,
            reasoning_tokens: output_details.and_then(|details| details.reasoning_tokens),
            ..Usage::default()
        }
    }
}

/// The fields of a message: `message_start.message`, or a whole non-streaming body.
#[derive(Deserialize)]
struct MessageJson<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
    usage: Option<UsageJson>,
}

#[derive(Deserialize)]
struct DeltaJson<'a> {
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

/// Anthropic's `error` (`type`), OpenAI's (`type`, `code`) and a failed response's (`code`).
#[derive(Deserialize)]
struct ErrorJson<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

/// A Responses API `response` object: a whole body, or inside a `response.*` event.
#[derive(Deserialize)]
struct ResponseJson<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    usage: Option<UsageJson>,
    #[serde(borrow)]
    error: Option<ErrorJson<'a>>,
    #[serde(borrow)]
    incomplete_details: Option<IncompleteJson<'a>>,
}

#[derive(Deserialize)]
struct IncompleteJson<'a> {
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChoiceJson<'a> {
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

/// Any event's data or any body, of any format; which fields matter depends on the kind.
#[derive(Deserialize)]
struct EventJson<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    object: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<MessageJson<'a>>,
    usage: Option<UsageJson>,
    #[serde(borrow)]
    delta: Option<DeltaJson<'a>>,
    #[serde(borrow)]
    error: Option<ErrorJson<'a>>,
    #[serde(rename = "amazon-bedrock-invocationMetrics")]
    bedrock_metrics: Option<BedrockMetrics>,
    #[serde(borrow)]
    response: Option<ResponseJson<'a>>,
    #[serde(borrow)]
    choices: Option<Vec<ChoiceJson<'a>>>,
    // A non-streaming body has the message (or response) fields at the top level.
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    incomplete_details: Option<IncompleteJson<'a>>,
    /// The Responses API's stream `error` event has its code at the top level.
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

impl<'a> EventJson<'a> {
    /// What the event is: its `type`, else its `object`, else the format's own shape
    /// (a chat chunk need not say `object`), else the SSE event name, else an error
    /// object if it has one.
    fn kind(&self, format: Option<Format>, hint: Option<EventKind>, whole_body: bool) -> EventKind {
        let named = self
            .kind
            .as_deref()
            .map(|name| EventKind::from_name(name.as_bytes()))
            .or_else(|| self.object.as_deref().map(EventKind::from_object));
        match named {
            Some(kind) if kind.is_read() => return kind,
            Some(_) => return EventKind::Other,
            None => {}
        }
        if self.error.is_some() {
            return EventKind::Error;
        }
        match (format, whole_body) {
            (Some(Format::OpenAiChat), false) => EventKind::ChatChunk,
            (Some(Format::OpenAiChat), true) => EventKind::ChatCompletion,
            (Some(Format::OpenAiResponses), true) => EventKind::ResponseEnded,
            _ => hint.unwrap_or(EventKind::Other),
        }
    }

    /// The whole non-streaming `response` body as a [`ResponseJson`].
    fn into_response(self) -> ResponseJson<'a> {
        ResponseJson {
            id: self.id,
            model: self.model,
            status: self.status,
            usage: self.usage,
            error: self.error,
            incomplete_details: self.incomplete_details,
        }
    }
}

fn set_text(field: &mut Option<String>, value: Option<Cow<'_, str>>) {
    if let Some(value) = value {
        *field = Some(value.into_owned());
    }
}

impl BodyUsage {
    /// Applies one event's data (or, with `whole_body`, a whole JSON body). `hint` is the
    /// SSE event name's kind; the JSON `"type"` (or `"object"`) wins when present, as it
    /// does in the SDKs.
    pub(crate) fn apply_json(
        &mut self,
        json: &[u8],
        hint: Option<EventKind>,
        whole_body: bool,
    ) -> Result<(), serde_json::Error> {
        let event: EventJson<'_> = serde_json::from_slice(json)?;
        let kind = event.kind(self.format, hint, whole_body);
        if self.format.is_none() {
            self.format = kind.format();
        }
        let format = self.format.unwrap_or(Format::Anthropic);
        if let Some(metrics) = event.bedrock_metrics {
            self.bedrock_metrics = Some(metrics);
        }
        match kind {
            EventKind::MessageStart => {
                if let Some(message) = event.message {
                    self.apply_message(message, format);
                }
            }
            EventKind::MessageDelta => {
                if let Some(usage) = event.usage {
                    self.usage.overwrite_with(&usage.into_usage(format));
                }
                if let Some(delta) = event.delta {
                    set_text(&mut self.stop_reason, delta.stop_reason);
                }
            }
            EventKind::MessageStop => self.complete = true,
            EventKind::Error => {
                let error = event.error.map(|error| error.kind.or(error.code));
                let kind = error.flatten().or(event.code);
                self.error_type = Some(kind.map_or_else(|| "error".to_owned(), Cow::into_owned));
            }
            EventKind::Message => {
                self.apply_message(
                    MessageJson {
                        id: event.id,
                        model: event.model,
                        stop_reason: event.stop_reason,
                        usage: event.usage,
                    },
                    format,
                );
                self.complete = true;
            }
            EventKind::ResponseStarted => {
                if let Some(response) = event.response {
                    set_text(&mut self.model, response.model);
                    set_text(&mut self.message_id, response.id);
                }
            }
            EventKind::ResponseEnded => {
                let response = match event.response {
                    Some(response) => response,
                    None if whole_body => event.into_response(),
                    None => return Ok(()),
                };
                self.apply_response(response, format);
            }
            EventKind::ChatChunk | EventKind::ChatCompletion => {
                set_text(&mut self.model, event.model);
                set_text(&mut self.message_id, event.id);
                if let Some(usage) = event.usage {
                    self.usage = usage.into_usage(format);
                }
                let finish = event.choices.into_iter().flatten();
                if let Some(reason) = finish.filter_map(|choice| choice.finish_reason).next_back() {
                    self.stop_reason = Some(reason.into_owned());
                }
                if kind == EventKind::ChatCompletion {
                    self.complete = true;
                }
            }
            EventKind::Other => {}
        }
        Ok(())
    }

    fn apply_message(&mut self, message: MessageJson<'_>, format: Format) {
        if let Some(usage) = message.usage {
            self.usage = usage.into_usage(format);
        }
        set_text(&mut self.model, message.model);
        set_text(&mut self.message_id, message.id);
        set_text(&mut self.stop_reason, message.stop_reason);
    }

    /// A response that has ended, whichever way: its usage is final.
    fn apply_response(&mut self, response: ResponseJson<'_>, format: Format) {
        if let Some(usage) = response.usage {
            self.usage = usage.into_usage(format);
        }
        set_text(&mut self.model, response.model);
        set_text(&mut self.message_id, response.id);
        let incomplete = response
            .incomplete_details
            .and_then(|details| details.reason);
        set_text(&mut self.stop_reason, incomplete.or(response.status));
        if let Some(error) = response.error {
            let kind = error.code.or(error.kind);
            self.error_type = Some(kind.map_or_else(|| "error".to_owned(), Cow::into_owned));
        }
        self.complete = true;
    }

    /// The end of a Chat Completions stream (`data: [DONE]`).
    pub(crate) fn chat_done(&mut self) {
        self.format.get_or_insert(Format::OpenAiChat);
        self.complete = true;
    }
}

/// The default cap on a non-streaming JSON body kept for parsing: 16 MiB.
pub const DEFAULT_MAX_JSON_BYTES: usize = 16 << 20;

/// Reads usage from a non-streaming JSON body, fed in pieces, with a bounded buffer.
///
/// A body larger than the cap is not kept (memory stays bounded); the result then
/// carries [`ParseIssue::OverCap`].
#[derive(Debug)]
pub struct JsonReader {
    buf: Vec<u8>,
    cap: usize,
    over_cap: bool,
    format: Option<Format>,
}

impl JsonReader {
    /// A reader that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap,
            over_cap: false,
            format: None,
        }
    }

    /// Reads the body as `format` instead of recognising its format from its content.
    pub fn with_format(mut self, format: Option<Format>) -> Self {
        self.format = format;
        self
    }

    /// Reserves room for a body of `len` bytes up front (from `content-length`), if it fits the cap.
    pub fn expect_len(&mut self, len: u64) {
        if let Ok(len) = usize::try_from(len)
            && len <= self.cap
        {
            self.buf.reserve_exact(len.saturating_sub(self.buf.len()));
        }
    }

    /// Adds the next piece of the body.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.over_cap && !append_bounded(&mut self.buf, bytes, self.cap) {
            self.over_cap = true;
            self.buf = Vec::new();
        }
    }

    /// Parses what was fed. An empty body reports nothing and is no error.
    pub fn finish(self) -> BodyUsage {
        let mut body = BodyUsage {
            format: self.format,
            ..BodyUsage::default()
        };
        if self.over_cap {
            body.note_issue(ParseIssue::OverCap);
        } else if !self.buf.is_empty() && body.apply_json(&self.buf, None, true).is_err() {
            body.note_issue(ParseIssue::Malformed);
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> BodyUsage {
        let mut reader = JsonReader::new(1 << 20);
        reader.feed(json.as_bytes());
        reader.finish()
    }

    #[test]
    fn delta_overwrites_present_fields_and_keeps_absent_ones() {
        let mut body = BodyUsage::default();
        body.apply_json(
            br#"{"type":"message_start","message":{"model":"m","usage":{"input_tokens":10,"cache_read_input_tokens":7,"output_tokens":1}}}"#,
            None,
            false,
        )
        .unwrap();
        body.apply_json(
            br#"{"type":"message_delta","usage":{"output_tokens":5,"input_tokens":null}}"#,
            None,
            false,
        )
        .unwrap();
        body.apply_json(
            br#"{"type":"message_delta","usage":{"output_tokens":9}}"#,
            None,
            false,
        )
        .unwrap();
        assert_eq!(body.usage.input_tokens, Some(10));
        assert_eq!(body.usage.cache_read_input_tokens, Some(7));
        assert_eq!(body.usage.output_tokens, Some(9), "cumulative, never added");
        assert_eq!(body.usage.cache_creation_input_tokens, None);
    }

    #[test]
    fn null_usage_changes_nothing() {
        let mut body = BodyUsage::default();
        body.apply_json(
            br#"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}"#,
            None,
            false,
        )
        .unwrap();
        body.apply_json(br#"{"type":"message_delta","usage":null}"#, None, false)
            .unwrap();
        assert_eq!(body.usage.input_tokens, Some(3));
        assert_eq!(body.usage.output_tokens, Some(1));
    }

    #[test]
    fn cache_breakdown_and_server_tools_are_kept() {
        let body = read(
            r#"{"type":"message","usage":{"input_tokens":1,"output_tokens":2,
                "cache_creation":{"ephemeral_5m_input_tokens":30,"ephemeral_1h_input_tokens":40},
                "server_tool_use":{"web_search_requests":3}}}"#,
        );
        assert_eq!(body.usage.ephemeral_5m_input_tokens, Some(30));
        assert_eq!(body.usage.ephemeral_1h_input_tokens, Some(40));
        assert_eq!(body.usage.web_search_requests, Some(3));
        assert_eq!(body.usage.web_fetch_requests, None);
    }

    #[test]
    fn error_body_gives_its_type() {
        let body = read(r#"{"type":"error","error":{"type":"rate_limit_error","message":"x"}}"#);
        assert_eq!(body.error_type.as_deref(), Some("rate_limit_error"));
        assert!(body.usage.is_empty());
        assert_eq!(body.issue, None);
    }

    #[test]
    fn bedrock_metrics_fill_only_unreported_counts() {
        let mut body = BodyUsage::default();
        body.apply_json(
            br#"{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1}}}"#,
            None,
            false,
        )
        .unwrap();
        body.apply_json(
            br#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":10,"outputTokenCount":42,"invocationLatency":900,"firstByteLatency":300,"cacheReadInputTokenCount":5}}"#,
            None,
            false,
        )
        .unwrap();
        let billed = body.billed_usage();
        assert_eq!(billed.input_tokens, Some(10));
        assert_eq!(billed.output_tokens, Some(1), "Anthropic's count wins");
        assert_eq!(billed.cache_read_input_tokens, Some(5));
        assert!(body.complete);
        assert_eq!(body.bedrock_metrics.unwrap().first_byte_latency, Some(300));
    }

    #[test]
    fn malformed_and_oversized_bodies_are_flagged() {
        assert_eq!(read("{\"type\":").issue, Some(ParseIssue::Malformed));
        assert_eq!(
            read(r#"{"type":"message","usage":{"input_tokens":-1}}"#).issue,
            Some(ParseIssue::Malformed)
        );
        let mut reader = JsonReader::new(8);
        reader.feed(b"{\"type\":");
        reader.feed(b"\"message\"}");
        let body = reader.finish();
        assert_eq!(body.issue, Some(ParseIssue::OverCap));
        assert_eq!(body.stats.over_cap, 1);
    }

    #[test]
    fn empty_body_is_not_an_issue() {
        assert_eq!(read(""), BodyUsage::default());
    }
}
