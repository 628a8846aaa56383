// Server reflection lists the API and the health service, so grpcurl and friends work unaided.
#include <gtest/gtest.h>

#include "tests/e2e/client.h"
#include "tests/e2e/reflection_client.h"
#include "tests/e2e/server_process.h"
#include "tests/test_support.h"

namespace kvserve::testing {
namespace {

TEST(ReflectionE2eTest, ListsGenerationAndHealth) {
  KVSERVE_REQUIRE_STORIES260K();
  ServerProcess server({});
  ASSERT_TRUE(server.started()) << server.log();
  const std::set<std::string> services = ReflectedServices(NewChannel(server.address()));
  EXPECT_TRUE(services.count("kvserve.v1.Generation"));
  EXPECT_TRUE(services.count("grpc.health.v1.Health"));
}

}  // namespace
}  // namespace kvserve::testing
