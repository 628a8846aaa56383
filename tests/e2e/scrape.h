// GET /metrics of a running kvserve, for end-to-end tests that check what the engine counted.
#pragma once

#include <httplib.h>

#include <string>

namespace kvserve::testing {

// The exposition text on plain HTTP at 127.0.0.1:`port`; empty when nothing answers 200.
inline std::string ScrapeMetrics(int port) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  auto response = client.Get("/metrics");
  return response && response->status == 200 ? response->body : std::string();
}

}  // namespace kvserve::testing
