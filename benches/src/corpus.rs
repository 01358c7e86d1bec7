//! SSE streams generated in code from a seed, and the ways of cutting them into pieces.
//!
//! Every generator is deterministic: the same seed gives the same bytes on every run and
//! machine (a tiny xorshift, no `rand`), so numbers from different runs compare.

use bytes::Bytes;

/// The seed every benchmark uses.
pub const SEED: u64 = 0x5EED;

/// The size of the adversarial single-line stream: 8 MiB of `data:`.
pub const LONG_LINE_BYTES: usize = 8 << 20;

/// A generated stream: one element per SSE event, as an upstream would write them.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// A short name for tables (`small_deltas`, `tool_use_crlf`, …).
    pub name: String,
    /// The events, each with its terminating blank line.
    pub events: Vec<Bytes>,
    /// The `output_tokens` a correct reader reports for the whole stream.
    pub output_tokens: Option<u64>,
}

/// How a stream is cut into the pieces a reader is fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunking {
    /// One piece per event, as a streaming upstream sends them.
    EventAligned,
    /// Pieces of this many bytes, cutting through lines, CRLF pairs and UTF-8 characters.
    Fixed(usize),
}

impl Chunking {
    /// The chunkings of the parse benchmarks: event-aligned, 7 B, 128 B, 1,460 B (a TCP
    /// segment's payload) and 16 KiB.
    pub const ALL: [Chunking; 5] = [
        Chunking::EventAligned,
        Chunking::Fixed(7),
        Chunking::Fixed(128),
        Chunking::Fixed(1460),
        Chunking::Fixed(16 * 1024),
    ];

    /// A short name for tables: `event_aligned`, `7B`, `16KiB`, ….
    pub fn name(self) -> String {
        match self {
            Chunking::EventAligned => "event_aligned".to_owned(),
            Chunking::Fixed(n) if n % 1024 == 0 => format!("{}KiB", n / 1024),
            Chunking::Fixed(n) => format!("{n}B"),
        }
    }
}

impl Corpus {
    /// The stream's length in bytes.
    pub fn len(&self) -> usize {
        self.events.iter().map(Bytes::len).sum()
    }

    /// Whether the stream has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole stream in one piece.
    pub fn whole(&self) -> Bytes {
        Bytes::from(self.events.concat())
    }

    /// The stream cut into pieces by `chunking`.
    pub fn chunked(&self, chunking: Chunking) -> Vec<Bytes> {
        match chunking {
            Chunking::EventAligned => self.events.clone(),
            Chunking::Fixed(size) => {
                let whole = self.whole();
                (0..whole.len())
                    .step_by(size)
                    .map(|at| whole.slice(at..whole.len().min(at + size)))
                    .collect()
            }
        }
    }

    /// The same stream with CRLF line ends (`\r\n`) instead of LF.
    pub fn crlf(&self) -> Corpus {
        let events = self
            .events
            .iter()
            .map(|event| {
                let mut out = Vec::with_capacity(event.len() + event.len() / 32);
                for &byte in event.iter() {
                    if byte == b'\n' {
                        out.push(b'\r');
                    }
                    out.push(byte);
                }
                Bytes::from(out)
            })
            .collect();
        Corpus {
            name: format!("{}_crlf", self.name),
            events,
            output_tokens: self.output_tokens,
        }
    }
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `count` words of model output, each with its leading space (escapes and
    /// multi-byte text included, as JSON string content).
    fn words(&mut self, count: usize) -> String {
        let mut text = String::new();
        for _ in 0..count {
            text.push(' ');
            text.push_str(WORDS[self.below(WORDS.len())]);
        }
        text
    }
}

/// Words as they appear inside a JSON string (so `\\n` is JSON's escaped newline).
const WORDS: &[&str] = &[
    "the",
    "model",
    "streams",
    "tokens",
    "usage",
    "metering",
    "proxy",
    "request",
    "a",
    "response",
    "of",
    "and",
    "cache",
    "input",
    "output",
    "is",
    "to",
    "Bedrock",
    "Plan",
    "with",
    "\\n",
    "code",
    "fn",
    "let",
    "\\\"quoted\\\"",
    "é",
    "—",
    "😀",
];

const MESSAGE_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":2095,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":18000,\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n";
const PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";
const TEXT_BLOCK_START: &str = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";

fn text_delta(index: usize, text: &str) -> Bytes {
    Bytes::from(format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\n"
    ))
}

fn block_stop(index: usize) -> Bytes {
    Bytes::from(format!(
        "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":{index}}}\n\n"
    ))
}

