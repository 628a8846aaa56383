// Server reflection lists the API and the health service, so grpcurl and friends work unaided.
#include <gtest/gtest.h>

#include <set>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/e2e/client.h"
#include "tests/e2e/server_process.h"
#include "tests/test_support.h"

namespace kvserve::testing {
namespace {

TEST(ReflectionE2eTest, ListsGenerationAndHealth) {
  KVSERVE_REQUIRE_STORIES260K();
  ServerProcess server({});
  ASSERT_TRUE(server.started()) << server.log();
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  SetTimeout(context, std::chrono::seconds(10));
  auto stream = stub->ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::set<std::string> services;
  for (const auto& s : response.list_services_response().service()) services.insert(s.name());
  EXPECT_TRUE(services.count("kvserve.v1.Generation"));
  EXPECT_TRUE(services.count("grpc.health.v1.Health"));
  while (stream->Read(&response)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace kvserve::testing
