#!/usr/bin/env bash
# Installs the Debian 12 packages kvserve needs to build, test and run, if any is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libspdlog-dev prometheus-cpp-dev libsentencepiece-dev libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcpp-httplib-dev
  prometheus  # the real server and promtool, for the metrics tests (tests/e2e)
  python3     # the deploy and scrape checks
  libssl-dev  # SHA-256 of the API keys (server/api_keys.cc)
  openssl     # certificates made by the TLS tests
  clang libclang-rt-14-dev  # libFuzzer and the sanitizer runtimes (fuzz/, tests/fuzz)
)
# kubectl renders the kustomize manifests (tests/deploy); Debian's comes in kubernetes-client, but
# keep any kubectl the machine already has (another package may own /usr/bin/kubectl).
command -v kubectl >/dev/null || packages+=(kubernetes-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
