#!/usr/bin/env bash
# Installs the offline checkers of deploy/ (tests/deploy/npm/package.json, versions locked) into
# build/deploy-tools with npm: Kubernetes schema models and a Dockerfile linter. Optional: without
# them tests/deploy runs its own field checks only and says so. Needs npm and the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=build/deploy-tools
if ! command -v npm >/dev/null; then
  echo "npm not found: the deploy schema check and Dockerfile lint will be skipped" >&2
  exit 0
fi
mkdir -p "$dest"
cp tests/deploy/npm/package.json tests/deploy/npm/package-lock.json "$dest/"
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
echo "deploy tools in $dest"
