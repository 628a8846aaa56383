// Bad requests get INVALID_ARGUMENT naming the field, one by one, while a long good stream goes on;
// an oversized message gets RESOURCE_EXHAUSTED from gRPC itself; a good request succeeds after.
#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <thread>

#include "tests/e2e/client.h"
#include "tests/e2e/server_process.h"
#include "tests/test_support.h"

namespace kvserve::testing {
namespace {

struct BadCase {
  std::string name;
  std::function<void(v1::GenerateRequest&)> mutate;
  std::string field;  // must appear in the error message
};

// Sets a raw number on an enum field, as an old or foreign client could.
void SetRawEnum(google::protobuf::Message& message, const std::string& field, int value) {
  message.GetReflection()->SetEnumValue(&message, message.GetDescriptor()->FindFieldByName(field),
                                        value);
}

std::vector<BadCase> BadCases() {
  using R = v1::GenerateRequest;
  return {
      {"empty prompt", [](R& r) { r.clear_prompt_ids(); }, "prompt"},
      {"both prompt and ids", [](R& r) { r.set_prompt("Once"); }, "prompt_ids"},
      {"id above vocabulary", [](R& r) { r.add_prompt_ids(512); }, "prompt_ids[5]"},
      {"negative id", [](R& r) { r.set_prompt_ids(1, -3); }, "prompt_ids[1]"},
      {"max_new_tokens 0", [](R& r) { r.mutable_sampling()->set_max_new_tokens(0); },
       "sampling.max_new_tokens"},
      {"max_new_tokens negative", [](R& r) { r.mutable_sampling()->set_max_new_tokens(-4); },
       "sampling.max_new_tokens"},
      {"max_new_tokens above limit", [](R& r) { r.mutable_sampling()->set_max_new_tokens(301); },
       "sampling.max_new_tokens must be in [1, 300]"},
      {"temperature negative", [](R& r) { r.mutable_sampling()->set_temperature(-0.5f); },
       "sampling.temperature"},
      {"temperature NaN", [](R& r) { r.mutable_sampling()->set_temperature(std::nanf("")); },
       "sampling.temperature"},
      {"top_p above 1", [](R& r) { r.mutable_sampling()->set_top_p(1.5f); },
       "sampling.top_p must be in (0, 1], got 1.5"},
      {"top_p 0", [](R& r) { r.mutable_sampling()->set_top_p(0); }, "sampling.top_p"},
      {"top_k negative", [](R& r) { r.mutable_sampling()->set_top_k(-1); }, "sampling.top_k"},
      {"min_p negative", [](R& r) { r.mutable_sampling()->set_min_p(-0.1f); }, "sampling.min_p"},
      {"min_p above 1", [](R& r) { r.mutable_sampling()->set_min_p(1.5f); }, "sampling.min_p"},
      {"repetition_penalty 0", [](R& r) { r.mutable_sampling()->set_repetition_penalty(0); },
       "sampling.repetition_penalty"},
      {"stop token id outside vocabulary",
       [](R& r) { r.mutable_sampling()->add_stop_token_ids(9999); }, "sampling.stop_token_ids[0]"},
      {"empty stop string", [](R& r) { r.mutable_sampling()->add_stop(""); }, "sampling.stop[0]"},
      {"too many stop strings",
       [](R& r) {
         const std::string stop = "x";  // (a literal here trips GCC 12's -Wrestrict)
         for (int i = 0; i < 17; ++i) *r.mutable_sampling()->add_stop() = stop;
       },
       "sampling.stop must hold at most 16"},
      {"budget 0 under STREAMING_LLM",
       [](R& r) { r.mutable_cache()->set_policy(v1::CacheConfig::STREAMING_LLM); },
       "cache.budget_tokens must be in [1, 512]"},
      {"budget above the context",
       [](R& r) {
         r.mutable_cache()->set_policy(v1::CacheConfig::H2O);
         r.mutable_cache()->set_budget_tokens(100000);
       },
       "cache.budget_tokens"},
      {"budget under FULL", [](R& r) { r.mutable_cache()->set_budget_tokens(-1); },
       "cache.budget_tokens must be 0 under cache.policy FULL"},
      {"unknown cache policy", [](R& r) { SetRawEnum(*r.mutable_cache(), "policy", 42); },
       "cache.policy has no value 42"},
      {"unknown prefill mode", [](R& r) { SetRawEnum(*r.mutable_prefill(), "mode", 9); },
       "prefill.mode"},
      {"unknown pooling",
       [](R& r) {
         r.mutable_cache()->set_policy(v1::CacheConfig::SNAPKV);
         r.mutable_cache()->set_budget_tokens(64);
         SetRawEnum(*r.mutable_cache()->mutable_snapkv(), "pooling", 7);
       },
       "cache.snapkv.pooling"},
      {"parameter of another policy",
       [](R& r) {
         r.mutable_cache()->set_policy(v1::CacheConfig::STREAMING_LLM);
         r.mutable_cache()->set_budget_tokens(64);
         r.mutable_cache()->mutable_h2o()->set_heavy_tokens(8);
       },
       "cache.h2o is set but cache.policy is STREAMING_LLM"},
      {"parameter under FULL",
       [](R& r) { r.mutable_cache()->mutable_streaming_llm()->set_sink_tokens(4); },
       "cache.streaming_llm"},
      {"negative policy parameter",
       [](R& r) {
         r.mutable_cache()->set_policy(v1::CacheConfig::STREAMING_LLM);
         r.mutable_cache()->set_budget_tokens(64);
         r.mutable_cache()->mutable_streaming_llm()->set_sink_tokens(-1);
       },
       "cache.streaming_llm.sink_tokens"},
      {"ema_decay above 1",
       [](R& r) {
         r.mutable_cache()->set_policy(v1::CacheConfig::CASCADING);
         r.mutable_cache()->set_budget_tokens(64);
         r.mutable_cache()->mutable_cascading()->set_ema_decay(2);
       },
       "cache.cascading.ema_decay"},
      {"critiprefill parameters under DENSE",
       [](R& r) { r.mutable_prefill()->mutable_critiprefill()->set_segment_size(512); },
       "prefill.critiprefill is set but prefill.mode"},
      {"prompt too long under FULL",
       [](R& r) {
         for (int i = 0; i < 500; ++i) r.add_prompt_ids(300);
       },
       "exceeds the model's context of 512 tokens under cache.policy FULL"},
      {"negative priority", [](R& r) { r.set_priority(-1); }, "priority"},
      {"request id with a space", [](R& r) { r.set_request_id("a b"); }, "request_id"},
  };
}

// Each policy GetModelInfo lists, with whether it is served.
using ModelInfoProbe = std::vector<std::pair<v1::CacheConfig::CachePolicy, bool>>;
ModelInfoProbe ProbePolicies(v1::Generation::Stub& stub) {
  grpc::ClientContext context;
  SetTimeout(context, std::chrono::seconds(10));
  v1::ModelInfo info;
  EXPECT_TRUE(stub.GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
  ModelInfoProbe out;
  for (const auto& p : info.cache_policies()) out.emplace_back(p.policy(), p.served());
  return out;
}

class InvalidInputE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVSERVE_REQUIRE_STORIES260K();
    server_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"--max-new-tokens-limit=300", "--max-message-bytes=65536"});
    ASSERT_TRUE(server_->started()) << server_->log();
    stub_ = NewGenerationStub(server_->address());
  }
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::Generation::Stub> stub_;
};

