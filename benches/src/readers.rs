//! The scanner under test and the readers it is measured against.
//!
//! Each reader takes a stream in pieces and returns the `output_tokens` it read (the
//! floor returns its newline count instead), so a benchmark can check that every reader
//! did the whole job before it times any of them.

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Deserialize;
use usage_layer::sse::Scanner;

/// `usage_layer::sse::Scanner`, fed piece by piece.
pub fn scanner(pieces: &[Bytes]) -> Option<u64> {
    let mut scanner = Scanner::new();
    for piece in pieces {
        scanner.feed(piece);
    }
    scanner.finish().usage.output_tokens
}

/// Runs `on_data` on the data of every event, as the `eventsource-stream` crate parses
/// the pieces: the SSE reader a straightforward implementation would pick.
fn each_event(pieces: &[Bytes], mut on_data: impl FnMut(&str)) {
    let stream = futures::stream::iter(pieces.iter().cloned().map(Ok::<_, std::io::Error>));
    futures::executor::block_on(async {
        let mut events = stream.eventsource();
        while let Some(Ok(event)) = events.next().await {
            on_data(&event.data);
        }
    });
}

/// The naive reader: `eventsource-stream`, and every event's data parsed into a
/// `serde_json::Value`; usage read from the values (Anthropic's events, OpenAI's chat
/// chunks and Responses events).
pub fn naive(pieces: &[Bytes]) -> Option<u64> {
    let mut output = None;
    each_event(pieces, |data| {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(data) else {
            return;
        };
        // Anthropic's events, the Responses API's end event, or a chat chunk's usage.
        let (usage, key) = match value["type"].as_str() {
            Some("message_start") => (&value["message"]["usage"], "output_tokens"),
            Some("message_delta") => (&value["usage"], "output_tokens"),
            Some("response.completed") => (&value["response"]["usage"], "output_tokens"),
            _ => (&value["usage"], "completion_tokens"),
        };
        if let Some(n) = usage[key].as_u64() {
            output = Some(n);
        }
    });
    output
}

/// The typed reader: `eventsource-stream`, and every event's data deserialized into a
/// serde enum of the Anthropic event types (owned strings), as an SDK client does.
pub fn typed(pieces: &[Bytes]) -> Option<u64> {
    let mut output = None;
    each_event(pieces, |data| {
        let usage = match serde_json::from_str::<StreamEvent>(data) {
            Ok(StreamEvent::MessageStart { message }) => message.usage,
            Ok(StreamEvent::MessageDelta { usage, .. }) => usage,
            Ok(_) | Err(_) => return,
        };
        if usage.output_tokens.is_some() {
            output = usage.output_tokens;
        }
    });
    output
}

/// The floor: one pass over the bytes counting line ends with `memchr` — the least any
/// line reader does.
pub fn memchr_floor(pieces: &[Bytes]) -> usize {
    pieces
        .iter()
        .map(|piece| memchr::memchr_iter(b'\n', piece).count())
        .sum()
}

// The Anthropic streaming events, as a client deserializes them; most fields are read
// only to be paid for, as in a real client.
#[allow(
    dead_code,
    reason = "deserialized like a client does; not every field is read"
)]
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: Message,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: Usage,
    },
    MessageStop,
    Ping,
    Error {
        error: ApiError,
    },
}

#[allow(
    dead_code,
    reason = "deserialized like a client does; not every field is read"
)]
#[derive(Debug, Deserialize)]
struct Message {
    id: String,
    model: String,
    role: String,
    stop_reason: Option<String>,
    usage: Usage,
}

#[allow(
    dead_code,
    reason = "deserialized like a client does; not every field is read"
)]
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    Thinking {
        thinking: String,
    },
    #[serde(other)]
    Other,
}

#[allow(
    dead_code,
    reason = "deserialized like a client does; not every field is read"
)]
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    #[serde(other)]
    Other,
}

#[allow(
    dead_code,
    reason = "deserialized like a client does; not every field is read"
)]
#[derive(Debug, Deserialize)]
struct MessageDelta {
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
}

#[allow(
    dead_code,
    reason = "deserialized like a client does; not every field is read"
)]
#[derive(Debug, Deserialize)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

#[allow(
    dead_code,
    reason = "deserialized like a client does; not every field is read"
)]
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{self, Chunking, SEED};

    #[test]
    fn every_reader_reads_every_corpus_in_every_chunking() {
        for corpus in [
            corpus::small_deltas(SEED),
            corpus::batched_deltas(SEED),
            corpus::tool_use(SEED),
            corpus::tool_use(SEED).crlf(),
            corpus::small_deltas(SEED).crlf(),
        ] {
            let lines = memchr_floor(&corpus.events);
            for chunking in Chunking::ALL {
                let pieces = corpus.chunked(chunking);
                let at = format!("{} {}", corpus.name, chunking.name());
                assert_eq!(scanner(&pieces), corpus.output_tokens, "scanner {at}");
                assert_eq!(naive(&pieces), corpus.output_tokens, "naive {at}");
                assert_eq!(typed(&pieces), corpus.output_tokens, "typed {at}");
                assert_eq!(memchr_floor(&pieces), lines, "floor {at}");
            }
        }
    }

    #[test]
    fn the_long_line_is_dropped_over_the_cap_in_any_cut() {
        let long = corpus::long_line(SEED);
        for chunking in [Chunking::EventAligned, Chunking::Fixed(1460)] {
            assert_eq!(scanner(&long.chunked(chunking)), long.output_tokens);
        }
    }
}
