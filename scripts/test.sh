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
target="${CARGO_TARGET_DIR:-$root/target}"
# A clean CI build gains nothing from incremental state (a gigabyte more of disk).
if [ -n "${CI:-}" ] && [ "${CI:-}" != "false" ]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
# Every build below selects the same packages, features and targets, so dependencies
# are compiled once (cargo resolves features per invocation: `cargo run -p X` would
# build another copy of them), and the programs run from $target/debug.
echo "disk: $(df -h --output=avail "$root" | tail -n 1 | tr -d ' ') free where the build goes"

fixtures="${USAGE_FIXTURES_DIR:-$root/../shared/fixtures}"
if [ ! -f "$fixtures/README.md" ]; then
  echo "ERROR: SSE fixtures not found at $fixtures (set USAGE_FIXTURES_DIR)" >&2
  exit 1
fi

# Postgres: the local server (this machine kind starts it), or TEST_DATABASE_URL.
# Every test makes its own database there and drops it; stale ones from a crashed run
# are removed first. Unreachable ⇒ said loudly; under CI (or REQUIRE_POSTGRES) ⇒ failure.
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
if psql "$TEST_DATABASE_URL" -qAtc 'select 1' >/dev/null 2>&1; then
  echo "Postgres: reachable at $TEST_DATABASE_URL"
  psql "$TEST_DATABASE_URL" -qAtc "select datname from pg_database where datname like 'usage\_test\_%'" |
    while read -r stale; do psql "$TEST_DATABASE_URL" -qc "drop database if exists \"$stale\" with (force)"; done
else
  cat >&2 <<MSG
################################################################################
##  Postgres is NOT reachable at $TEST_DATABASE_URL
##  The Postgres half of the storage tests will be SKIPPED (SQLite still runs).
################################################################################
MSG
  if [ -n "${CI:-}" ] && [ "${CI:-}" != "false" ] || [ -n "${REQUIRE_POSTGRES:-}" ]; then
    echo "ERROR: Postgres is required here (CI / REQUIRE_POSTGRES)" >&2
    exit 1
  fi
  unset TEST_DATABASE_URL
fi

step "Python tools (venv): schemathesis, moto, the official Anthropic SDK"
# Pinned, in a venv of the repository (.venv, not committed).
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check \
  "schemathesis==4.32.5" "moto[server]==5.2.5" -r tests/sdk/python/requirements.txt
.venv/bin/python -c 'import anthropic; print("anthropic (Python SDK)", anthropic.__version__)'

