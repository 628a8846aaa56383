// RunServer: start-up (engine, tokenizer, gRPC with health and reflection, TLS and API keys), the
// re-read of the keys on SIGHUP and the drain on SIGTERM.
#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <iostream>
#include <thread>

#include "metrics/metrics_server.h"
#include "metrics/serving_metrics.h"
#include "server/api_key_authenticator.h"
#include "server/api_keys.h"
#include "server/connection_limits.h"
#include "server/generation_service.h"
#include "server/server_config.h"
#include "server/transport_security.h"

namespace kvserve {
namespace {

sigset_t ServerSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

// /metrics on --metrics-port, over HTTPS with the gRPC port's certificate under --metrics-tls;
// null when the port is 0.
absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetrics(const ServerConfig& config,
                                                            const ServingMetrics& metrics) {
  if (config.metrics_port == 0) return nullptr;
  std::optional<MetricsTls> tls;
  if (config.metrics_tls) tls = MetricsTls{config.tls_cert, config.tls_key, config.tls_client_ca};
  auto started = MetricsServer::Start(
      config.host, config.metrics_port, [&metrics] { return metrics.Exposition(); }, tls);
  if (started.ok()) {
    spdlog::info("metrics on {}://{}:{}/metrics", tls ? "https" : "http", config.host,
                 (*started)->port());
  }
  return started;
}

// What the gRPC port listens with: its credentials and, under --api-keys-file, the keys that its
// authenticator checks and SIGHUP re-reads.
struct PortSecurity {
  std::unique_ptr<ApiKeyStore> keys;  // null: no access control
  std::shared_ptr<grpc::ServerCredentials> credentials;
};

// Keys and certificates are read now, so that a mistake in them fails before the model loads.
absl::StatusOr<PortSecurity> SecurePort(const ServerConfig& config, ServingMetrics& metrics) {
  PortSecurity out;
  std::shared_ptr<ApiKeyAuthenticator> authenticator;
  if (!config.api_keys_file.empty()) {
    out.keys = std::make_unique<ApiKeyStore>(config.api_keys_file);
    auto count = out.keys->Load();
    if (!count.ok()) return count.status();
    spdlog::info("API keys required: {} loaded from {}", *count, out.keys->path());
    if (*count == 0)
      spdlog::warn("{} holds no key: every call but health and reflection is refused",
                   out.keys->path());
    authenticator = std::make_shared<ApiKeyAuthenticator>(out.keys.get(), &metrics);
  }
  auto credentials = ServerCredentialsFor(config, std::move(authenticator));
  if (!credentials.ok()) return credentials.status();
  out.credentials = std::move(*credentials);
  if (config.tls_cert.empty() && !IsLoopbackHost(config.host)) {
    spdlog::warn("plaintext gRPC on {}: use --tls-cert/--tls-key beyond development", config.host);
  }
  return out;
}

// SIGHUP: the keys file again. A file that cannot be read leaves the keys as they were.
void ReloadApiKeys(ApiKeyStore* keys) {
  if (keys == nullptr) {
    spdlog::info("received SIGHUP: no --api-keys-file to re-read");
    return;
  }
  auto count = keys->Load();
  if (!count.ok()) {
    spdlog::error("received SIGHUP: {}; the keys held stay", std::string(count.status().message()));
    return;
  }
  spdlog::info("received SIGHUP: {} API keys loaded from {}", *count, keys->path());
}

// The tokenizer's folder: --tokenizer, else the model's; dummy models have none unless given.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const ServerConfig& config) {
  std::string dir = config.tokenizer;
  if (dir.empty()) {
    if (absl::StartsWith(config.model, "dummy:")) return std::unique_ptr<Tokenizer>();
    dir = config.model;
  }
  return Tokenizer::Load(dir);
}

// The drain, on the signal thread: stop taking work, let streams finish, end the rest, stop gRPC.
void Drain(const ServerConfig& config, grpc::Server& server, Engine& engine,
           GenerationService& service) {
  server.GetHealthCheckService()->SetServingStatus(false);
  engine.StopAccepting();
  const auto timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(config.drain_timeout_s));
  spdlog::info("draining: {} streams in flight, waiting up to {} s", service.streams().count(),
               config.drain_timeout_s);
  if (!service.streams().WaitUntilNone(timeout)) {
    spdlog::info("drain timeout: ending {} streams with UNAVAILABLE", service.streams().count());
    engine.CancelAll(absl::UnavailableError("the server is shutting down"));
    // Every engine request has ended; let the reactors write their status before gRPC stops.
    service.streams().WaitUntilNone(std::chrono::seconds(5));
  }
  // Only instant unary calls can be left. grpc++ 1.51's callback server was seen to wait out the
  // whole Shutdown deadline while a client connection stays open, so the grace is short.
  spdlog::debug("shutting down gRPC; {} streams not done yet", service.streams().count());
  server.Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  spdlog::debug("gRPC server shut down");
}

}  // namespace

void PrepareServerSignals() {
  const sigset_t set = ServerSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

int RunServer(const ServerConfig& config) {
  if (auto s = config.Validate(); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }
  // Metrics first: /metrics answers (and a busy port fails fast) while the model loads.
  ServingMetrics metrics({config.ModelName(), {}});
  auto metrics_server = StartMetrics(config, metrics);
  if (!metrics_server.ok()) {
    spdlog::error("--metrics-port: {}", metrics_server.status().ToString());
    return 1;
  }
  auto security = SecurePort(config, metrics);
  if (!security.ok()) {
    spdlog::error("{}", std::string(security.status().message()));
    return 2;
  }
  auto tokenizer = LoadTokenizer(config);
  if (!tokenizer.ok()) {
    spdlog::error("loading the tokenizer: {}", tokenizer.status().ToString());
    return 1;
  }
  EngineConfig engine_config = config.ToEngineConfig();
  engine_config.metrics = &metrics;
  auto engine = Engine::Create(engine_config);
  if (!engine.ok()) {
    spdlog::error("starting the engine: {}", engine.status().ToString());
    return 1;
  }
  for (const PolicyDescription& policy : (*engine)->model_info().cache_policies) {
    if (policy.served) metrics.DeclarePolicy(CachePolicyName(policy.kind));
  }
  const auto max_request_time = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(config.max_request_time_s));
  GenerationService service(engine->get(), tokenizer->get(), &metrics, max_request_time);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string address = absl::StrCat(config.host, ":", config.port);
  builder.AddListeningPort(address, security->credentials, &port);
  ApplyConnectionLimits(config, builder);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    spdlog::error("could not listen on {}", address);
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  // Tests and scripts read the port from this line.
  std::cout << "listening on " << config.host << ":" << port << std::endl;
  spdlog::info("kvserve serving {} on {}:{} ({}{})", (*engine)->model_info().name, config.host,
               port, config.tls_cert.empty() ? "plaintext" : "TLS",
               config.tls_client_ca.empty() ? "" : ", client certificates required");

  std::thread signals([&] {
    const sigset_t set = ServerSignals();
    int signal = 0;
    while (sigwait(&set, &signal) == 0 && signal == SIGHUP) ReloadApiKeys(security->keys.get());
    spdlog::info("received {}, shutting down", signal == SIGTERM ? "SIGTERM" : "SIGINT");
    Drain(config, *server, **engine, service);
  });
  server->Wait();
  signals.join();
  server.reset();
  spdlog::debug("stopping the engine");
  engine->reset();
  spdlog::info("kvserve stopped");
  return 0;
}

}  // namespace kvserve
