#!/usr/bin/env bash
# Installs what is missing, builds, starts the kvserve server on the default model (stories260K in
# ../shared, or --model DIR given here) and streams a sample request through it, then stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
model="${KVSERVE_SHARED:-../shared}/models/stories260K"
log=$(mktemp)
./build/server/kvserve --model "$model" --port 0 "$@" >"$log.out" 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log" "$log.out"' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$log.out" 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
address=$(sed -n 's/^listening on //p' "$log.out")
echo "kvserve is listening on $address; streaming a sample request:"
./build/cli/kvserve-cli stream --server "$address" --prompt "Once upon a time" --max-new-tokens 100
echo "and the same prompt with a StreamingLLM cache of 32 tokens:"
./build/cli/kvserve-cli stream --server "$address" --prompt "Once upon a time" --max-new-tokens 100 \
  --policy STREAMING_LLM --budget 32
