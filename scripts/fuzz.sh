#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into ./build-fuzz and fuzzes request validation and the
# proto -> engine conversion for SECONDS (default 300). ctest runs a 30 s version (request_fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f build-fuzz/CMakeCache.txt ]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S fuzz -B build-fuzz "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}"
fi
cmake --build build-fuzz -j"$(nproc)"
fuzz/run_request_fuzzer.sh "$PWD/build-fuzz" "$seconds"
