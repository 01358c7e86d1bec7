#!/usr/bin/env bash
# The test command: formatting, lints, docs, the whole test suite and the examples.
# Run from anywhere; CI runs it through .ci/run on a clean clone.
#
# The SSE fixtures are read from ../shared/fixtures next to the repository
# (override with USAGE_FIXTURES_DIR); the tests fail, loudly, when they are missing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n== %s\n' "$*"; }

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

fixtures="${USAGE_FIXTURES_DIR:-$root/../shared/fixtures}"
if [ ! -f "$fixtures/README.md" ]; then
  echo "ERROR: SSE fixtures not found at $fixtures (set USAGE_FIXTURES_DIR)" >&2
  exit 1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (all features, all targets)"
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings

step "cargo clippy -D warnings (usage-layer without default features)"
cargo clippy --locked -p usage-layer --no-default-features -- -D warnings

step "cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --all-features

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --all-features --no-fail-fast
else
  echo "(cargo-nextest not installed: using cargo test)"
  cargo test --locked --workspace --all-features --no-fail-fast --lib --bins --tests --examples
fi

step "doctests (crate docs and README)"
cargo test --locked --workspace --all-features --doc

step "benches compile and run once (no timing)"
cargo test --locked --workspace --all-features --benches

step "example: sse-usage on the fixtures"
cargo run --locked -q -p usage-layer --example sse-usage -- \
  --chunk-size 7 "$fixtures"/sse/anthropic-sdk-python/*.txt

printf '\n== all checks passed\n'
