#!/usr/bin/env bash
# Installs what is missing, builds, and generates from the default model (stories260K in
# ../shared, or $KVSERVE_SHARED/models/stories260K).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
./build/cli/kvserve-cli generate --prompt "Once upon a time" --max-new-tokens 80 "$@"
