#!/usr/bin/env bash
# Offline checks of deploy/, one group per ctest test:
#   deploy_check_test.sh rules|dashboard|k8s|dockerfile TOOLS_DIR
# Exit 77 (ctest: skipped) with a message when a tool is missing; scripts/install-deps.sh installs
# promtool (Debian's prometheus), scripts/install-deploy-tools.sh the npm checkers into TOOLS_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
group=$1
modules=${2:-build/deploy-tools}/node_modules
check=tests/deploy/check_deploy.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

need() {
  command -v "$1" >/dev/null || { echo "SKIP: $1 not installed ($2)"; exit 77; }
}

case $group in
  rules)
    need promtool "apt-get install prometheus; scripts/install-deps.sh does"
    promtool --version | head -1
    promtool check config deploy/prometheus/prometheus.yml
    promtool check rules deploy/prometheus/rules/kvserve-alerts.yml
    promtool test rules tests/deploy/alerts_test.yml
    ;;
  dashboard)
    need promtool "apt-get install prometheus; scripts/install-deps.sh does"
    python3 "$check" dashboard-current
    # Every panel and variable query, Grafana variables replaced, must parse as PromQL.
    python3 "$check" panel-rules "$tmp/panels.yml"
    promtool check rules "$tmp/panels.yml"
    ;;
  k8s)
    need kubectl "Debian: kubernetes-client"
    kubectl version --client 2>/dev/null | head -2
    for dir in deploy/k8s/base deploy/k8s/overlays/gpu deploy/k8s/prometheus-adapter; do
      kubectl kustomize "$dir" > "$tmp/rendered.yaml"
      python3 "$check" k8s-json < "$tmp/rendered.yaml" > "$tmp/rendered.json"
      echo "== $dir"
      case $dir in
        */gpu) python3 "$check" k8s-required --gpu < "$tmp/rendered.json" ;;
        */base) python3 "$check" k8s-required < "$tmp/rendered.json" ;;
      esac
      if [ -d "$modules/kubernetes-models" ] && command -v node >/dev/null; then
        node tests/deploy/validate_k8s.mjs "$modules" < "$tmp/rendered.json"
      else
        echo "schema check skipped: run scripts/install-deploy-tools.sh (npm) for kubernetes-models"
      fi
    done
    ;;
  dockerfile)
    [ -x "$modules/.bin/dockerfile-utils" ] || {
      echo "SKIP: dockerfile-utils not installed (scripts/install-deploy-tools.sh)"; exit 77; }
    "$modules/.bin/dockerfile-utils" lint Dockerfile
    echo "Dockerfile: dockerfile-utils lint found nothing"
    ;;
  *)
    echo "unknown group $group"; exit 2 ;;
esac
