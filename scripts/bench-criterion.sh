#!/usr/bin/env bash
# Runs a criterion bench of the usage-benches crate ROUNDS times (interleaved rounds of
# the whole bench: every reader/variant once per round) and prints the Markdown table
# for BENCHMARKS.md from the median of each round's criterion median.
#
#   scripts/bench-criterion.sh parse    # parse throughput (benches/benches/parse.rs)
#   scripts/bench-criterion.sh body     # body overhead    (benches/benches/body.rs)
#
# ROUNDS (default 3). The raw per-round numbers are kept in target/bench-<name>.rounds;
# TABLE_ONLY=1 prints the table again from them without running anything.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
bench="${1:?usage: $0 parse|body}"
rounds="${ROUNDS:-3}"
raw="$target/bench-$bench.rounds"
meta="$target/bench-$bench.meta"
mkdir -p "$target"
[ -n "${TABLE_ONLY:-}" ] && rounds=0 || : >"$raw"

for round in $(seq "$rounds"); do
  echo "round $round/$rounds" >&2
  rm -rf "$target"/criterion/"$bench"-*
  cargo bench --locked -q -p usage-benches --bench "$bench" -- --noplot >/dev/null 2>"$meta.$round"
  grep -E '^(corpus|frames) ' "$meta.$round" >"$meta" || { cat "$meta.$round" >&2; exit 1; }
  for est in "$target"/criterion/"$bench"-*/*/new/estimates.json; do
    python3 - "$est" "$round" >>"$raw" <<'PY'
import json, os, sys
new = os.path.dirname(sys.argv[1])
bench = json.load(open(os.path.join(new, "benchmark.json")))
median = json.load(open(sys.argv[1]))["median"]["point_estimate"]
print(sys.argv[2], bench["group_id"], bench["function_id"], median)
PY
  done
done

python3 - "$bench" "$raw" "$meta" <<'PY'
import statistics, sys
from collections import defaultdict

bench, raw, meta = sys.argv[1:]
# per (group, function): {round: ns}
ns = defaultdict(dict)
for line in open(raw):
    rnd, group, function, value = line.split()
    ns[(group, function)][rnd] = float(value)
rounds = sorted({r for v in ns.values() for r in v})
def med(key):
    return statistics.median(ns[key].values())
def med_ratio(a, b):
    """Median over rounds of a/b, pairing the same round."""
    return statistics.median(ns[a][r] / ns[b][r] for r in rounds if r in ns[a] and r in ns[b])
def med_diff(a, b):
    return statistics.median(ns[a][r] - ns[b][r] for r in rounds if r in ns[a] and r in ns[b])

print(f"Median of {len(rounds)} interleaved rounds (each: criterion's median of 20 samples).\n")
if bench == "parse":
    sizes = {}
    for line in open(meta):
        _, name, *kv = line.split()
        sizes[name] = {k: int(v) for k, v in (x.split("=") for x in kv)}
    for group in sorted({g for g, _ in ns}, key=lambda g: list(sizes).index(g[len("parse-"):])):
        corpus = group[len("parse-"):]
        size = sizes[corpus]
        print(f"**{corpus}** — {size['bytes']:,} bytes, {size['events']:,} events\n")
        print("| reader / chunking | time per stream | throughput | ns per event | vs naive (same chunking) | share of floor speed |")
        print("|---|---:|---:|---:|---:|---:|")
        readers = ["scanner", "typed_enum", "naive_eventsource_value", "floor_memchr_newlines"]
        chunkings = ["event_aligned", "7B", "128B", "1460B", "16KiB"]
        functions = sorted((f for g, f in ns if g == group),
                           key=lambda f: (chunkings.index(f.split("/")[1]), readers.index(f.split("/")[0])))
        for function in functions:
            reader, chunking = function.split("/")
            t = med((group, function))
            naive = (group, f"naive_eventsource_value/{chunking}")
            floor = (group, f"floor_memchr_newlines/{chunking}")
            vs_naive = f"{med_ratio(naive, (group, function)):.1f}×" if naive in ns else "–"
            vs_floor = f"{med_ratio(floor, (group, function)) * 100:.0f} %" if floor in ns else "–"
            print(f"| `{function}` | {t/1000:,.1f} µs | {size['bytes']/t*1000:,.0f} MB/s | {t/size['events']:.1f} | {vs_naive} | {vs_floor} |")
        print()
else:
    frames = {}
    for line in open(meta):
        _, corpus, chunking, *kv = line.split()
        frames[chunking] = {k: int(v) for k, v in (x.split("=") for x in kv)}
    print("| body / chunking | frames per stream | time per stream | ns per frame | over pass-through, ns per frame |")
    print("|---|---:|---:|---:|---:|")
    order = ["bare", "pass_through", "usage_noop_sink", "usage_batch_writer"]
    for group, function in sorted(ns, key=lambda k: (list(frames).index(k[1].split("/")[1]), order.index(k[1].split("/")[0]))):
        variant, chunking = function.split("/")
        n = frames[chunking]["frames"]
        t = med((group, function))
        over = med_diff((group, function), (group, f"pass_through/{chunking}")) / n
        print(f"| `{function}` | {n:,} | {t/1000:,.1f} µs | {t/n:.1f} | {over:+.1f} |")
PY
