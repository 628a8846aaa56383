// RunServer: start-up (engine, tokenizer, gRPC with health and reflection) and the drain on
// SIGTERM.
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
#include "server/generation_service.h"
#include "server/server_config.h"

namespace kvserve {
namespace {

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
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

void BlockShutdownSignals() {
  const sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int RunServer(const ServerConfig& config) {
  if (auto s = config.Validate(); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }
  // Metrics first: /metrics answers (and a busy port fails fast) while the model loads.
  ServingMetrics metrics({config.ModelName(), {}});
  std::unique_ptr<MetricsServer> metrics_server;
  if (config.metrics_port != 0) {
    auto started = MetricsServer::Start(config.host, config.metrics_port,
                                        [&metrics] { return metrics.Exposition(); });
    if (!started.ok()) {
      spdlog::error("--metrics-port: {}", started.status().ToString());
      return 1;
    }
    metrics_server = std::move(*started);
    spdlog::info("metrics on http://{}:{}/metrics", config.host, metrics_server->port());
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
  GenerationService service(engine->get(), tokenizer->get(), &metrics);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string address = absl::StrCat(config.host, ":", config.port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(config.max_message_bytes);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    spdlog::error("could not listen on {}", address);
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  // Tests and scripts read the port from this line.
  std::cout << "listening on " << config.host << ":" << port << std::endl;
  spdlog::info("kvserve serving {} on {}:{}", (*engine)->model_info().name, config.host, port);

  std::thread signals([&] {
    const sigset_t set = ShutdownSignals();
    int signal = 0;
    sigwait(&set, &signal);
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
