// kvserve: the gRPC server. Flags fill one ServerConfig; `kvserve --help` lists them with their
// defaults. Flag names take '-' or '_' alike (--kv-cache-gb == --kv_cache_gb).
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <absl/flags/usage_config.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <string>
#include <vector>

#include "server/flag_spelling.h"
#include "server/server_config.h"

namespace {
const kvserve::ServerConfig kDefaults;
}  // namespace

ABSL_FLAG(std::string, model, kDefaults.model,
          "Hugging Face model folder (config.json + *.safetensors) or dummy:NAME (random weights)");
ABSL_FLAG(std::string, tokenizer, kDefaults.tokenizer,
          "tokenizer folder; empty: the model folder (dummy models then take prompt_ids only)");
ABSL_FLAG(std::string, host, kDefaults.host, "address to listen on");
ABSL_FLAG(int32_t, port, kDefaults.port,
          "port to listen on; 0 picks a free one (printed as 'listening on HOST:PORT')");
ABSL_FLAG(int32_t, metrics_port, kDefaults.metrics_port,
          "Prometheus /metrics port (on --host); 0: off");
ABSL_FLAG(std::string, dtype, kDefaults.dtype, "model dtype: float32, float16 or bfloat16");
ABSL_FLAG(std::string, device, kDefaults.device, "cpu, cuda or cuda:N");
ABSL_FLAG(double, kv_cache_gb, kDefaults.kv_cache_gb,
          "KV pool size in GiB; 0 on CUDA: --gpu-memory-fraction of the free memory");
ABSL_FLAG(double, gpu_memory_fraction, kDefaults.gpu_memory_fraction,
          "fraction of free GPU memory for the KV pool when --kv-cache-gb is 0");
ABSL_FLAG(int32_t, max_queue, kDefaults.max_queue,
          "waiting requests; more are refused with RESOURCE_EXHAUSTED");
ABSL_FLAG(int32_t, max_running, kDefaults.max_running, "most requests in one engine step");
ABSL_FLAG(int32_t, max_batch_tokens, kDefaults.max_batch_tokens,
          "most tokens (prefill + decode) in one engine step");
ABSL_FLAG(int32_t, prefill_chunk, kDefaults.prefill_chunk,
          "most prompt tokens of one request in one engine step");
ABSL_FLAG(int32_t, max_new_tokens_limit, kDefaults.max_new_tokens_limit,
          "the largest sampling.max_new_tokens accepted");
ABSL_FLAG(bool, cuda_graphs, kDefaults.cuda_graphs,
          "CUDA: replay decode steps from CUDA graphs captured per batch-size bucket");
ABSL_FLAG(double, drain_timeout, kDefaults.drain_timeout_s,
          "seconds in-flight streams may go on after SIGTERM/SIGINT before they end UNAVAILABLE");
ABSL_FLAG(int32_t, max_message_bytes, kDefaults.max_message_bytes,
          "largest request message; larger ones get RESOURCE_EXHAUSTED from gRPC");
ABSL_FLAG(std::string, log_level, kDefaults.log_level, "trace, debug, info, warn, error or off");
ABSL_FLAG(std::string, tls_cert, kDefaults.tls_cert,
          "PEM certificate chain: serve gRPC over TLS (with --tls-key); empty: plaintext");
ABSL_FLAG(std::string, tls_key, kDefaults.tls_key, "PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_client_ca, kDefaults.tls_client_ca,
          "PEM CA bundle: mutual TLS, every client must present a certificate it signed");
ABSL_FLAG(bool, metrics_tls, kDefaults.metrics_tls,
          "serve /metrics over HTTPS with --tls-cert/--tls-key (and --tls-client-ca); "
          "default plain HTTP");
ABSL_FLAG(std::string, api_keys_file, kDefaults.api_keys_file,
          "file of API keys, one per line ('#' comments), re-read on SIGHUP: calls need the "
          "metadata 'authorization: Bearer <key>' (health and reflection stay open); empty: open");
ABSL_FLAG(int32_t, max_concurrent_streams, kDefaults.max_concurrent_streams,
          "most concurrent calls on one connection (more wait on the client); 0: no limit");
ABSL_FLAG(double, keepalive_time, kDefaults.keepalive_time_s,
          "seconds between the server's keepalive pings on an idle connection; 0: none");
