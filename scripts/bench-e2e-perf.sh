#!/usr/bin/env bash
# Where the end-to-end proxies' CPU goes: runs the e2e driver (one long round, variants
# interleaved stream by stream), samples every proxy at once with `perf record -e
# cpu-clock` (a software clock: this VM has no hardware counters) for PERF_SECONDS, and
# prints per variant the samples in the kernel, in the usage layer's own code (symbols
# of `usage_layer`, and `memchr`, which only the scanner calls in these proxies) and in
# the rest of user space, each against the plain proxy's total.
#
#   scripts/bench-e2e-perf.sh                    # plain,noop,writer; 25 s of samples
#   VARIANTS=plain,noop,writer,store PERF_SECONDS=40 scripts/bench-e2e-perf.sh
#
# Needs perf (Debian: linux-perf) and root, or perf_event_paranoid <= 0.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
variants="${VARIANTS:-plain,noop,writer}"
seconds="${PERF_SECONDS:-25}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)" >&2; exit 1; }
cargo build --locked -q --profile bench -p usage-benches --bin e2e
work=$(mktemp -d)
driver=
trap '[ -n "$driver" ] && kill "$driver" 2>/dev/null; rm -rf "$work"' EXIT

# Enough streams that the round outlasts the sampling: a stream takes 4-13 ms on the
# machines this ran on (3 ms assumed), and the variants take turns.
n=$(tr ',' '\n' <<<"$variants" | wc -l)
streams=$(( (seconds + 10) * 1000 / 3 / n ))
"$target/release/e2e" --rounds 1 --streams "$streams" --warmup 30 --variants "$variants" \
  >"$work/table" 2>"$work/log" &
driver=$!
sleep 5 # start-up and warm-up
pids=()
for variant in ${variants//,/ }; do
  pid=$(pgrep -f -- "--variant $variant " | head -n 1)
  [ -n "$pid" ] || { cat "$work/log" >&2; echo "no $variant proxy running" >&2; exit 1; }
  perf record -q -e cpu-clock -F 9999 -o "$work/$variant.data" -p "$pid" -- sleep "$seconds" \
    >/dev/null 2>&1 &
  pids+=("$!")
done
wait "${pids[@]}"
wait "$driver" || { cat "$work/log" >&2; exit 1; }
driver=
echo "The driver's table for the same round:"
echo
cat "$work/table"
echo

for variant in ${variants//,/ }; do
  perf report -i "$work/$variant.data" --no-children --sort sym -g none --stdio -n 2>/dev/null \
    >"$work/$variant.txt"
done
python3 - "$work" "$seconds" ${variants//,/ } <<'PY'
import re, sys
work, seconds, variants = sys.argv[1], sys.argv[2], sys.argv[3:]
line = re.compile(r'\s*[\d.]+%\s+(\d+)\s+\[(.)\]\s+(.*)')
def split(variant):
    kernel = layer = other = 0
    for text in open(f"{work}/{variant}.txt"):
        m = line.match(text)
        if not m:
            continue
        n, space, symbol = int(m.group(1)), m.group(2), m.group(3)
        if space == 'k':
            kernel += n
        elif 'usage_layer' in symbol or 'memchr' in symbol:
            layer += n
        else:
            other += n
    return kernel, layer, other
rows = {v: split(v) for v in variants}
base = sum(rows[variants[0]])
print(f"perf cpu-clock samples (10 kHz) of each proxy over the same {seconds} s of interleaved streams; percentages of the {variants[0]} proxy's total.\n")
print("| variant | samples | vs " + variants[0] + " | kernel | usage layer (usage_layer, memchr) | other user space |")
print("|---|---:|---:|---:|---:|---:|")
for v in variants:
    k, l, o = rows[v]
    t = k + l + o
    pct = lambda x: f"{100 * x / base:.2f} %"
    bk, bl, bo = rows[variants[0]]
    print(f"| {v} | {t} | {100 * (t / base - 1):+.2f} % | {pct(k)} ({100 * (k - bk) / base:+.2f}) | {pct(l)} ({100 * (l - bl) / base:+.2f}) | {pct(o)} ({100 * (o - bo) / base:+.2f}) |")
PY
