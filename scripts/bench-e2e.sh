#!/usr/bin/env bash
# End to end on loopback: stand-in upstream → proxy (plain | + UsageLayer, no-op sink |
# + UsageLayer, batching writer, sea-orm store on Postgres | … JetStream store on a
# nats-server of its own, NATS_SERVER) → load generator; prints the
# Markdown table for BENCHMARKS.md (driver: benches/src/bin/e2e/main.rs).
#
#   scripts/bench-e2e.sh                          # 5 rounds × 1000 streams per variant
#   scripts/bench-e2e.sh --rounds 7 --streams 2000 --concurrency 2
#
# The proxy runs pinned to CPU 0, the driver, load generator and upstream to CPU 1
# (taskset). The store variant needs Postgres at TEST_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/test); it makes its own database there and drops it.
# Per-round lines go to stderr; the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }
# PROFILE=dev builds it unoptimised: for a smoke run (scripts/test.sh), not for numbers.
profile="${PROFILE:-bench}"
cargo build --locked -q --profile "$profile" -p usage-benches --bin e2e
[ "$profile" = dev ] && dir=debug || dir=release
exec "$target/$dir/e2e" "$@"