/// `message_delta` with the final output count, then `message_stop`.
fn message_end(stop_reason: &str, output_tokens: u64) -> [Bytes; 2] {
    [
        Bytes::from(format!(
            "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{stop_reason}\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{output_tokens}}}}}\n\n"
        )),
        Bytes::from_static(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
    ]
}

/// A 4,000-output-token reply in 1,300 small text deltas (1–3 words each): 1,306 events,
/// about 164 KB.
pub fn small_deltas(seed: u64) -> Corpus {
    let mut rng = Rng(seed);
    let mut events = vec![
        Bytes::from_static(MESSAGE_START.as_bytes()),
        Bytes::from_static(TEXT_BLOCK_START.as_bytes()),
        Bytes::from_static(PING.as_bytes()),
    ];
    for _ in 0..1_300 {
        let count = 1 + rng.below(3);
        events.push(text_delta(0, &rng.words(count)));
    }
    events.push(block_stop(0));
    events.extend(message_end("end_turn", 4000));
    Corpus {
        name: "small_deltas".to_owned(),
        events,
        output_tokens: Some(4000),
    }
}

/// The 4,000-output-token reply of [`small_deltas`] as an OpenAI Chat Completions stream
/// (`stream_options.include_usage`): 1,300 `data:`-only chunks of 1–3 words, each with
/// `"usage":null`, the `finish_reason` chunk, the usage chunk, `data: [DONE]`.
pub fn openai_chat(seed: u64) -> Corpus {
    let mut rng = Rng(seed);
    let chunk = |choices: &str, usage: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-CXd8mQ4u2bLr7VvTq1\",\"object\":\"chat.completion.chunk\",\"created\":1764600000,\"model\":\"gpt-4.1-2025-04-14\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_b1a2c3d4e5\",\"choices\":{choices},\"usage\":{usage}}}\n\n"
        ))
    };
    let mut events = vec![chunk(
        r#"[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]"#,
        "null",
    )];
    for _ in 0..1_300 {
        let count = 1 + rng.below(3);
        let choices = format!(
            r#"[{{"index":0,"delta":{{"content":"{}"}},"logprobs":null,"finish_reason":null}}]"#,
            rng.words(count)
        );
        events.push(chunk(&choices, "null"));
    }
    events.push(chunk(
        r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#,
        "null",
    ));
    events.push(chunk(
        "[]",
        r#"{"prompt_tokens":20095,"completion_tokens":4000,"total_tokens":24095,"prompt_tokens_details":{"cached_tokens":18000,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#,
    ));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Corpus {
        name: "openai_chat".to_owned(),
        events,
        output_tokens: Some(4000),
    }
}

/// The same reply as an OpenAI Responses stream: `response.created`, 1,300
/// `response.output_text.delta` events, `response.output_text.done`, and
/// `response.completed` with the usage (and, as the API sends it, the whole output text).
pub fn openai_responses(seed: u64) -> Corpus {
    let mut rng = Rng(seed);
    let response = |status: &str, output: &str, usage: &str| {
        format!(
            r#"{{"id":"resp_68d2f0c1a9b4","object":"response","created_at":1764600000,"status":"{status}","error":null,"incomplete_details":null,"model":"gpt-5-2025-08-07","output":{output},"usage":{usage}}}"#
        )
    };
    let mut events = vec![Bytes::from(format!(
        "event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{}}}\n\n",
        response("in_progress", "[]", "null")
    ))];
    let mut text = String::new();
    for n in 0..1_300 {
        let count = 1 + rng.below(3);
        let delta = rng.words(count);
        text.push_str(&delta);
        events.push(Bytes::from(format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{},\"item_id\":\"msg_68d2f0c1\",\"output_index\":0,\"content_index\":0,\"delta\":\"{delta}\",\"logprobs\":[]}}\n\n",
            n + 1
        )));
    }
    events.push(Bytes::from(format!(
        "event: response.output_text.done\ndata: {{\"type\":\"response.output_text.done\",\"sequence_number\":1301,\"item_id\":\"msg_68d2f0c1\",\"output_index\":0,\"content_index\":0,\"text\":\"{text}\"}}\n\n"
    )));
    let output = format!(
        r#"[{{"id":"msg_68d2f0c1","type":"message","status":"completed","role":"assistant","content":[{{"type":"output_text","annotations":[],"text":"{text}"}}]}}]"#
    );
    let usage = r#"{"input_tokens":20095,"input_tokens_details":{"cached_tokens":18000},"output_tokens":4000,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":24095}"#;
    events.push(Bytes::from(format!(
        "event: response.completed\ndata: {{\"type\":\"response.completed\",\"sequence_number\":1302,\"response\":{}}}\n\n",
        response("completed", &output, usage)
    )));
    Corpus {
        name: "openai_responses".to_owned(),
        events,
        output_tokens: Some(4000),
    }
}

/// The same 4,000-token reply as an upstream that batches tokens sends it: 160 deltas of
/// about 25 words each, with a ping every 40 deltas (about 166 events).
pub fn batched_deltas(seed: u64) -> Corpus {
    let mut rng = Rng(seed);
    let mut events = vec![
        Bytes::from_static(MESSAGE_START.as_bytes()),
        Bytes::from_static(TEXT_BLOCK_START.as_bytes()),
    ];
    for i in 0..160 {
        if i % 40 == 0 {
            events.push(Bytes::from_static(PING.as_bytes()));
        }
        let count = 15 + rng.below(21);
        events.push(text_delta(0, &rng.words(count)));
    }
    events.push(block_stop(0));
    events.extend(message_end("end_turn", 4000));
    Corpus {
        name: "batched_deltas".to_owned(),
        events,
        output_tokens: Some(4000),
    }
}

