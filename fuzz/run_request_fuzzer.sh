#!/usr/bin/env bash
# Runs request_fuzzer from FUZZ_BUILD_DIR for SECONDS on a fresh corpus seeded with seeds/*.txtpb,
# and prints libFuzzer's final figures. Exit 0 when it found nothing; libFuzzer's code (and the
# crashing input under FUZZ_BUILD_DIR/findings/) otherwise.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: run_request_fuzzer.sh FUZZ_BUILD_DIR SECONDS}"
seconds="${2:?usage: run_request_fuzzer.sh FUZZ_BUILD_DIR SECONDS}"
corpus="$(mktemp -d /tmp/kvserve-fuzz-XXXXXX)"
trap 'rm -rf "$corpus"' EXIT
"$build/request_fuzz_seeds" "$corpus" "$here"/seeds/*.txtpb
mkdir -p "$build/findings"
# One worker; -rss_limit_mb keeps a runaway allocation a finding rather than the machine's problem;
# exit 1 on a finding (libFuzzer's own 77 is what ctest reads as "skipped").
status=0
"$build/request_fuzzer" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
  -error_exitcode=1 -timeout_exitcode=1 \
  -artifact_prefix="$build/findings/" "$corpus" >"$build/last_run.log" 2>&1 || status=$?
grep -E "DONE|stat::|^Done |INFO: seed corpus|^==|SUMMARY|request_fuzzer|Test unit written" \
  "$build/last_run.log" || true
echo "request_fuzzer: $(grep -oP 'stat::number_of_executed_units: \K[0-9]+' "$build/last_run.log" ||
  echo '?') executions in ${seconds} s, exit ${status}"
exit "$status"
