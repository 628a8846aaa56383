# syntax=docker/dockerfile:1
# kvserve on NVIDIA GPUs: the same CMake build as development, against the distribution's gRPC,
# Protobuf, Abseil, spdlog and prometheus-cpp packages and the libtorch of the matching CUDA version.
# The model is not in the image: mount it at /models (deploy/k8s mounts a read-only volume).
#   docker build -t kvserve:cuda .
#   docker run --gpus all -v /srv/models/Llama-3.2-1B:/models/model:ro -p 50051:50051 -p 9400:9400 kvserve:cuda
ARG CUDA_VERSION=12.8.1
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-${UBUNTU} AS build
ARG LIBTORCH_URL=https://download.pytorch.org/libtorch/cu128/libtorch-cxx11-abi-shared-with-deps-2.7.1%2Bcu128.zip
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
ENV TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Build dependencies: the packages of scripts/install-deps.sh, minus libtorch (CPU-only there).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       build-essential cmake ninja-build pkg-config git ca-certificates curl unzip \
       libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev \
       libspdlog-dev prometheus-cpp-dev libsentencepiece-dev nlohmann-json3-dev \
       libcpp-httplib-dev \
    && rm -rf /var/lib/apt/lists/*
RUN curl -fsSL -o /tmp/libtorch.zip "${LIBTORCH_URL}" \
    && unzip -q /tmp/libtorch.zip -d /opt \
    && rm /tmp/libtorch.zip
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVSERVE_BUILD_TESTS=OFF \
       -DCMAKE_PREFIX_PATH=/opt/libtorch \
    && cmake --build /build --target kvserve kvserve-cli \
    && install -D -m 755 /build/server/kvserve /opt/kvserve/bin/kvserve \
    && install -D -m 755 /build/cli/kvserve-cli /opt/kvserve/bin/kvserve-cli
# The shared libraries both binaries load, apart from libtorch (copied whole below), the CUDA
# driver (mounted by the NVIDIA runtime) and glibc: the runtime stage then needs no -dev packages.
RUN mkdir -p /opt/kvserve/lib \
    && ldd /opt/kvserve/bin/kvserve /opt/kvserve/bin/kvserve-cli \
       | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u \
       | grep -v -E '/opt/libtorch/|libcuda\.so|/libc\.so|/libm\.so|/ld-linux|/libpthread|/libdl\.so|/librt\.so' \
       | xargs -r cp -L -t /opt/kvserve/lib/

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-${UBUNTU} AS runtime
COPY --from=build /opt/libtorch/lib /opt/libtorch/lib
COPY --from=build /opt/kvserve /opt/kvserve
ENV LD_LIBRARY_PATH=/opt/kvserve/lib:/opt/libtorch/lib \
    PATH=/opt/kvserve/bin:${PATH}
RUN groupadd --gid 10001 kvserve \
    && useradd --uid 10001 --gid kvserve --no-create-home --shell /usr/sbin/nologin kvserve \
    && mkdir -p /models \
    && chown kvserve:kvserve /models
USER 10001:10001
VOLUME ["/models"]
EXPOSE 50051 9400
# The standard grpc.health.v1 check, by the project's own client (no grpc_health_probe download).
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["kvserve-cli", "health", "--server", "127.0.0.1:50051"]
ENTRYPOINT ["kvserve"]
CMD ["--model=/models/model", "--host=0.0.0.0", "--port=50051", "--metrics_port=9400", \
     "--device=cuda", "--dtype=bfloat16", "--kv_cache_gb=0"]