/// A short text block, then a `tool_use` block whose input (a generated source file, as
/// JSON) streams as about 1,040 `input_json_delta` fragments of 1–60 bytes.
pub fn tool_use(seed: u64) -> Corpus {
    let mut rng = Rng(seed);
    let mut events = vec![
        Bytes::from_static(MESSAGE_START.as_bytes()),
        Bytes::from_static(TEXT_BLOCK_START.as_bytes()),
        Bytes::from_static(PING.as_bytes()),
    ];
    for _ in 0..20 {
        let count = 1 + rng.below(3);
        events.push(text_delta(0, &rng.words(count)));
    }
    events.push(block_stop(0));
    events.push(Bytes::from_static(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"write_file\",\"input\":{}}}\n\n"));

    // The tool input as the model writes it; its text, not its structure, is what streams.
    let mut contents = String::new();
    for line in 0..800 {
        let count = 2 + rng.below(8);
        contents.push_str(&format!("line {line}:"));
        for _ in 0..count {
            contents.push(' ');
            contents.push_str(CODE_WORDS[rng.below(CODE_WORDS.len())]);
        }
        contents.push('\n');
    }
    let input = serde_json::json!({ "path": "src/generated.rs", "contents": contents }).to_string();
    let mut rest = input.as_str();
    while !rest.is_empty() {
        let mut cut = (1 + rng.below(60)).min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (fragment, tail) = rest.split_at(cut);
        rest = tail;
        // The fragment is JSON text carried inside a JSON string: escaped once more.
        let partial_json = serde_json::Value::from(fragment).to_string();
        events.push(Bytes::from(format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{partial_json}}}}}\n\n"
        )));
    }
    events.push(block_stop(1));
    events.extend(message_end("tool_use", 3100));
    Corpus {
        name: "tool_use".to_owned(),
        events,
        output_tokens: Some(3100),
    }
}

const CODE_WORDS: &[&str] = &[
    "fn",
    "let",
    "mut",
    "match",
    "=>",
    "{",
    "}",
    "(",
    ")",
    "\"text\"",
    "'c'",
    "\\",
    "\t",
    "->",
    "Some(x)",
    "None",
    "self.feed(&bytes);",
    "usize",
    "// é ü",
    "<T>",
];

/// The adversarial stream: `message_start`, then one event whose single `data:` line is
/// [`LONG_LINE_BYTES`] long (no `event:` name, so the scanner has to read its `"type"`; it
/// is a `message_delta`, so it is buffered up to the cap and then dropped), then
/// `message_stop`. A reader must stay linear in the line's length however it is cut.
pub fn long_line(seed: u64) -> Corpus {
    let mut rng = Rng(seed);
    let head = b"data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9},\"padding\":\"";
    let tail = b"\"}\n\n";
    let mut line = Vec::with_capacity(LONG_LINE_BYTES + tail.len());
    line.extend_from_slice(head);
    while line.len() < LONG_LINE_BYTES - 1 {
        line.push(b'a' + rng.below(26) as u8);
    }
    line.extend_from_slice(tail);
    let [_, stop] = message_end("end_turn", 0);
    Corpus {
        name: "long_line".to_owned(),
        events: vec![
            Bytes::from_static(MESSAGE_START.as_bytes()),
            Bytes::from(line),
            stop,
        ],
        // Over the scanner's 1 MiB cap: the delta is dropped, `message_start`'s count stays.
        output_tokens: Some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_sized_as_documented() {
        let small = small_deltas(SEED);
        assert_eq!(small.whole(), small_deltas(SEED).whole());
        assert_eq!(small.events.len(), 1_306);
        assert_eq!(small.len(), 164_467, "the corpus of earlier tables");

        let batched = batched_deltas(SEED);
        assert_eq!(batched.events.len(), 2 + 4 + 160 + 3);

        let tools = tool_use(SEED);
        assert!(
            (1_000..1_300).contains(&tools.events.len()),
            "{}",
            tools.events.len()
        );

        let long = long_line(SEED);
        assert!(long.events[1].len() >= LONG_LINE_BYTES);
        assert_eq!(memchr::memchr_iter(b'\n', &long.events[1]).count(), 2);
    }

    #[test]
    fn chunkings_keep_every_byte() {
        let small = small_deltas(SEED);
        for chunking in Chunking::ALL {
            let pieces = small.chunked(chunking);
            assert_eq!(pieces.concat(), small.whole().to_vec(), "{chunking:?}");
        }
        assert_eq!(Chunking::Fixed(16 * 1024).name(), "16KiB");
        assert_eq!(Chunking::Fixed(1460).name(), "1460B");
    }

    #[test]
    fn crlf_doubles_only_line_ends() {
        let small = small_deltas(SEED);
        let crlf = small.crlf();
        let lines = memchr::memchr_iter(b'\n', &small.whole()).count();
        assert_eq!(crlf.len(), small.len() + lines);
    }
}
