#!/usr/bin/env bash
# On the GPU machine, from the checkout after `source .gpu/env.sh`: builds (Release, /tmp/build),
# runs the CUDA kernel tests against the reference, the model, policy-with-model, engine and metrics
# tests on CUDA, and fetches /metrics from the real server on CUDA. Logs go to $OUT (default /tmp/gpu-out); the
# last lines printed are a summary.
set -uo pipefail
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
export KVSERVE_SHARED=$PWD/.gpu KVSERVE_TEST_DEVICE=cuda OMP_NUM_THREADS=4
build=/tmp/build
targets=(cuda_kernels_test batched_decode_test model_test policies_with_model_test engine_test
         kvserve_metrics_torch_test kvserve kvserve-cli kvserve-bench-engine kvserve-bench-serving)
start=$(date +%s)
if ! { cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVSERVE_BUILD_TESTS=ON \
       && cmake --build $build -j16 --target "${targets[@]}"; } > "$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  echo "BUILD FAILED after $(($(date +%s) - start)) s"
  exit 1
fi
echo "built in $(($(date +%s) - start)) s"
summary=()
run() {  # run NAME COMMAND...: log to $out/NAME.log, one summary line
  local name=$1; shift
  local t0=$(date +%s)
  timeout 900 "$@" > "$out/$name.log" 2>&1
  local rc=$?
  summary+=("$name rc=$rc $(($(date +%s) - t0))s $(grep -E '^\[  (PASSED|FAILED) ' "$out/$name.log" | tr '\n' ' ')")
}
run cuda_kernels_test $build/tests/model/cuda_kernels_test
run batched_decode_test $build/tests/cache/batched_decode_test
run model_test $build/tests/model/model_test --gtest_filter='-LoadingTest.*'
run policies_with_model_test $build/tests/cache/policies_with_model_test
run engine_test $build/tests/scheduler/engine_test
run metrics_torch_test $build/tests/metrics/kvserve_metrics_torch_test

# /metrics of the real server on CUDA, after one streamed request.
port_file=$out/server.log
$build/server/kvserve --model .gpu/models/stories260K --device cuda --port 0 --metrics-port 19400 \
  > "$out/server.stdout" 2> "$port_file" &
server=$!
for _ in $(seq 100); do grep -q listening "$out/server.stdout" 2>/dev/null && break; sleep 0.2; done
address=$(sed -n 's/^listening on //p' "$out/server.stdout")
$build/cli/kvserve-cli stream --server "$address" --prompt "Once upon a time" --max-new-tokens 32 \
  > "$out/stream.log" 2>&1
python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:19400/metrics").read().decode())' \
  > "$out/metrics.txt" 2>&1
kill -TERM $server; wait $server
summary+=("metrics: $(grep -c '^kvserve_' "$out/metrics.txt") kvserve_ series; $(grep -E '^kvserve_generation_tokens_total' "$out/metrics.txt")")

grep -h '^rel_err' "$out/cuda_kernels_test.log" | sort -k3 -g | tail -8
grep -h -E '^\[  FAILED  \]|Failure|error' "$out"/*_test.log | head -20
printf '%s\n' "${summary[@]}"
