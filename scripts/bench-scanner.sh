#!/usr/bin/env bash
# Scanner throughput against the naive reader and the memchr floor, measured in the same
# run: ROUNDS interleaved rounds of the criterion bench, the median of each round's median.
# Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-3}"
results=$(mktemp)
trap 'rm -f "$results"' EXIT

for round in $(seq "$rounds"); do
  echo "round $round/$rounds" >&2
  cargo bench --locked -q -p usage-layer --bench scanner -- \
    --warm-up-time 1 --measurement-time 3 --noplot >/dev/null 2>&1
  for dir in target/criterion/small_deltas/*/new; do
    python3 - "$dir" >>"$results" <<'PY'
import json, sys
bench = json.load(open(sys.argv[1] + "/benchmark.json"))
median = json.load(open(sys.argv[1] + "/estimates.json"))["median"]["point_estimate"]
print(bench["function_id"], bench["throughput"]["Bytes"], median)
PY
  done
done

python3 - "$results" <<'PY'
import statistics, sys
from collections import defaultdict

rounds = defaultdict(list)
for line in open(sys.argv[1]):
    name, size, ns = line.split()
    BYTES = int(size)
    rounds[name].append(float(ns))
median = {name: statistics.median(values) for name, values in rounds.items()}
def naive_for(name):
    return median["naive_eventsource_value/" + name.split("/")[1]]
print(f"Corpus: {BYTES} bytes; median of {len(next(iter(rounds.values())))} rounds.\n")
print("| reader / chunking | median time per stream | throughput | vs naive, same chunking |")
print("|---|---:|---:|---:|")
for name in sorted(median):
    ns = median[name]
    print(f"| `{name}` | {ns/1000:.1f} µs | {BYTES/ns:.2f} GB/s | {naive_for(name)/ns:.1f}× |")
PY