TEST_F(InvalidInputE2eTest, EachBadFieldIsNamedWhileOthersAreServed) {
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  // A long good stream runs through all of it.
  StreamResult background;
  std::thread long_stream([&] { background = Generate(*stub_, GreedyRequest(prompt, 300)); });

  const auto cases = BadCases();
  ASSERT_GE(cases.size(), 20u);
  for (const BadCase& c : cases) {
    auto request = GreedyRequest(prompt, 16);
    c.mutate(request);
    const StreamResult r = Generate(*stub_, request, std::chrono::seconds(10));
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.name << ": " << r.status.error_message();
    EXPECT_NE(r.status.error_message().find(c.field), std::string::npos)
        << c.name << ": '" << r.status.error_message() << "' does not name " << c.field;
    EXPECT_EQ(r.messages, 0) << c.name;
  }

  // Larger than --max-message-bytes: refused by gRPC itself with RESOURCE_EXHAUSTED, before any
  // of our code runs.
  v1::GenerateRequest huge = GreedyRequest({}, 16);
  huge.set_prompt(std::string(100000, 'a'));
  EXPECT_EQ(Generate(*stub_, huge, std::chrono::seconds(10)).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  const StreamResult good = Generate(*stub_, GreedyRequest(prompt, 16), std::chrono::seconds(30));
  EXPECT_TRUE(good.status.ok()) << good.status.error_message();
  EXPECT_EQ(good.token_ids.size(), 16u);

  long_stream.join();
  EXPECT_TRUE(background.status.ok()) << background.status.error_message();
  EXPECT_EQ(background.token_ids.size(), 300u);
}

TEST_F(InvalidInputE2eTest, UnservedPolicyIsUnimplementedServedOneRuns) {
  const ModelInfoProbe probe = ProbePolicies(*stub_);
  for (const auto& [policy, served] : probe) {
    if (policy == v1::CacheConfig::FULL) continue;
    auto request = GreedyRequest({1, 403, 407}, 16);
    request.mutable_cache()->set_policy(policy);
    request.mutable_cache()->set_budget_tokens(64);
    const StreamResult r = Generate(*stub_, request, std::chrono::seconds(30));
    if (!served) {
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNIMPLEMENTED)
          << v1::CacheConfig::CachePolicy_Name(policy) << ": " << r.status.error_message();
      continue;
    }
    ASSERT_TRUE(r.status.ok()) << v1::CacheConfig::CachePolicy_Name(policy) << ": "
                               << r.status.error_message();
    EXPECT_EQ(r.token_ids.size(), 16u);
    EXPECT_EQ(r.usage.cache().policy(), policy);
    EXPECT_EQ(r.usage.cache().budget_tokens(), 64);
  }
}

}  // namespace
}  // namespace kvserve::testing
