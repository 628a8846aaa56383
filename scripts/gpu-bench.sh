#!/usr/bin/env bash
# On the GPU machine after scripts/gpu-check.sh built /tmp/build: the performance figures of
# docs/performance.md. Sections (arguments, any order): decode maintenance streams ttft serving
# prefill profile maintenance-profile hf.
# Tables go to stdout and $OUT/<section>.md, JSON to $OUT/<section>.json.
set -uo pipefail
out=${OUT:-/tmp/gpu-out}/bench  # everything in one folder, packed into one archive at the end
mkdir -p "$out"
trap 'tar czf "$out/../bench.tgz" -C "$out" .' EXIT
build=/tmp/build
bench=$build/bench/kvserve-bench-engine
for section in "$@"; do
  case $section in
    decode)  # decode steps, full 4K caches and 512-token budgets, both shapes
      for model in llama-3-8b llama-2-7b; do
        $bench --model dummy:$model --modes decode --batches 1,8,64,256 \
          --caches FULL:4096,STREAMING_LLM:512 --steps 32 --warmup 4 \
          --json-out "$out/decode-$model.json" 2>&1 | tee -a "$out/decode.md" | grep '^|'
      done ;;
    maintenance)  # every policy at batch 64, 512-token budgets: the maintenance part of a step
      $bench --model dummy:llama-3-8b --modes decode --batches 64 --steps 16 --warmup 3 \
        --caches FULL:512,STREAMING_LLM:512,H2O:512,SNAPKV:512,CASCADING:512,TREEKV:512,FREQKV:512 \
        --json-out "$out/maintenance.json" 2>&1 | tee "$out/maintenance.md" | grep '^|' ;;
    streams)  # 800 (the target) and 853 512-token streams: 853 is what an 80 GB card's 60 GB KV
      # pool holds at 72 MB (512 + a 64-token prefill chunk of room) a stream; the step time is the
      # ITL. One run per case: two policies' caches at 853 do not fit the H200 together.
      for batch in 800 853; do
        for cache in FULL:512 STREAMING_LLM:512; do
          $bench --model dummy:llama-3-8b --modes decode --batches $batch --caches $cache \
            --steps 16 --warmup 3 --json-out "$out/streams-$batch-${cache%%:*}.json" 2>&1 \
            | tee -a "$out/streams.md" | grep '^| dummy'
        done
      done ;;
    ttft)  # idle engine, one prompt in one chunk; llama-3.1-8b: llama-3-8b's shape, 128K context
      $bench --model dummy:llama-3.1-8b --modes ttft --ttft-prompts 4096,32768 --ttft-repeats 5 \
        --prefill-chunk 32768 --max-batch-tokens 32768 --kv-cache-gb 40 \
        --json-out "$out/ttft.json" 2>&1 | tee "$out/ttft.md" | grep '^|' ;;
    serving)  # batch 64 through the engine alone, then through the gRPC server
      # the same engine settings on both paths
      engine=(--max-running 64 --prefill-chunk 512 --max-batch-tokens 4096 --kv-cache-gb 40)
      $bench --model dummy:llama-3-8b --modes workload --requests 256 --concurrency 64 \
        --prompt-len 128 --output-len 256 --cache STREAMING_LLM:512 "${engine[@]}" \
        --json-out "$out/engine-workload.json" 2>&1 | tee "$out/serving.md" | grep '^|'
      $build/server/kvserve --model dummy:llama-3-8b --device cuda --dtype bfloat16 --port 0 \
        --metrics-port 0 "${engine[@]}" \
        > "$out/serve.stdout" 2> "$out/serve.log" &
      server=$!
      for _ in $(seq 300); do grep -q listening "$out/serve.stdout" 2>/dev/null && break; sleep 0.2; done
      address=$(sed -n 's/^listening on //p' "$out/serve.stdout")
      $build/bench/kvserve-bench-serving --server "$address" --num-requests 256 --concurrency 64 \
        --prompt-len 128 --output-len 256 --policies STREAMING_LLM:512 \
        --json-out "$out/grpc-workload.json" 2>&1 | tee -a "$out/serving.md"
      kill -TERM $server; wait $server ;;
    prefill)  # whole-prompt prefill, dense against CritiPrefill with the spec's defaults
      $bench --model dummy:llama-3-8b --modes prefill --prefill-lengths 8192,32768,131072 \
        --prefill-repeats 3 --json-out "$out/prefill.json" 2>&1 | tee "$out/prefill.md" | grep '^|' ;;
    profile)  # per-kernel device time of 2 eager decode steps at batch 64 (Nsight Compute)
      ncu --profile-from-start off --clock-control none --print-summary per-kernel \
        --metrics gpu__time_duration.sum $bench --model dummy:llama-3-8b --modes decode \
        --batches 64 --caches STREAMING_LLM:512 --steps 2 --warmup 1 --cuda-graphs=false \
        --profiler-range > "$out/profile.txt" 2>&1
      # kernel (first 70 characters), then its invocations and mean duration
      awk '/\(.*\)x\(.*\), Context/ {name = substr($0, 3, 70)}
           /Invocations|invocations/ {calls = $NF}
           /gpu__time_duration.sum/ {print "profile | " name " | " calls " | " $NF " " $2}' \
        "$out/profile.txt" ;;
    maintenance-profile)  # Cascading and TreeKV at batch 64: the maintenance kernels' device time
      # (Nsight Compute, each kernel alone)
      for cache in CASCADING:512 TREEKV:512; do
        run=(--model dummy:llama-3-8b --modes decode --batches 64 --caches $cache --steps 4
             --warmup 3 --profiler-range)
        name=${cache%%:*}
        ncu --profile-from-start off --clock-control none --kernel-name regex:'Chain|Evict' \
          --print-summary per-kernel --metrics gpu__time_duration.sum $bench "${run[@]}" \
          > "$out/ncu-$name.txt" 2>&1
        grep -E 'ChainKernel|EvictKernel|gpu__time_duration' "$out/ncu-$name.txt" | sed "s/^/$name /"
      done ;;
    hf)
      python3 bench/hf_baseline.py --model llama-3-8b --cases 1x4096,64x512 --new-tokens 64 \
        --json-out "$out/hf.json" 2>&1 | tee "$out/hf.md" ;;
    *) echo "unknown section $section"; exit 2 ;;
  esac
done
