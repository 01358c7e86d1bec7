//! A time-bounded mutation fuzzer for the SSE scanner and the JSON reader: the official
//! SDK's streams, mutated with SSE- and JSON-aware edits (line endings, field names, huge and
//! negative numbers, unterminated lines far past the cap, spliced pieces of other streams),
//! fed in random pieces. Checked after every piece: no panic, the held bytes never past the cap.
//!
//! It runs for `FUZZ_SECONDS` (default 10) from `FUZZ_SEED` (default: the clock); the seed is
//! printed, and a failing input is written to `target/fuzz-failures/` with the command that
//! replays it.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use proptest::prelude::RngCore;
use proptest::test_runner::{RngAlgorithm, TestRng};
use usage_layer::anthropic::JsonReader;
use usage_layer::sse::Scanner;

/// A seeded generator (proptest's), with the few draws the mutations need.
struct Rng(TestRng);

impl Rng {
    fn seeded(seed: u64) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8..].copy_from_slice(&(!seed).to_le_bytes());
        Self(TestRng::from_seed(RngAlgorithm::XorShift, &bytes))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"\r\n\r\n",
    b"\r\r",
    b"data:",
    b"data: ",
    b"event: ",
    b"event:message_delta\n",
    b":",
    b": comment\n",
    b"id: 7\n",
    b"retry: 10\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b",",
    b"\"usage\":",
    b"\"input_tokens\":",
    b"\"output_tokens\":",
    b"\"cache_read_input_tokens\":",
    b"\"cache_creation_input_tokens\":",
    b"\"type\":",
    b"\"message_start\"",
    b"\"message_delta\"",
    b"\"message_stop\"",
    b"\"error\"",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"18446744073709551616",
    b"99999999999999999999999",
    b"1e400",
    b"1.5",
    b"-0",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xc3",
    b"\x00",
    b"\t",
    b" ",
    b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\n",
    b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let at = |rng: &mut Rng, input: &Vec<u8>| rng.below(input.len() + 1);
    match rng.below(9) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = at(rng, input);
            let token = rng.pick(TOKENS);
            input.splice(i..i, token.iter().copied());
        }
        2 if !input.is_empty() => {
            let i = rng.below(input.len());
            let end = (i + rng.below(64) + 1).min(input.len());
            input.drain(i..end);
        }
        3 if !input.is_empty() => {
            let i = rng.below(input.len());
            let end = (i + rng.below(256) + 1).min(input.len());
            let piece = input[i..end].to_vec();
            let j = at(rng, input);
            input.splice(j..j, piece);
        }
        4 => {
            let other = rng.pick(corpus);
            if !other.is_empty() {
                let i = rng.below(other.len());
                let end = (i + rng.below(512) + 1).min(other.len());
                let j = at(rng, input);
                input.splice(j..j, other[i..end].iter().copied());
            }
        }
        5 => {
            // A line far longer than any cap, without a line ending.
            let j = at(rng, input);
            let len = rng.below(1 << 18) + 1;
            let byte = *rng.pick(b"a{\"9 ");
            input.splice(j..j, std::iter::repeat_n(byte, len));
        }
        6 => {
            let i = at(rng, input);
            input.truncate(i);
        }
        7 => {
            // Line endings swapped throughout.
            let from = *rng.pick(&[&b"\n"[..], b"\r\n"]);
            let to = *rng.pick(&[&b"\r"[..], b"\r\n", b"\n", b"\n\r"]);
            let mut out = Vec::with_capacity(input.len());
            let mut i = 0;
            while i < input.len() {
                if input[i..].starts_with(from) {
                    out.extend_from_slice(to);
                    i += from.len();
                } else {
                    out.push(input[i]);
                    i += 1;
                }
            }
            *input = out;
        }
        _ => {
            let i = at(rng, input);
            let len = rng.below(32);
            let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            input.splice(i..i, noise);
        }
    }
}

/// Feeds `input` in random pieces to a scanner and a JSON reader with `cap`, checking the cap.
fn exercise(rng: &mut Rng, input: &[u8], cap: usize) {
    let mut scanner = Scanner::with_max_event_bytes(cap);
    let mut json = JsonReader::new(cap);
    let mut rest = input;
    while !rest.is_empty() {
        let n = match rng.below(4) {
            0 => 1,
            1 => rng.below(16) + 1,
            2 => rng.below(1460) + 1,
            _ => rng.below(1 << 16) + 1,
        }
        .min(rest.len());
        let (piece, tail) = rest.split_at(n);
        scanner.feed(piece);
        json.feed(piece);
        assert!(
            scanner.buffered_bytes() <= cap,
            "the scanner holds {} bytes with a cap of {cap}",
            scanner.buffered_bytes()
        );
        rest = tail;
    }
    let _ = scanner.finish();
    let _ = json.finish();
}

#[test]
fn scanner_and_json_reader_survive_mutated_streams() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let corpus: Vec<Vec<u8>> = common::sse_fixtures()
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    let replay =
        format!("FUZZ_SEED={seed} FUZZ_SECONDS={seconds} cargo test -p usage-layer --test fuzz");
    eprintln!("fuzz: seed {seed}, {seconds} s (replay: {replay})");
    let mut rng = Rng::seeded(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut cases = 0u64;
    while Instant::now() < deadline {
        let mut input = rng.pick(&corpus).clone();
        for _ in 0..rng.below(8) + 1 {
            mutate(&mut rng, &mut input, &corpus);
        }
        let cap = *rng.pick(&[64, 1024, 64 * 1024, 1 << 20]);
        let case_seed = rng.next();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            exercise(&mut Rng::seeded(case_seed), &input, cap);
        }));
        if outcome.is_err() {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("scanner-{seed}-{cases}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "case {cases} (cap {cap}) panicked; input in {}; replay: {replay}",
                path.display()
            );
        }
        cases += 1;
    }
    eprintln!("fuzz: {cases} mutated streams, no panic, every piece within the cap");
    assert!(cases > 0);
}
