#!/usr/bin/env bash
# One stream at a time, end to end: the time a client takes to read the whole small-delta
# stream (164,467 bytes, 1,312 events, each written and flushed on its own by the e2e
# bench's stand-in upstream) directly from the upstream, and through the release
# reference server (SQLite, Plan = the stand-in, Bedrock off) — interleaved in one run.
# Also the server's CPU time per stream (/proc/PID/stat), so the difference can be read
# against it: with TCP_NODELAY on the accepted sockets the proxy should add about its CPU
# time and little else (without it, Nagle held the burst's small writes for delayed ACKs).
#
#   scripts/bench-latency.sh          # 300 streams each way (after 30 to warm up)
#   STREAMS=1000 scripts/bench-latency.sh
#   SERVER_BIN=/elsewhere/reference-server scripts/bench-latency.sh   # another build
#   SERVER_ARGS=--tcp-nodelay=false scripts/bench-latency.sh          # more serve flags
#   CLIENT=python scripts/bench-latency.sh    # http.client on keep-alive connections
#                                             # instead of a curl process per stream
#
# Prints a Markdown table (medians and quartiles, ms) for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
streams="${STREAMS:-300}"
warmup="${WARMUP:-30}"
[ -n "${SERVER_BIN:-}" ] || cargo build --locked -q --release -p reference-server
cargo build --locked -q --profile bench -p usage-benches --bin e2e
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] && cp "$work/server.err" /tmp/server.err; rm -rf "$work"; }
trap cleanup EXIT

"$target/release/e2e" upstream >"$work/upstream.out" &
pids+=($!)
until grep -q '^listening ' "$work/upstream.out" 2>/dev/null; do sleep 0.1; done
upstream=$(awk '/^listening / { print $2; exit }' "$work/upstream.out")

server="${SERVER_BIN:-$target/release/reference-server}"
export PROXY_STATE_DIR="$work" PROXY_DATABASE_URL="sqlite://$work/proxy.db?mode=rwc"
user=$("$server" users create --name latency 2>/dev/null | tail -1)
key=$("$server" keys create --user "$user" 2>/dev/null | tail -1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn "$server" serve --bind "127.0.0.1:$port" --plan-api-url "http://$upstream" \
  --bedrock-enabled=false --metrics=false ${SERVER_ARGS:-} 2>"$work/server.err" &
server_pid=$!
pids+=("$server_pid")
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.1; done

body='{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
fetch() { # url -> seconds to read the whole body
  curl -s -o /dev/null -w '%{time_total}\n' -H 'content-type: application/json' --data "$body" "$1"
}
direct="http://$upstream/v1/messages"
proxied="http://127.0.0.1:$port/ak/$key/v1/messages"
cpu() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
ticks=$(getconf CLK_TCK)
if [ "${CLIENT:-curl}" = curl ]; then
  for _ in $(seq "$warmup"); do fetch "$direct" >/dev/null; fetch "$proxied" >/dev/null; done
  cpu_before=$(cpu)
  for _ in $(seq "$streams"); do
    fetch "$direct" >>"$work/direct"
    fetch "$proxied" >>"$work/proxied"
  done
  cpu_after=$(cpu)
else
  # Python's http.client, one keep-alive connection each way: a client that reads the
  # stream in its own pieces and ACKs as Linux does by default (delayed ACKs).
  python3 - "$upstream" "127.0.0.1:$port" "$key" "$warmup" "$streams" "$work" "$body" <<'PY' &
import http.client, sys, time
upstream, proxy, key, warmup, streams, work, body = sys.argv[1:8]
def fetcher(host, path):
    connection = [http.client.HTTPConnection(host)]
    def fetch():
        # A connection the server closed between streams is opened again, untimed.
        for attempt in range(2):
            try:
                started = time.perf_counter()
                connection[0].request("POST", path, body=body, headers={"content-type": "application/json"})
                response = connection[0].getresponse()
                while response.read(65536):
                    pass
                return time.perf_counter() - started
            except (ConnectionError, http.client.HTTPException):
                connection[0].close()
                connection[0] = http.client.HTTPConnection(host)
        raise RuntimeError(f"{host}: two connections failed in a row")
    return fetch
direct = fetcher(upstream, "/v1/messages")
proxied = fetcher(proxy, f"/ak/{key}/v1/messages")
for _ in range(int(warmup)):
    direct(); proxied()
open(f"{work}/ready", "w").close()
while not __import__("os").path.exists(f"{work}/go"):
    time.sleep(0.01)
with open(f"{work}/direct", "w") as d, open(f"{work}/proxied", "w") as p:
    for _ in range(int(streams)):
        d.write(f"{direct()}\n"); p.write(f"{proxied()}\n")
PY
  client=$!
  until [ -e "$work/ready" ]; do sleep 0.05; done
  cpu_before=$(cpu)
  touch "$work/go"
  wait "$client"
  cpu_after=$(cpu)
fi
python3 - "$work/direct" "$work/proxied" "$cpu_before" "$cpu_after" "$ticks" "$streams" <<'PY'
import statistics, sys
direct = [float(x) * 1000 for x in open(sys.argv[1])]
proxied = [float(x) * 1000 for x in open(sys.argv[2])]
cpu_ms = (int(sys.argv[4]) - int(sys.argv[3])) * 1000 / int(sys.argv[5]) / int(sys.argv[6])
def q(values):
    values = sorted(values)
    n = len(values)
    return values[n // 4], statistics.median(values), values[(3 * n) // 4]
d, p = q(direct), q(proxied)
import os
print(f"{len(direct)} streams each way, interleaved, one at a time ({os.environ.get('CLIENT', 'curl')}):\n")
print("| path | 25 % | median | 75 % |")
print("|---|---:|---:|---:|")
print(f"| direct from the upstream | {d[0]:.2f} ms | {d[1]:.2f} ms | {d[2]:.2f} ms |")
print(f"| through the reference server | {p[0]:.2f} ms | {p[1]:.2f} ms | {p[2]:.2f} ms |")
print(f"\nThe proxy adds {p[1] - d[1]:.2f} ms at the median; its CPU time is {cpu_ms:.2f} ms per stream "
      f"(user + system, /proc, over the {sys.argv[6]} proxied streams).")
PY
