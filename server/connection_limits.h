// The limits of gRPC connections (ServerConfig): largest message, concurrent streams per
// connection, keepalive (gRPC's own defaults unless changed) and connection idle time and age.
#pragma once

#include <grpcpp/server_builder.h>

#include <string>
#include <utility>
#include <vector>

#include "server/server_config.h"

namespace kvserve {

// The gRPC channel arguments the limits of `config` come to, durations in milliseconds. A limit
// that is off (0 where ServerConfig says so) is left out, so that gRPC's default applies.
std::vector<std::pair<std::string, int>> ConnectionArguments(const ServerConfig& config);

// Sets them, and the largest message received, on `builder`.
void ApplyConnectionLimits(const ServerConfig& config, grpc::ServerBuilder& builder);

}  // namespace kvserve
