// The HTTP endpoint Prometheus scrapes: GET /metrics answers the text exposition format (0.0.4).
//
// Why not prometheus-cpp-pull's Exposer: it runs on civetweb, which Debian builds to start its
// threads with a small fixed stack (~100 KiB). In a process that links the CUDA libtorch wheel,
// whose libraries need more static thread-local storage than that, pthread_create fails and the
// Exposer never starts (../shared/gpu/README.md, "Known facts"). This endpoint serves with
// cpp-httplib, whose worker threads are std::threads with the process's ordinary stack size.
//
// Threads: Start and the destructor from any one owning thread; the exposition callback runs on
// the endpoint's worker threads, concurrently with anything else (ServingMetrics::Exposition is
// thread-safe).
#pragma once

#include <absl/status/statusor.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace kvserve {

// HTTPS for the endpoint: PEM files of its certificate chain and private key, and optionally of a
// CA that every scraper's client certificate must chain to (mutual TLS).
struct MetricsTls {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // empty: no client certificate asked for
};

class MetricsServer {
 public:
  // Returns the body of /metrics. Called once per scrape.
  using Exposition = std::function<std::string()>;

  // Binds host:port (port 0: any free port, see port()) and serves until destroyed, over HTTPS
  // when `tls` is set, else plain HTTP. `exposition` and what it refers to must outlive the
  // server. Errors: UNAVAILABLE when the address cannot be bound, INVALID_ARGUMENT for a port
  // outside [0, 65535] or TLS files that cannot be loaded.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& host, int port, Exposition exposition,
      const std::optional<MetricsTls>& tls = std::nullopt);
  // Stops accepting, finishes the scrapes in flight and joins every thread.
  ~MetricsServer();

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The bound port.
  int port() const { return port_; }

 private:
  class Impl;
  MetricsServer(std::unique_ptr<Impl> impl, int port);
  std::unique_ptr<Impl> impl_;
  int port_;
};

}  // namespace kvserve
