#include "server/connection_limits.h"

#include <grpc/grpc.h>

#include <climits>
#include <cmath>

namespace kvserve {
namespace {

int Milliseconds(double seconds) { return static_cast<int>(std::llround(seconds * 1000)); }

}  // namespace

std::vector<std::pair<std::string, int>> ConnectionArguments(const ServerConfig& c) {
  std::vector<std::pair<std::string, int>> args = {
      // 0 is "never ping", which gRPC spells INT_MAX.
      {GRPC_ARG_KEEPALIVE_TIME_MS,
       c.keepalive_time_s > 0 ? Milliseconds(c.keepalive_time_s) : INT_MAX},
      {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Milliseconds(c.keepalive_timeout_s)},
      {GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
       Milliseconds(c.keepalive_min_ping_interval_s)},
      {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, c.keepalive_permit_without_calls ? 1 : 0},
  };
  if (c.max_concurrent_streams > 0) {
    args.emplace_back(GRPC_ARG_MAX_CONCURRENT_STREAMS, c.max_concurrent_streams);
  }
  if (c.max_connection_idle_s > 0) {
    args.emplace_back(GRPC_ARG_MAX_CONNECTION_IDLE_MS, Milliseconds(c.max_connection_idle_s));
  }
  if (c.max_connection_age_s > 0) {
    args.emplace_back(GRPC_ARG_MAX_CONNECTION_AGE_MS, Milliseconds(c.max_connection_age_s));
  }
  if (c.max_connection_age_grace_s > 0) {
    args.emplace_back(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                      Milliseconds(c.max_connection_age_grace_s));
  }
  return args;
}

void ApplyConnectionLimits(const ServerConfig& config, grpc::ServerBuilder& builder) {
  builder.SetMaxReceiveMessageSize(config.max_message_bytes);
  for (const auto& [name, value] : ConnectionArguments(config)) {
    builder.AddChannelArgument(name, value);
  }
}

}  // namespace kvserve
