#include "metrics/metrics_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include "metrics/serving_metrics.h"
#include "tests/metrics/exposition.h"

namespace kvserve {
namespace {

TEST(MetricsServerTest, ServesTheExpositionOnLoopback) {
  ServingMetrics metrics({"m", {"FULL"}});
  metrics.OnRequestAdmitted("FULL", 0.01);
  auto server = MetricsServer::Start("127.0.0.1", 0, [&] { return metrics.Exposition(); });
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  httplib::Client client("127.0.0.1", (*server)->port());
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  for (int scrape = 1; scrape <= 3; ++scrape) {
    auto response = client.Get("/metrics");
    ASSERT_TRUE(response) << httplib::to_string(response.error());
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->get_header_value("Content-Type"),
              "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_EQ(testing::SampleValue(response->body, "kvserve_requests_by_policy_total",
                                   {{"model_name", "m"}, {"policy", "FULL"}}),
              scrape);
    metrics.OnRequestAdmitted("FULL", 0.01);
  }
  EXPECT_EQ(client.Get("/nothing")->status, 404);
}

TEST(MetricsServerTest, ABusyPortIsUnavailable) {
  auto first = MetricsServer::Start("127.0.0.1", 0, [] { return std::string(); });
  ASSERT_TRUE(first.ok());
  auto second = MetricsServer::Start("127.0.0.1", (*first)->port(), [] { return std::string(); });
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(MetricsServer::Start("127.0.0.1", 70000, [] { return std::string(); }).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Destroying right after Start must not hang: the accept loop is running by then.
TEST(MetricsServerTest, StopsRightAfterStart) {
  for (int i = 0; i < 20; ++i) {
    auto server = MetricsServer::Start("127.0.0.1", 0, [] { return std::string(); });
    ASSERT_TRUE(server.ok());
  }
}

}  // namespace
}  // namespace kvserve
