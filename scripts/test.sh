#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Optional npm checkers for deploy/ (schemas, Dockerfile lint); their tests skip without them.
scripts/install-deploy-tools.sh || echo "npm deploy tools unavailable: their checks will be skipped"
start=$(date +%s)
scripts/build.sh
built=$(date +%s)
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 900
echo "build $((built - start)) s, tests $(($(date +%s) - built)) s"
