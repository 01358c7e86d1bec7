#!/usr/bin/env bash
# Instructions per byte of the SSE scanner on the small-delta corpus, counted by
# callgrind (deterministic, unlike time on this shared machine), and the budget check.
#
# The program (benches/src/bin/callgrind-scan.rs) scans the corpus N times; it runs
# under callgrind for N = LOW and N = HIGH, and the difference of the two totals over
# (HIGH - LOW) × corpus bytes is the scanner's own cost (process start-up and building
# the corpus cancel out). Both the event-aligned and the 128-byte chunking are counted;
# the script fails (exit 1) when either is above its budget in instructions per byte:
# BUDGET (6.0, the target) for both, and the tighter BUDGET_EVENT_ALIGNED (2.8) for
# event-aligned pieces, which keeps the whole-line path and the prebuilt line-end
# searcher (2.281 when it was set) from slipping back unnoticed.
#
#   scripts/callgrind.sh            # BUDGET=6.0 BUDGET_EVENT_ALIGNED=2.8 LOW=2 HIGH=12
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
budget="${BUDGET:-6.0}"
budget_event_aligned="${BUDGET_EVENT_ALIGNED:-2.8}"
low="${LOW:-2}"
high="${HIGH:-12}"

command -v valgrind >/dev/null || {
  echo "valgrind is not installed; installing it (Debian)" >&2
  apt-get install -y -q valgrind >/dev/null || { apt-get update -q && apt-get install -y -q valgrind >/dev/null; }
}
cargo build --locked -q --profile bench -p usage-benches --no-default-features --bin callgrind-scan
bin="$target"/release/callgrind-scan
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Total instructions (Ir) of one run: callgrind writes "summary: N" (or "totals: N").
count() {
  valgrind --tool=callgrind --callgrind-out-file="$work/out" "$bin" "$@" >"$work/stdout" 2>"$work/log" ||
    { cat "$work/log" >&2; exit 1; }
  awk '/^(summary|totals):/ { print $2; exit }' "$work/out"
}

status=0
printf '| chunking | instructions per byte | budget | met |\n|---|---:|---:|---|\n'
for chunking in event_aligned 128; do
  lo=$(count "$low" "$chunking")
  hi=$(count "$high" "$chunking")
  bytes=$(cat "$work/stdout")
  limit=$budget
  [ "$chunking" = event_aligned ] && limit=$budget_event_aligned
  verdict=$(python3 - "$lo" "$hi" "$bytes" "$low" "$high" "$limit" <<'PY'
import sys
lo, hi, size, low, high = map(int, sys.argv[1:6])
budget = float(sys.argv[6])
per_byte = (hi - lo) / ((high - low) * size)
print(f"{per_byte:.3f} {'yes' if per_byte <= budget else 'NO'}")
PY
)
  read -r per_byte met <<<"$verdict"
  printf '| %s | %s | %s | %s |\n' "$chunking" "$per_byte" "$limit" "$met"
  [ "$met" = yes ] || status=1
done
if [ "$status" -ne 0 ]; then
  echo "FAIL: the scanner is over its budget of instructions per byte (table above)" >&2
fi
exit "$status"
