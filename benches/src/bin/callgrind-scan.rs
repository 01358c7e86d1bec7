//! Scans the small-delta corpus N times with the SSE scanner: the program that
//! `scripts/callgrind.sh` runs under callgrind for two values of N, so that the difference
//! of the two instruction counts is the scanner's alone (startup and corpus generation
//! cancel out).
//!
//! ```text
//! callgrind-scan N [event_aligned|128]
//! ```
//!
//! Prints the corpus size in bytes, which the script divides by.
#![allow(clippy::print_stdout, reason = "the script reads what it prints")]

use std::hint::black_box;
use std::process::ExitCode;

use usage_benches::corpus::{self, Chunking, SEED};
use usage_benches::readers;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(Ok(rounds)), chunking) = (args.next().map(|n| n.parse::<usize>()), args.next())
    else {
        eprintln!("usage: callgrind-scan N [event_aligned|BYTES]");
        return ExitCode::FAILURE;
    };
    let chunking = match chunking.as_deref() {
        None | Some("event_aligned") => Chunking::EventAligned,
        Some(size) => match size.parse() {
            Ok(size) => Chunking::Fixed(size),
            Err(_) => {
                eprintln!("not a chunk size: {size}");
                return ExitCode::FAILURE;
            }
        },
    };
    let small = corpus::small_deltas(SEED);
    let pieces = small.chunked(chunking);
    for _ in 0..rounds {
        let read = readers::scanner(black_box(&pieces));
        if read != small.output_tokens {
            eprintln!("the scanner read {read:?}, not {:?}", small.output_tokens);
            return ExitCode::FAILURE;
        }
    }
    println!("{}", small.len());
    ExitCode::SUCCESS
}
