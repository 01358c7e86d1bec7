#!/usr/bin/env bash
# The long load run for BENCHMARKS.md: the release reference server in its own process on
# Postgres, N streaming requests (default 100,000) at a rate low enough that the usage
# writer flushes by its timer (default 320/s: batches of ~320, not of 500), its RSS
# sampled every 10,000 requests. It is the load test (tests/tests/load.rs) with other
# settings, so it also checks that every request is recorded once and adds up.
#
#   scripts/bench-load.sh                 # 100,000 at 320/s (~5 min)
#   REQUESTS=20000 RATE=0 scripts/bench-load.sh
#
# Needs Postgres at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
# Prints a Markdown table: requests sent, the server's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export REQUIRE_POSTGRES=1
requests="${REQUESTS:-100000}"
rate="${RATE:-320}"
cargo build --locked -q --release -p reference-server
report=$(mktemp)
trap 'rm -f "$report"' EXIT
REFERENCE_SERVER_BIN="$(cd "$target/release" && pwd)/reference-server" \
  LOAD_REQUESTS="$requests" LOAD_RATE="$rate" LOAD_SAMPLE_EVERY=10000 LOAD_REPORT="$report" \
  cargo nextest run --locked -p usage-tests --test load --no-capture >&2
seconds=$(awk '$1 == "seconds" { print $2 }' "$report")
printf '%s requests at %s/s (%s s), the release server on Postgres:\n\n' "$requests" "$rate" "$seconds"
printf '| requests sent | server RSS (MiB) |\n|---:|---:|\n'
awk '$1 ~ /^[0-9]+$/ { printf "| %\047d | %s |\n", $1, $2 }' "$report"
awk '$1 == "end" { printf "| end (all %s answered) | %s |\n", "'"$requests"'", $2 } $1 == "peak" { printf "| peak (VmHWM) | %s |\n", $2 }' "$report"
