// kvserve-cli health: the standard grpc.health.v1 check of a running server, for container health
// checks (the Dockerfile's HEALTHCHECK) and scripts. Exit 0 when SERVING, 1 otherwise (not
// serving, unreachable, or no answer within --timeout), 2 on a usage error.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <iostream>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "cli/server_connection.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace kvserve {

int RunHealthCommand(const std::vector<std::string>& args) {
  ServerConnection connection;
  std::string service;
  double timeout_s = 3;
  ArgParser parser("usage: kvserve-cli health [--server HOST:PORT] [--service NAME]");
  connection.AddOptions(parser);  // health needs no API key; TLS options it does
  parser.AddString("service", &service, "service to ask about; empty: the whole server");
  parser.AddDouble("timeout", &timeout_s, "seconds to wait for the answer");
  if (auto s = parser.Parse(args); !s.ok()) {
    std::cerr << "kvserve-cli health: " << s.message() << "\n\n" << parser.Help();
    return 2;
  }
  if (parser.help_requested()) {
    std::cout << parser.Help();
    return 0;
  }
  auto opened = connection.Open();
  if (!opened.ok()) {
    std::cerr << "kvserve-cli health: " << opened.status().message() << "\n";
    return 2;
  }
  const std::string& server = connection.server;
  using grpc::health::v1::HealthCheckResponse;
  auto stub = grpc::health::v1::Health::NewStub(opened->channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    std::cout << server << ": " << status.error_message() << "\n";
    return 1;
  }
  std::cout << server << ": " << HealthCheckResponse::ServingStatus_Name(response.status()) << "\n";
  return response.status() == HealthCheckResponse::SERVING ? 0 : 1;
}

}  // namespace kvserve
