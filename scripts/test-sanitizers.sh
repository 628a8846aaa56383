#!/usr/bin/env bash
# The end-to-end suite under AddressSanitizer + UndefinedBehaviorSanitizer (not part of
# scripts/test.sh: the sanitized build and run take long on 2 cores). Builds ./build-asan
# (-DKVSERVE_SANITIZE=ON, RelWithDebInfo) and runs server_e2e_test there: every kvserve the tests
# start is the sanitized binary, stopped with SIGTERM so that LeakSanitizer runs at its exit, and a
# test fails when the server's log holds any sanitizer report (tests/e2e/server_process.h). UB
# aborts at its first report (-fno-sanitize-recover=undefined). Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ ! -f build-asan/CMakeCache.txt ]; then
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S . -B build-asan "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKVSERVE_SANITIZE=ON "${launcher[@]}"
fi
cmake --build build-asan -j"$(nproc)" --target kvserve server_e2e_test
export ASAN_OPTIONS="detect_leaks=1:strict_init_order=1:check_initialization_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# One test at a time: ASan makes the model 2-3x slower and the lifecycle tests have deadlines.
ctest --test-dir build-asan -R 'E2eTest\.' --output-on-failure -j1 --timeout 900 "$@"
