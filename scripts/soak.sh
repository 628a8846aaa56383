#!/usr/bin/env bash
# The soak test, not part of scripts/test.sh (it runs for minutes): starts the real kvserve on
# loopback with a small KV pool and queue, overloads it for DURATION seconds (default 600) with
# tests/soak's client (every served policy, cancellations, deadlines, malformed requests), checks
# what the client checks (every call ended with an allowed status, engine idle and KV pool at zero
# at the end, RSS flat after warm-up), then SIGTERMs the server, which must drain with no stream
# left and exit 0. Extra arguments go to kvserve-soak (e.g. --concurrency 128).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-600}"
shift || true
build="${KVSERVE_BUILD_DIR:-build}"
shared="${KVSERVE_SHARED:-../shared}"
[ -f "$build/build.ninja" ] || [ -f "$build/Makefile" ] || scripts/build.sh
cmake --build "$build" -j"$(nproc)" --target kvserve kvserve-soak
logs="$(mktemp -d /tmp/kvserve-soak-XXXXXX)"
metrics_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# Overload: ~8 full-context FULL requests fit the pool, 32 run at once, 32 wait, the rest are
# refused; no request runs longer than 5 s.
"$build/server/kvserve" --model "$shared/models/stories260K" --host 127.0.0.1 --port 0 \
  --metrics-port "$metrics_port" --kv-cache-gb 0.005 --max-running 32 --max-queue 32 \
  --max-new-tokens-limit 300 --max-request-time 5 >"$logs/stdout" 2>"$logs/server.log" &
pid=$!
for _ in $(seq 1 600); do
  grep -q "listening on" "$logs/stdout" && break
  kill -0 "$pid" 2>/dev/null || { cat "$logs/server.log"; exit 1; }
  sleep 0.1
done
address="$(sed -n 's/^listening on //p' "$logs/stdout")"
echo "kvserve pid $pid on $address, metrics on $metrics_port, logs in $logs"
soak=0
"$build/tests/soak/kvserve-soak" --server "$address" --metrics-port "$metrics_port" \
  --server-pid "$pid" --duration "$duration" "$@" || soak=$?
kill -TERM "$pid"
server=0
wait "$pid" || server=$?
drained="$(grep -o 'draining: [0-9]* streams in flight' "$logs/server.log" || echo 'no drain line')"
echo "server: exit $server, $drained"
[ "$soak" -eq 0 ] && [ "$server" -eq 0 ] && [ "$drained" = "draining: 0 streams in flight" ]