ABSL_FLAG(double, keepalive_timeout, kDefaults.keepalive_timeout_s,
          "seconds to wait for a keepalive ping's answer before closing the connection");
ABSL_FLAG(double, keepalive_min_ping_interval, kDefaults.keepalive_min_ping_interval_s,
          "shortest interval in seconds between client pings the server accepts (more often: "
          "GOAWAY too_many_pings)");
ABSL_FLAG(bool, keepalive_permit_without_calls, kDefaults.keepalive_permit_without_calls,
          "allow keepalive pings on connections without calls");
ABSL_FLAG(double, max_connection_idle, kDefaults.max_connection_idle_s,
          "close connections without calls after this many seconds; 0: never");
ABSL_FLAG(double, max_connection_age, kDefaults.max_connection_age_s,
          "close connections older than this many seconds (clients reconnect); 0: never");
ABSL_FLAG(double, max_connection_age_grace, kDefaults.max_connection_age_grace_s,
          "seconds the calls of a connection closed for its age may go on; 0: no limit");
ABSL_FLAG(double, max_request_time, kDefaults.max_request_time_s,
          "seconds a Generate call may run before it ends DEADLINE_EXCEEDED (a shorter client "
          "deadline wins); 0: no limit");

int main(int argc, char** argv) {
  kvserve::PrepareServerSignals();  // before any thread exists
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view path) {
    return path.find("server/main.cc") != absl::string_view::npos;
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "streaming gRPC server (kvserve.v1.Generation, grpc.health.v1, reflection).\n"
      "usage: kvserve [--model DIR|dummy:NAME] [--port N] ...  ('-' and '_' in flag names alike)");
  std::vector<std::string> storage;
  std::vector<char*> args = kvserve::UnderscoreFlagNames(argc, argv, storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());

  kvserve::ServerConfig config;
  config.model = absl::GetFlag(FLAGS_model);
  config.tokenizer = absl::GetFlag(FLAGS_tokenizer);
  config.host = absl::GetFlag(FLAGS_host);
  config.port = absl::GetFlag(FLAGS_port);
  config.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  config.dtype = absl::GetFlag(FLAGS_dtype);
  config.device = absl::GetFlag(FLAGS_device);
  config.kv_cache_gb = absl::GetFlag(FLAGS_kv_cache_gb);
  config.gpu_memory_fraction = absl::GetFlag(FLAGS_gpu_memory_fraction);
  config.max_queue = absl::GetFlag(FLAGS_max_queue);
  config.max_running = absl::GetFlag(FLAGS_max_running);
  config.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  config.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  config.max_new_tokens_limit = absl::GetFlag(FLAGS_max_new_tokens_limit);
  config.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  config.drain_timeout_s = absl::GetFlag(FLAGS_drain_timeout);
  config.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  config.log_level = absl::GetFlag(FLAGS_log_level);
  config.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  config.tls_key = absl::GetFlag(FLAGS_tls_key);
  config.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  config.metrics_tls = absl::GetFlag(FLAGS_metrics_tls);
  config.api_keys_file = absl::GetFlag(FLAGS_api_keys_file);
  config.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  config.keepalive_time_s = absl::GetFlag(FLAGS_keepalive_time);
  config.keepalive_timeout_s = absl::GetFlag(FLAGS_keepalive_timeout);
  config.keepalive_min_ping_interval_s = absl::GetFlag(FLAGS_keepalive_min_ping_interval);
  config.keepalive_permit_without_calls = absl::GetFlag(FLAGS_keepalive_permit_without_calls);
  config.max_connection_idle_s = absl::GetFlag(FLAGS_max_connection_idle);
  config.max_connection_age_s = absl::GetFlag(FLAGS_max_connection_age);
  config.max_connection_age_grace_s = absl::GetFlag(FLAGS_max_connection_age_grace);
  config.max_request_time_s = absl::GetFlag(FLAGS_max_request_time);

  const auto level = spdlog::level::from_str(config.log_level);
  if (level == spdlog::level::off && config.log_level != "off") {
    spdlog::error("--log-level must be trace, debug, info, warn, error or off, got {}",
                  config.log_level);
    return 2;
  }
  // Logs go to stderr; stdout carries only the "listening on" line.
  spdlog::set_default_logger(spdlog::stderr_color_mt("kvserve"));
  spdlog::set_level(level);
  return kvserve::RunServer(config);
}