step "Node: the official Anthropic TypeScript SDK (npm ci, from the lockfile)"
command -v node >/dev/null || { echo "ERROR: node is required for the TypeScript SDK tests" >&2; exit 1; }
npm ci --prefix tests/sdk/node --no-audit --no-fund --loglevel=error
(cd tests/sdk/node && node -e 'import("@anthropic-ai/sdk/version").then((m) => console.log("@anthropic-ai/sdk (TypeScript SDK)", m.VERSION))')
step "Browser: Debian's Chromium, playwright-core and axe-core (npm ci) for the console's tests"
# Debian's chromium (a test tool's own browser download cannot work here).
if [ ! -x /usr/bin/chromium ]; then
  command -v apt-get >/dev/null || { echo "ERROR: /usr/bin/chromium is required for the console's browser tests" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
/usr/bin/chromium --headless --no-sandbox --version
npm ci --prefix tests/console --no-audit --no-fund --loglevel=error
step "NATS: nats-server with JetStream (each test starts its own on a free port)"
export NATS_SERVER="${NATS_SERVER:-/usr/sbin/nats-server}"
[ -x "$NATS_SERVER" ] || { echo "ERROR: $NATS_SERVER is required for the JetStream store's tests (NATS_SERVER names another)" >&2; exit 1; }
"$NATS_SERVER" --version
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# moto server: a real CloudWatch API on loopback for the CloudWatch store's tests.
moto_port=$(free_port)
.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$(mktemp)" 2>&1 &
moto_pid=$!
export TEST_MOTO_URL="http://127.0.0.1:$moto_port"
# moto takes any credentials; the server under test reads them from the default chain.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
trap 'kill "$moto_pid" 2>/dev/null' EXIT
for _ in $(seq 50); do
  python3 -c "import urllib.request as u; u.urlopen('$TEST_MOTO_URL/moto-api/')" 2>/dev/null && break
  sleep 0.2
done
echo "moto server: $TEST_MOTO_URL"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (all features, all targets)"
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings

step "cargo clippy -D warnings (usage-layer without default features)"
cargo clippy --locked -p usage-layer --no-default-features -- -D warnings

step "cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --all-features

step "build: every target of the workspace, all features"
# Also the server binary, which the fault tests run themselves (to kill it), and the
# programs the steps after the tests run.
cargo build --locked -q --workspace --all-features --all-targets
bin="$target/debug"

step "tests"
# The scanner's mutation fuzzer (usage-layer/tests/fuzz.rs) runs this long; it prints its seed.
export FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
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

step "scanner instruction budget (callgrind: at most 2.8 instructions per byte event-aligned, 6 at 128 B)"
scripts/callgrind.sh

step "end-to-end bench driver: one small round, unoptimised (it runs, and the store keeps every record; no timing)"
e2e_variants=plain,control,noop,writer,nats
[ -n "${TEST_DATABASE_URL:-}" ] && e2e_variants=plain,control,noop,writer,store,nats
"$bin/e2e" --rounds 1 --streams 20 --warmup 2 --variants "$e2e_variants" >/dev/null

step "example: sse-usage on the fixtures"
"$bin/examples/sse-usage" --chunk-size 7 "$fixtures"/sse/anthropic-sdk-python/*.txt

step "main job: reference-server demo; users and keys CLI"
"$bin/reference-server" demo --dir "$(mktemp -d)"
cli_state=$(mktemp -d)
cli() { "$bin/reference-server" "$@" --database-url "sqlite://$cli_state/cli.db?mode=rwc" --state-dir "$cli_state"; }
user_id=$(cli users create --name "ci user" --monthly-budget-usd 12.5 --routing bedrock-only | tail -n 1)
[[ $user_id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] || { echo "users create printed: $user_id" >&2; exit 1; }
key=$(cli keys create --user "$user_id" --name ci | tail -n 1)
[[ $key =~ ^ak_[A-Za-z0-9_-]{43}$ ]] || { echo "keys create did not print a key last" >&2; exit 1; }
[ "$(stat -c %a "$cli_state/key-hasher-secret")" = 600 ] || { echo "the generated secret is not mode 0600" >&2; exit 1; }
echo "users create / keys create: ok (user $user_id, key ${key:0:11}…)"

step "migration CLI: up, status, down, up, fresh; the usage schema alone (SQLite$( [ -n "${TEST_DATABASE_URL:-}" ] && echo ' and Postgres'))"
scratch=$(mktemp -d)
trap 'kill "$moto_pid" 2>/dev/null; rm -rf "$scratch"' EXIT
migrate() { DATABASE_URL="$1" "$bin/migration" "${@:2}"; }
cli_round_trip() {
  migrate "$1" up
  migrate "$1" status
  migrate "$1" down -n 3
  migrate "$1" up
  migrate "$1" fresh
  migrate "$1" --only usage down -n 2
  migrate "$1" --only usage status
  migrate "$1" --only usage up
}
cli_round_trip "sqlite://$scratch/cli.db?mode=rwc"
if [ -n "${TEST_DATABASE_URL:-}" ]; then
  cli_db="usage_test_cli_$$"
  psql "$TEST_DATABASE_URL" -qc "create database $cli_db"
  cli_round_trip "${TEST_DATABASE_URL%/*}/$cli_db"
  psql "$TEST_DATABASE_URL" -qc "drop database $cli_db with (force)"
fi

step "schemathesis against the admin API's OpenAPI document (live server)"
st_dir=$(mktemp -d)
st_port=$(free_port)
st_token="schemathesis-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
"$bin/reference-server" serve --database-url "sqlite://$st_dir/st.db?mode=rwc" \
  --state-dir "$st_dir" --bind "127.0.0.1:$st_port" --admin-token "$st_token" \
  --bedrock-enabled=false --plan-api-url http://127.0.0.1:9 >"$st_dir/server.log" 2>&1 &
st_pid=$!
trap 'kill "$st_pid" "$moto_pid" 2>/dev/null; rm -rf "$scratch"' EXIT
# Interdependent parameters (one range form, start before end) cannot be said in
# OpenAPI: such schema-valid requests get a 400 by design, so that check is left out.
# Every response must still be non-5xx and match the document.
timeout 600 .venv/bin/schemathesis run "http://127.0.0.1:$st_port/admin/openapi.json" \
  --wait-for-schema 60 -H "Authorization: Bearer $st_token" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples 30 --generation-deterministic --request-timeout 10
kill "$st_pid"

echo "disk: $(du -sh "$target" | cut -f1) in $target, $(df -h --output=avail "$root" | tail -n 1 | tr -d ' ') free"
printf '\n== all checks passed\n'
