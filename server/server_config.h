// Everything the kvserve binary is configured with, filled from its flags (server/main.cc), with
// the defaults --help shows.
#pragma once

#include <absl/status/status.h>

#include <cstdint>
#include <string>

#include "scheduler/engine.h"

namespace kvserve {

struct ServerConfig {
  std::string model = "../shared/models/stories260K";  // a Hugging Face folder or dummy:NAME
  std::string tokenizer;  // folder with tokenizer.json/.model; empty: the model folder
  std::string host = "127.0.0.1";
  int32_t port = 50051;         // 0: any free port, printed as "listening on HOST:PORT"
  int32_t metrics_port = 9400;  // Prometheus /metrics on host:metrics_port; 0: off
  std::string dtype = "float32";
  std::string device = "cpu";
  double kv_cache_gb = 1.0;  // KV pool size in GiB; 0: a fraction of free device memory (CUDA)
  double gpu_memory_fraction = 0.9;
  int32_t max_queue = 1024;
  int32_t max_running = 256;
  int32_t max_batch_tokens = 4096;
  int32_t prefill_chunk = 512;
  int32_t max_new_tokens_limit = 4096;
  bool cuda_graphs = true;
  double drain_timeout_s = 30;          // SIGTERM: how long in-flight streams may go on
  int32_t max_message_bytes = 4 << 20;  // the largest request message accepted
  std::string log_level = "info";

  // INVALID_ARGUMENT naming the flag for a value out of range.
  absl::Status Validate() const;
  EngineConfig ToEngineConfig() const;
  // The model_name label of the metrics: the model folder's name (as the engine names the model),
  // or dummy:NAME.
  std::string ModelName() const;
};

// Runs the server until SIGTERM or SIGINT, then drains (health NOT_SERVING, no new requests,
// in-flight streams get drain_timeout_s, the rest end UNAVAILABLE) and returns the exit code.
// REQUIRES: SIGTERM and SIGINT are blocked in every thread (BlockShutdownSignals() first in main).
int RunServer(const ServerConfig& config);

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts later, so that only
// RunServer's signal thread sees them (through sigwait).
void BlockShutdownSignals();

}  // namespace kvserve
