#include "server/server_config.h"

#include <absl/strings/str_cat.h>

#include <cmath>
#include <filesystem>

namespace kvserve {

absl::Status ServerConfig::Validate() const {
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  if (port < 0 || port > 65535)
    return bad(absl::StrCat("--port must be in [0, 65535], got ", port));
  if (metrics_port < 0 || metrics_port > 65535) {
    return bad(absl::StrCat("--metrics-port must be in [0, 65535], got ", metrics_port));
  }
  if (!(kv_cache_gb >= 0) || !std::isfinite(kv_cache_gb)) {
    return bad(absl::StrCat("--kv-cache-gb must be >= 0, got ", kv_cache_gb));
  }
  if (!(gpu_memory_fraction > 0 && gpu_memory_fraction <= 1)) {
    return bad(absl::StrCat("--gpu-memory-fraction must be in (0, 1], got ", gpu_memory_fraction));
  }
  if (!(drain_timeout_s >= 0) || !std::isfinite(drain_timeout_s)) {
    return bad(absl::StrCat("--drain-timeout must be >= 0 seconds, got ", drain_timeout_s));
  }
  if (max_message_bytes < 1024) {
    return bad(absl::StrCat("--max-message-bytes must be >= 1024, got ", max_message_bytes));
  }
  return absl::OkStatus();  // the engine checks its own limits
}

std::string ServerConfig::ModelName() const {
  if (model.starts_with("dummy:")) return model;
  const std::filesystem::path path = std::filesystem::path(model).lexically_normal();
  return path.has_filename() ? path.filename().string() : path.parent_path().filename().string();
}

EngineConfig ServerConfig::ToEngineConfig() const {
  EngineConfig e;
  e.model = model;
  e.dtype = dtype;
  e.device = device;
  e.kv_cache_bytes = static_cast<int64_t>(std::llround(kv_cache_gb * (1LL << 30)));
  e.gpu_memory_fraction = gpu_memory_fraction;
  e.max_queue = max_queue;
  e.max_running = max_running;
  e.prefill_chunk = prefill_chunk;
  e.max_batch_tokens = max_batch_tokens;
  e.max_new_tokens_limit = max_new_tokens_limit;
  e.cuda_graphs = cuda_graphs;
  return e;
}

}  // namespace kvserve
