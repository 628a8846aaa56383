#include "metrics/metrics_server.h"

#include <absl/strings/str_cat.h>
#include <httplib.h>

#include <atomic>
#include <thread>

namespace kvserve {
namespace {

// Scrapes are few and small: a handful of workers is enough, and a slow or idle keep-alive client
// must not hold one for long.
constexpr size_t kWorkers = 4;
constexpr time_t kKeepAliveSeconds = 2;
constexpr time_t kSocketTimeoutSeconds = 10;
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

// A plain or an HTTPS server: httplib's SSLServer is a Server that handshakes first.
std::unique_ptr<httplib::Server> NewHttpServer(const std::optional<MetricsTls>& tls) {
  if (!tls) return std::make_unique<httplib::Server>();
  return std::make_unique<httplib::SSLServer>(
      tls->cert_file.c_str(), tls->key_file.c_str(),
      tls->client_ca_file.empty() ? nullptr : tls->client_ca_file.c_str());
}

}  // namespace

class MetricsServer::Impl {
 public:
  Impl(Exposition exposition, const std::optional<MetricsTls>& tls)
      : exposition_(std::move(exposition)), server_holder_(NewHttpServer(tls)) {
    // httplib takes ownership of the queue it gets from this factory.
    server_.new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
    // httplib's default options add SO_REUSEPORT, which would let a second process bind the same
    // port and take half the scrapes; SO_REUSEADDR alone allows quick restarts.
    server_.set_socket_options([](socket_t socket) {
      int yes = 1;
      setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    server_.set_keep_alive_timeout(kKeepAliveSeconds);
    server_.set_read_timeout(kSocketTimeoutSeconds);
    server_.set_write_timeout(kSocketTimeoutSeconds);
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
      response.set_content(exposition_(), kContentType);
    });
    server_.Get("/", [](const httplib::Request&, httplib::Response& response) {
      response.set_content("kvserve metrics: see /metrics\n", "text/plain");
    });
  }

  ~Impl() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  // False when the TLS files could not be loaded.
  bool valid() const { return server_.is_valid(); }

  absl::StatusOr<int> Bind(const std::string& host, int port) {
    if (port == 0) {
      const int bound = server_.bind_to_any_port(host);
      if (bound > 0) return bound;
    } else if (server_.bind_to_port(host, port)) {
      return port;
    }
    return absl::UnavailableError(
        absl::StrCat("cannot bind the metrics endpoint to ", host, ":", port));
  }

  // Runs the accept loop on its own thread and returns once it is running, so that a destructor
  // right after Start finds a loop to stop.
  void Serve() {
    thread_ = std::thread([this] {
      server_.listen_after_bind();
      finished_ = true;
    });
    while (!server_.is_running() && !finished_) std::this_thread::yield();
  }

 private:
  Exposition exposition_;
  std::unique_ptr<httplib::Server> server_holder_;
  httplib::Server& server_ = *server_holder_;
  std::atomic<bool> finished_{false};  // the accept loop returned
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& host, int port, Exposition exposition,
    const std::optional<MetricsTls>& tls) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("the metrics port must be in [0, 65535], got ", port));
  }
  auto impl = std::make_unique<Impl>(std::move(exposition), tls);
  if (!impl->valid()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the metrics endpoint cannot load its TLS files ", tls->cert_file, ", ",
                     tls->key_file, " ", tls->client_ca_file));
  }
  auto bound = impl->Bind(host, port);
  if (!bound.ok()) return bound.status();
  impl->Serve();
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl), *bound));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl, int port)
    : impl_(std::move(impl)), port_(port) {}

MetricsServer::~MetricsServer() = default;

}  // namespace kvserve
