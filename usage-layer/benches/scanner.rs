//! Scanner throughput on a generated 4k-output-token stream (~1,300 small deltas),
//! against a naive reader (eventsource-stream + a `serde_json::Value` per event) and a
//! floor (counting newlines with memchr), all in the same run.
//!
//! ```text
//! cargo bench -p usage-layer --bench scanner
//! ```
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use usage_layer::sse::Scanner;

/// A small deterministic generator (xorshift64*), so the corpus is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

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

/// One SSE event per element: a 4,000-output-token reply in ~1,300 small text deltas.
fn small_deltas(seed: u64) -> Vec<Bytes> {
    let mut rng = Rng(seed);
    let mut events = vec![
        Bytes::from_static(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":2095,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":18000,\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n"),
        Bytes::from_static(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"),
        Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n"),
    ];
    for _ in 0..1_300 {
        let mut text = String::new();
        for _ in 0..1 + rng.below(3) {
            text.push(' ');
            text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        }
        events.push(Bytes::from(format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\n"
        )));
    }
    events.push(Bytes::from_static(
        b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    ));
    events.push(Bytes::from_static(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4000}}\n\n"));
    events.push(Bytes::from_static(
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ));
    events
}

fn rechunk(events: &[Bytes], size: usize) -> Vec<Bytes> {
    let whole: Vec<u8> = events.concat();
    whole.chunks(size).map(Bytes::copy_from_slice).collect()
}

fn scan(chunks: &[Bytes]) -> Option<u64> {
    let mut scanner = Scanner::new();
    for chunk in chunks {
        scanner.feed(chunk);
    }
    scanner.finish().usage.output_tokens
}

/// What a straightforward implementation does: a generic SSE parser, and every event's
/// data parsed into a `serde_json::Value`.
fn naive(chunks: &[Bytes]) -> Option<u64> {
    let stream = futures::stream::iter(chunks.iter().cloned().map(Ok::<_, std::io::Error>));
    futures::executor::block_on(async {
        let mut events = stream.eventsource();
        let mut output = None;
        while let Some(Ok(event)) = events.next().await {
            let value: serde_json::Value = match serde_json::from_str(&event.data) {
                Ok(value) => value,
                Err(_) => continue,
            };
            let usage = match value["type"].as_str() {
                Some("message_start") => &value["message"]["usage"],
                Some("message_delta") => &value["usage"],
                _ => continue,
            };
            if let Some(n) = usage["output_tokens"].as_u64() {
                output = Some(n);
            }
        }
        output
    })
}

/// The floor: one pass over the bytes looking for line ends.
fn newline_floor(chunks: &[Bytes]) -> usize {
    chunks
        .iter()
        .map(|chunk| memchr::memchr_iter(b'\n', chunk).count())
        .sum()
}

fn bench(c: &mut Criterion) {
    let events = small_deltas(0x5EED);
    let bytes: usize = events.iter().map(Bytes::len).sum();
    let chunked_128 = rechunk(&events, 128);
    assert_eq!(scan(&events), Some(4000));
    assert_eq!(scan(&chunked_128), Some(4000));
    assert_eq!(naive(&events), Some(4000));
    assert_eq!(naive(&chunked_128), Some(4000));
    eprintln!(
        "corpus: {} events, {} content_block_delta, {bytes} bytes",
        events.len(),
        events.len() - 6
    );

    let mut group = c.benchmark_group("small_deltas");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("scanner/event_aligned", |b| {
        b.iter(|| scan(black_box(&events)))
    });
    group.bench_function("scanner/128B", |b| b.iter(|| scan(black_box(&chunked_128))));
    group.bench_function("naive_eventsource_value/event_aligned", |b| {
        b.iter(|| naive(black_box(&events)))
    });
    group.bench_function("naive_eventsource_value/128B", |b| {
        b.iter(|| naive(black_box(&chunked_128)))
    });
    group.bench_function("floor_memchr_newlines/event_aligned", |b| {
        b.iter(|| newline_floor(black_box(&events)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
