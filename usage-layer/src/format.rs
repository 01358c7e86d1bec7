//! The API formats whose usage the layer reads, and how a request names its format.
//!
//! A body is read as the format it is given ([`Format`] in the request's extensions, or
//! [`UsageLayer::format`](crate::UsageLayer::format)), else the format the request path
//! names ([`Format::from_path`]), else the one its content shows: Anthropic's `type`s
//! (`message`, `message_start`, …), OpenAI's `object`s (`chat.completion`,
//! `chat.completion.chunk`, `response`) and Responses events (`response.*`).
//!
//! Whatever the format, a record's counts have Anthropic's meaning (see
//! [`Usage`](crate::Usage)): OpenAI's `prompt_tokens` / `input_tokens` *include* the
//! cached tokens, so the record's `input_tokens` is them minus `cached_tokens`.

use std::fmt;

/// An LLM API's response format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Format {
    /// Anthropic's Messages API (`POST /v1/messages`): a `message` JSON body, or an SSE
    /// stream of `message_start` … `message_stop` events.
    Anthropic,
    /// OpenAI's Chat Completions API (`POST /v1/chat/completions`): a `chat.completion`
    /// JSON body, or `data:`-only SSE chunks ending with `data: [DONE]`; a stream reports
    /// usage only when the client asked for it (`stream_options.include_usage`).
    OpenAiChat,
    /// OpenAI's Responses API (`POST /v1/responses`): a `response` JSON body, or an SSE
    /// stream of `response.*` events whose usage is in `response.completed`,
    /// `response.incomplete` or `response.failed`.
    OpenAiResponses,
}

impl Format {
    /// Every format, in a fixed order.
    pub const ALL: [Format; 3] = [Self::Anthropic, Self::OpenAiChat, Self::OpenAiResponses];

    /// The format an endpoint's path names, by its last segments: `…/messages`,
    /// `…/chat/completions`, `…/responses` (any prefix, such as `/v1` or a proxy's own).
    ///
    /// ```
    /// use usage_layer::Format;
    ///
    /// assert_eq!(Format::from_path("/v1/messages"), Some(Format::Anthropic));
    /// assert_eq!(Format::from_path("/ak/k1/v1/messages"), Some(Format::Anthropic));
    /// assert_eq!(Format::from_path("/openai/v1/chat/completions/"), Some(Format::OpenAiChat));
    /// assert_eq!(Format::from_path("/v1/responses"), Some(Format::OpenAiResponses));
    /// assert_eq!(Format::from_path("/v1/messages/count_tokens"), None);
    /// ```
    pub fn from_path(path: &str) -> Option<Format> {
        let path = path.strip_suffix('/').unwrap_or(path);
        [
            ("/messages", Self::Anthropic),
            ("/chat/completions", Self::OpenAiChat),
            ("/responses", Self::OpenAiResponses),
        ]
        .into_iter()
        .find(|(suffix, _)| path.ends_with(suffix))
        .map(|(_, format)| format)
    }

    /// A stable snake_case name, for storage, metrics and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAiChat => "openai_chat",
            Self::OpenAiResponses => "openai_responses",
        }
    }

    /// The format of a name given by [`as_str`](Self::as_str).
    pub fn from_name(name: &str) -> Option<Format> {
        Self::ALL.into_iter().find(|format| format.as_str() == name)
    }

    /// Whether the format is one of OpenAI's (whose input counts include cached tokens).
    pub(crate) fn is_openai(self) -> bool {
        matches!(self, Self::OpenAiChat | Self::OpenAiResponses)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn names_round_trip() {
        for format in Format::ALL {
            assert_eq!(Format::from_name(format.as_str()), Some(format));
        }
        assert_eq!(Format::from_name("openai"), None);
    }

    #[test]
    fn paths_are_matched_by_their_last_segments() {
        assert_eq!(
            Format::from_path("/v1/chat/completions"),
            Some(Format::OpenAiChat)
        );
        assert_eq!(Format::from_path("/v1/completions"), None);
        assert_eq!(Format::from_path("/v1/responses/resp_1"), None);
        assert_eq!(Format::from_path("/health"), None);
        assert_eq!(Format::from_path(""), None);
    }
}
