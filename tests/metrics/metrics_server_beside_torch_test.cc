// The /metrics endpoint in a process that links libtorch, on the test device. With the CUDA
// libtorch wheel, prometheus-cpp-pull's Exposer could not start its civetweb threads there
// (metrics/metrics_server.h); this is the regression test for the GPU machine.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "metrics/metrics_server.h"
#include "metrics/serving_metrics.h"
#include "tests/metrics/exposition.h"
#include "tests/test_support.h"

namespace kvserve {
namespace {

TEST(MetricsServerBesideTorchTest, ServesAfterTorchRan) {
  const at::Tensor t = at::ones({4}, at::TensorOptions().device(testing::TestDevice()));
  ASSERT_EQ(t.sum().item<float>(), 4.0f);

  ServingMetrics metrics({"m", {"FULL"}});
  metrics.OnStep({0.001, 1, 4, 0});
  auto server = MetricsServer::Start("127.0.0.1", 0, [&] { return metrics.Exposition(); });
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  auto response = client.Get("/metrics");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(
      testing::SampleValue(response->body, "kvserve_prompt_tokens_total", {{"model_name", "m"}}),
      4);
}

}  // namespace
}  // namespace kvserve
