#include "metrics/metrics_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include "metrics/serving_metrics.h"
#include "tests/metrics/exposition.h"
#include "tests/test_pki.h"

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

// Fetches /metrics over HTTPS trusting the test CA, with a client certificate when given.
httplib::Result ScrapeHttps(int port, const testing::TestPki& pki, bool with_certificate) {
  auto client = with_certificate ? std::make_unique<httplib::SSLClient>(
                                       "127.0.0.1", port, pki.client_cert(), pki.client_key())
                                 : std::make_unique<httplib::SSLClient>("127.0.0.1", port);
  client->set_ca_cert_path(pki.ca_cert().c_str());
  client->enable_server_certificate_verification(true);
  client->set_connection_timeout(5);
  client->set_read_timeout(5);
  return client->Get("/metrics");
}

TEST(MetricsServerTest, ServesHttpsAndWithAClientCaOnlyToCertifiedScrapers) {
  testing::TestPki pki;
  ASSERT_TRUE(pki.ok()) << pki.error();
  auto https = MetricsServer::Start(
      "127.0.0.1", 0, [] { return std::string("up 1\n"); },
      MetricsTls{pki.server_cert(), pki.server_key(), ""});
  ASSERT_TRUE(https.ok()) << https.status();
  auto scraped = ScrapeHttps((*https)->port(), pki, /*with_certificate=*/false);
  ASSERT_TRUE(scraped) << httplib::to_string(scraped.error());
  EXPECT_EQ(scraped->body, "up 1\n");
  httplib::Client plain("127.0.0.1", (*https)->port());
  plain.set_read_timeout(5);
  EXPECT_FALSE(plain.Get("/metrics"));

  auto mutual = MetricsServer::Start(
      "127.0.0.1", 0, [] { return std::string("up 1\n"); },
      MetricsTls{pki.server_cert(), pki.server_key(), pki.ca_cert()});
  ASSERT_TRUE(mutual.ok()) << mutual.status();
  EXPECT_FALSE(ScrapeHttps((*mutual)->port(), pki, /*with_certificate=*/false));
  auto certified = ScrapeHttps((*mutual)->port(), pki, /*with_certificate=*/true);
  ASSERT_TRUE(certified) << httplib::to_string(certified.error());
  EXPECT_EQ(certified->status, 200);

  EXPECT_EQ(MetricsServer::Start(
                "127.0.0.1", 0, [] { return std::string(); },
                MetricsTls{pki.dir() + "/none.pem", pki.server_key(), ""})
                .status()
                .code(),
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
