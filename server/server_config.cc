#include "server/server_config.h"

#include <absl/strings/str_cat.h>
#include <arpa/inet.h>

#include <cmath>
#include <filesystem>

namespace kvserve {
namespace {

// gRPC takes durations as int milliseconds: about 24 days at most.
constexpr double kMaxSeconds = 2e6;

absl::Status CheckSeconds(const char* flag, double seconds) {
  if (seconds >= 0 && seconds <= kMaxSeconds) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, " must be in [0, ", kMaxSeconds, "] seconds, got ", seconds));
}

// The duration flags, each checked by CheckSeconds.
struct SecondsFlag {
  const char* name;
  double value;
};

absl::Status CheckTransportSecurity(const ServerConfig& c) {
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return bad("--tls-cert and --tls-key go together: set both or neither");
  }
  const bool tls = !c.tls_cert.empty();
  if (!tls && !c.tls_client_ca.empty())
    return bad("--tls-client-ca needs --tls-cert and --tls-key");
  if (!tls && c.metrics_tls) return bad("--metrics-tls needs --tls-cert and --tls-key");
  // Bearer keys must not cross a network in clear; plaintext keys are for loopback development.
  if (!tls && !c.api_keys_file.empty() && !IsLoopbackHost(c.host)) {
    return bad(absl::StrCat("--api-keys-file on --host ", c.host,
                            " needs --tls-cert and --tls-key (keys would cross the network in "
                            "clear); without TLS, listen on a loopback address"));
  }
  return absl::OkStatus();
}

}  // namespace

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  std::string address = host;
  if (address.size() > 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  in_addr v4;
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  return inet_pton(AF_INET6, address.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

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
  if (max_concurrent_streams < 0) {
    return bad(absl::StrCat("--max-concurrent-streams must be >= 0, got ", max_concurrent_streams));
  }
  if (!(keepalive_timeout_s > 0)) {
    return bad(absl::StrCat("--keepalive-timeout must be > 0 seconds, got ", keepalive_timeout_s));
  }
  for (const SecondsFlag& flag :
       {SecondsFlag{"keepalive-time", keepalive_time_s},
        SecondsFlag{"keepalive-timeout", keepalive_timeout_s},
        SecondsFlag{"keepalive-min-ping-interval", keepalive_min_ping_interval_s},
        SecondsFlag{"max-connection-idle", max_connection_idle_s},
        SecondsFlag{"max-connection-age", max_connection_age_s},
        SecondsFlag{"max-connection-age-grace", max_connection_age_grace_s},
        SecondsFlag{"max-request-time", max_request_time_s}}) {
    if (auto s = CheckSeconds(flag.name, flag.value); !s.ok()) return s;
  }
  return CheckTransportSecurity(*this);  // the engine checks its own limits
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
