//! Parse throughput: the scanner against the naive reader (`eventsource-stream` + a
//! `serde_json::Value` per event), the typed-enum reader and the `memchr` newline floor,
//! on every generated corpus and chunking, all in the same run.
//!
//! ```text
//! cargo bench -p usage-benches --bench parse            # one run
//! scripts/bench-criterion.sh parse                      # interleaved rounds → table
//! ```
//!
//! Each criterion group is a corpus (`parse-small_deltas`, …), each function
//! `reader/chunking`; the time is per whole stream. The corpus sizes go to stderr as
//! `corpus NAME bytes=… events=…` lines, from which the table script derives ns per event.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

mod common;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use usage_benches::corpus::{self, Chunking, Corpus, SEED};
use usage_benches::readers;

/// A reader under test: its name, and a run over the pieces that returns what it read.
type Reader = (&'static str, fn(&[Bytes]) -> u64);

const SCANNER: Reader = ("scanner", |p| readers::scanner(p).unwrap_or(0));
const NAIVE: Reader = ("naive_eventsource_value", |p| {
    readers::naive(p).unwrap_or(0)
});
const TYPED: Reader = ("typed_enum", |p| readers::typed(p).unwrap_or(0));
const FLOOR: Reader = ("floor_memchr_newlines", |p| readers::memchr_floor(p) as u64);

fn bench_corpus(c: &mut Criterion, corpus: &Corpus, chunkings: &[Chunking], who: &[Reader]) {
    eprintln!(
        "corpus {} bytes={} events={}",
        corpus.name,
        corpus.len(),
        corpus.events.len()
    );
    let mut group = c.benchmark_group(format!("parse-{}", corpus.name));
    group.throughput(Throughput::Bytes(corpus.len() as u64));
    for &chunking in chunkings {
        let pieces = corpus.chunked(chunking);
        for &(name, read) in who {
            // Every reader does the whole job, or its time means nothing.
            if name != FLOOR.0 {
                assert_eq!(
                    Some(read(&pieces)),
                    corpus.output_tokens,
                    "{name} on {} {}",
                    corpus.name,
                    chunking.name()
                );
            }
            group.bench_function(format!("{name}/{}", chunking.name()), |b| {
                b.iter(|| read(black_box(&pieces)))
            });
        }
    }
    group.finish();
}

fn parse(c: &mut Criterion) {
    let all = [SCANNER, NAIVE, TYPED, FLOOR];
    let small = corpus::small_deltas(SEED);
    bench_corpus(c, &small, &Chunking::ALL, &all);
    bench_corpus(
        c,
        &small.crlf(),
        &[Chunking::EventAligned, Chunking::Fixed(128)],
        &all,
    );
    let batched = corpus::batched_deltas(SEED);
    bench_corpus(
        c,
        &batched,
        &[Chunking::EventAligned, Chunking::Fixed(1460)],
        &all,
    );
    let tools = corpus::tool_use(SEED);
    bench_corpus(
        c,
        &tools,
        &[Chunking::EventAligned, Chunking::Fixed(128)],
        &all,
    );
    bench_corpus(
        c,
        &tools.crlf(),
        &[Chunking::EventAligned],
        &[SCANNER, FLOOR],
    );
    // OpenAI's formats: the same 4,000-token reply as Chat Completions chunks and as
    // Responses events (no typed reader: it is Anthropic's event enum).
    for openai in [corpus::openai_chat(SEED), corpus::openai_responses(SEED)] {
        bench_corpus(
            c,
            &openai,
            &[
                Chunking::EventAligned,
                Chunking::Fixed(128),
                Chunking::Fixed(1460),
            ],
            &[SCANNER, NAIVE, FLOOR],
        );
    }
    // Linear, never quadratic: the same 8 MiB line whole and in TCP-segment fragments.
    bench_corpus(
        c,
        &corpus::long_line(SEED),
        &[Chunking::EventAligned, Chunking::Fixed(1460)],
        &[SCANNER, FLOOR],
    );
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = parse
}
criterion_main!(benches);
