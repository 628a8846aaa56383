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

  // Transport security (transport_security.h). Both or neither of cert and key; a client CA turns
  // on mutual TLS (every client must present a certificate it signed). Empty: plaintext.
  std::string tls_cert;       // PEM certificate chain file
  std::string tls_key;        // PEM private key file
  std::string tls_client_ca;  // PEM CA bundle that client certificates must chain to
  bool metrics_tls = false;   // /metrics over HTTPS with the same certificate (and client CA)
  // Access control (api_keys.h): a file of keys, one per line, re-read on SIGHUP. Empty: open.
  std::string api_keys_file;

  // Connection limits (connection_limits.h); 0 turns a limit off where noted.
  int32_t max_concurrent_streams = 100;  // per connection; 0: gRPC's default (no limit)
  double keepalive_time_s = 7200;        // server pings an idle connection this often
  double keepalive_timeout_s = 20;       // and closes it when the ping is not answered in time
  double keepalive_min_ping_interval_s = 300;   // clients pinging more often get GOAWAY
  bool keepalive_permit_without_calls = false;  // accept client pings on connections with no call
  double max_connection_idle_s = 0;       // close connections without calls for this long; 0: never
  double max_connection_age_s = 0;        // close (GOAWAY) connections older than this; 0: never
  double max_connection_age_grace_s = 0;  // then let their calls finish this long; 0: no limit
  // Every Generate call ends with DEADLINE_EXCEEDED after this long (or at the client's deadline,
  // if earlier); 0: no limit.
  double max_request_time_s = 600;

  // INVALID_ARGUMENT naming the flag for a value out of range.
  absl::Status Validate() const;
  EngineConfig ToEngineConfig() const;
  // The model_name label of the metrics: the model folder's name (as the engine names the model),
  // or dummy:NAME.
  std::string ModelName() const;
};

// Whether `host` is a loopback address (127.0.0.0/8, ::1, [::1], localhost).
bool IsLoopbackHost(const std::string& host);

// Runs the server until SIGTERM or SIGINT, then drains (health NOT_SERVING, no new requests,
// in-flight streams get drain_timeout_s, the rest end UNAVAILABLE) and returns the exit code.
// SIGHUP re-reads the API keys file.
// REQUIRES: the signals are blocked in every thread (PrepareServerSignals() first in main).
int RunServer(const ServerConfig& config);

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it starts later, so
// that only RunServer's signal thread sees them (through sigwait), and ignores SIGPIPE: a peer
// that leaves while a TLS connection writes to it (OpenSSL writes with write(2)) must not end the
// process.
void PrepareServerSignals();

}  // namespace kvserve
