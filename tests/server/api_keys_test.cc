// API keys: the file format, reloads that replace the keys or, when the file is bad, keep them,
// and the pieces of the "authorization: Bearer <key>" check.
#include "server/api_keys.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "server/api_key_authenticator.h"

namespace kvserve {
namespace {

TEST(ApiKeysTest, ParsesOneKeyPerLineSkippingCommentsBlanksAndSpaces) {
  auto digests = ParseApiKeys("# keys\n\nalpha\n  beta\t\r\n#gamma\n");
  ASSERT_TRUE(digests.ok()) << digests.status();
  EXPECT_EQ(digests->size(), 2u);
  EXPECT_NE((*digests)[0], (*digests)[1]);
  EXPECT_TRUE(ParseApiKeys("").ok());
}

TEST(ApiKeysTest, RefusesKeysAHeaderCannotCarryNamingTheLineNotTheKey) {
  auto spaced = ParseApiKeys("good\nsecret with space\n");
  EXPECT_EQ(spaced.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(spaced.status().message().find("line 2"), std::string::npos);
  EXPECT_EQ(spaced.status().message().find("secret"), std::string::npos);
  EXPECT_FALSE(ParseApiKeys("caf\xc3\xa9\n").ok());
}

class ApiKeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/kvserve-keys-test-XXXXXX";
    close(mkstemp(name));
    path_ = name;
  }
  void TearDown() override { unlink(path_.c_str()); }
  void Write(const std::string& text) { std::ofstream(path_, std::ios::trunc) << text; }
  std::string path_;
};

TEST_F(ApiKeyStoreTest, AcceptsOnlyTheKeysOfTheLastGoodLoad) {
  ApiKeyStore store(path_);
  EXPECT_FALSE(store.Accepts("one"));  // nothing before a load
  Write("one\ntwo\n");
  ASSERT_EQ(store.Load().value_or(0), 2u);
  EXPECT_TRUE(store.Accepts("one"));
  EXPECT_TRUE(store.Accepts("two"));
  EXPECT_FALSE(store.Accepts("on"));
  EXPECT_FALSE(store.Accepts("one "));
  EXPECT_FALSE(store.Accepts(""));

  Write("two\nthree\n");
  ASSERT_EQ(store.Load().value_or(0), 2u);
  EXPECT_FALSE(store.Accepts("one"));
  EXPECT_TRUE(store.Accepts("three"));

  Write("bad key\n");
  EXPECT_EQ(store.Load().status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(store.Accepts("three"));  // kept
  unlink(path_.c_str());
  EXPECT_FALSE(store.Load().ok());
  EXPECT_TRUE(store.Accepts("two"));
}

TEST_F(ApiKeyStoreTest, AnEmptyFileRevokesEveryKey) {
  ApiKeyStore store(path_);
  Write("one\n");
  ASSERT_TRUE(store.Load().ok());
  Write("");
  ASSERT_EQ(store.Load().value_or(9), 0u);
  EXPECT_FALSE(store.Accepts("one"));
}

TEST(ApiKeyAuthenticatorTest, BearerKeyTakesTheSchemeInAnyCase) {
  EXPECT_EQ(ApiKeyAuthenticator::BearerKey("Bearer abc"), "abc");
  EXPECT_EQ(ApiKeyAuthenticator::BearerKey("bearer  abc"), "abc");
  EXPECT_EQ(ApiKeyAuthenticator::BearerKey("BEARER abc"), "abc");
  EXPECT_EQ(ApiKeyAuthenticator::BearerKey("Basic abc"), "");
  EXPECT_EQ(ApiKeyAuthenticator::BearerKey("Bearer"), "");
  EXPECT_EQ(ApiKeyAuthenticator::BearerKey("Bearer "), "");
  EXPECT_EQ(ApiKeyAuthenticator::BearerKey("abc"), "");
}

TEST(ApiKeyAuthenticatorTest, OnlyHealthAndReflectionAreOpen) {
  EXPECT_TRUE(ApiKeyAuthenticator::IsOpenMethod("/grpc.health.v1.Health/Check"));
  EXPECT_TRUE(ApiKeyAuthenticator::IsOpenMethod("/grpc.health.v1.Health/Watch"));
  EXPECT_TRUE(ApiKeyAuthenticator::IsOpenMethod(
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"));
  EXPECT_FALSE(ApiKeyAuthenticator::IsOpenMethod("/kvserve.v1.Generation/Generate"));
  EXPECT_FALSE(ApiKeyAuthenticator::IsOpenMethod("/kvserve.v1.Generation/GetModelInfo"));
  EXPECT_FALSE(ApiKeyAuthenticator::IsOpenMethod("/grpc.health.v1.HealthX/Check"));
  EXPECT_FALSE(ApiKeyAuthenticator::IsOpenMethod(""));
}

// The processor itself, as gRPC calls it.
TEST(ApiKeyAuthenticatorTest, ProcessRefusesWithoutAGoodKeyAndConsumesAGoodOne) {
  char name[] = "/tmp/kvserve-keys-test-XXXXXX";
  close(mkstemp(name));
  std::ofstream(name) << "k1\n";
  ApiKeyStore store(name);
  ASSERT_TRUE(store.Load().ok());
  unlink(name);
  ApiKeyAuthenticator authenticator(&store, nullptr);
  using Input = grpc::AuthMetadataProcessor::InputMetadata;
  using Output = grpc::AuthMetadataProcessor::OutputMetadata;
  auto process = [&](Input input, Output* consumed) {
    Output response;
    return authenticator.Process(input, nullptr, consumed, &response).error_code();
  };
  const std::string generate = "/kvserve.v1.Generation/Generate";
  Output consumed;
  EXPECT_EQ(process({{":path", generate}}, &consumed), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(process({{":path", generate}, {"authorization", "Bearer k2"}}, &consumed),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      process({{":path", generate}, {"authorization", "Bearer k1"}, {"authorization", "Bearer k2"}},
              &consumed),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(consumed.empty());
  EXPECT_EQ(process({{":path", "/grpc.health.v1.Health/Check"}}, &consumed), grpc::StatusCode::OK);
  EXPECT_EQ(process({{":path", generate}, {"authorization", "Bearer k1"}}, &consumed),
            grpc::StatusCode::OK);
  EXPECT_EQ(consumed.count("authorization"), 1u);
}

}  // namespace
}  // namespace kvserve
