#!/usr/bin/env bash
# Run in the project's root on the development machine, instead of ../shared/gpu/prepare.sh: fills
# .gpu/ as that script does, then adds the Debian packages kvserve needs beyond its list (debs.txt,
# which we do not own). .gpu/env.sh unpacks every .deb in .gpu/debs on the GPU machine.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
../shared/gpu/prepare.sh

# metrics/: cpp-httplib serves /metrics (metrics_server.h says why not prometheus-cpp-pull); its
# header includes the Brotli headers (the library is built with Brotli support).
extra=(libcpp-httplib0.11 libcpp-httplib-dev libbrotli-dev libbrotli1)

missing=()
for p in "${extra[@]}"; do
  compgen -G ".gpu/debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  (cd .gpu/debs && apt-get download "${missing[@]}")
fi
echo "extra packages in .gpu/debs: ${extra[*]}"
