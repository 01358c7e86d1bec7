//! Benchmarks of the usage layer, with their baselines.
//!
//! * [`corpus`] — SSE streams generated from a seed (the same bytes every run), and the
//!   ways of cutting them into pieces.
//! * [`readers`] — the scanner under test and the readers it is compared with: a naive
//!   `eventsource-stream` + `serde_json::Value` reader, a typed-enum reader, and the
//!   floor (counting newlines with `memchr`).
//! * [`frames`] — a response body that hands out prepared frames, for the body and
//!   end-to-end benchmarks.
//! * [`Discard`] — a store that drops every batch: the batching writer without a database.
//!
//! The benchmarks themselves: `benches/parse.rs` (parse throughput), `benches/body.rs`
//! (body overhead per frame), `src/bin/callgrind-scan.rs` (instruction counts, driven by
//! `scripts/callgrind.sh`) and `src/bin/e2e/` (end to end through a loopback proxy).
//! `BENCHMARKS.md` at the repository root has the tables and the commands.
//!
//! ```
//! use usage_benches::corpus::{self, Chunking};
//! use usage_benches::readers;
//!
//! let stream = corpus::small_deltas(corpus::SEED);
//! let pieces = stream.chunked(Chunking::Fixed(128));
//! assert_eq!(readers::scanner(&pieces), stream.output_tokens);
//! assert_eq!(readers::naive(&pieces), stream.output_tokens);
//! ```

pub mod corpus;
mod discard;
pub mod frames;
pub mod readers;

pub use discard::Discard;
