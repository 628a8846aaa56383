// Greedy generation through the real server equals Hugging Face's golden.json, alone, with every
// case in flight at once and with 16 concurrent streams; plus Tokenize and GetModelInfo.
#include <gtest/gtest.h>

#include <thread>

#include "tests/e2e/client.h"
#include "tests/e2e/server_process.h"
#include "tests/model/golden.h"
#include "tokenizer/tokenizer.h"

namespace kvserve::testing {
namespace {

constexpr int kMaxNew = 200;

class GoldenE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVSERVE_REQUIRE_STORIES260K();
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{});
    ASSERT_TRUE(server_->started()) << server_->log();
    stub_ = NewGenerationStub(server_->address());
    cases_ = LoadGoldenCases();
    auto tokenizer = Tokenizer::Load(Stories260kDir());
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    // golden.json's text keeps special tokens; the server's text is Decode's, which skips them.
    for (GoldenCase& c : cases_) c.text = (*tokenizer)->Decode(c.greedy_ids);
  }

  void ExpectGolden(const StreamResult& r, const GoldenCase& c) {
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.token_ids, c.greedy_ids) << c.prompt;
    EXPECT_EQ(r.text, c.text) << c.prompt;
    EXPECT_EQ(r.finish_reason, v1::GenerateResponse::LENGTH);
    EXPECT_EQ(r.usage.completion_tokens(), kMaxNew);
    EXPECT_EQ(r.usage.prompt_tokens(), static_cast<int64_t>(c.prompt_ids.size()));
    EXPECT_TRUE(r.ids_echoed);
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::Generation::Stub> stub_;
  std::vector<GoldenCase> cases_;
};

TEST_F(GoldenE2eTest, GreedyIdsFromPromptIds) {
  for (const GoldenCase& c : cases_) {
    auto request = GreedyRequest(c.prompt_ids, kMaxNew);
    request.set_request_id("golden-ids");
    ExpectGolden(Generate(*stub_, request), c);
  }
}

TEST_F(GoldenE2eTest, GreedyIdsFromPromptText) {
  for (const GoldenCase& c : cases_) {
    if (c.prompt.empty()) continue;  // an empty text prompt is refused; the ids case covers it
    auto request = GreedyRequest({}, kMaxNew);
    request.set_prompt(c.prompt);
    ExpectGolden(Generate(*stub_, request), c);
  }
}

// Runs `streams` requests at once, stream i on case i % cases, and checks each.
void RunConcurrently(v1::Generation::Stub& stub, const std::vector<GoldenCase>& cases,
                     int streams) {
  std::vector<StreamResult> results(streams);
  std::vector<std::thread> threads;
  for (int i = 0; i < streams; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate(stub, GreedyRequest(cases[i % cases.size()].prompt_ids, kMaxNew));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < streams; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
    EXPECT_EQ(results[i].token_ids, cases[i % cases.size()].greedy_ids) << "stream " << i;
    EXPECT_EQ(results[i].text, cases[i % cases.size()].text) << "stream " << i;
  }
}

TEST_F(GoldenE2eTest, AllCasesInFlightAtOnce) {
  RunConcurrently(*stub_, cases_, static_cast<int>(cases_.size()));
}

TEST_F(GoldenE2eTest, SixteenConcurrentStreams) { RunConcurrently(*stub_, cases_, 16); }

TEST_F(GoldenE2eTest, TokenizeMatchesGoldenPromptIds) {
  for (const GoldenCase& c : cases_) {
    grpc::ClientContext context;
    SetTimeout(context, std::chrono::seconds(10));
    v1::TokenizeRequest request;
    request.set_text(c.prompt);
    v1::TokenizeResponse response;
    ASSERT_TRUE(stub_->Tokenize(&context, request, &response).ok());
    EXPECT_EQ(std::vector<int32_t>(response.token_ids().begin(), response.token_ids().end()),
              c.prompt_ids)
        << c.prompt;
  }
}

TEST_F(GoldenE2eTest, ModelInfoListsEveryPolicy) {
  grpc::ClientContext context;
  SetTimeout(context, std::chrono::seconds(10));
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.vocab_size(), 512);
  EXPECT_EQ(info.num_layers(), 5);
  EXPECT_EQ(info.context_length(), 512);
  EXPECT_EQ(info.kv_bytes_per_token(), 1280);  // 2 * 5 layers * 4 KV heads * 8 dims * 4 bytes
  ASSERT_EQ(info.cache_policies_size(), 7);
  EXPECT_EQ(info.cache_policies(0).policy(), v1::CacheConfig::FULL);
  EXPECT_TRUE(info.cache_policies(0).served());
  for (const auto& policy : info.cache_policies()) {
    if (policy.policy() == v1::CacheConfig::FULL) continue;
    EXPECT_GE(policy.parameters_size(), 2) << policy.policy();
    for (const auto& p : policy.parameters()) {
      EXPECT_FALSE(p.default_rule().empty()) << p.name();
      EXPECT_FALSE(p.type().empty()) << p.name();
    }
  }
}

TEST_F(GoldenE2eTest, HealthIsServing) {
  EXPECT_EQ(HealthStatus(server_->address()), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(GoldenE2eTest, StopStringCutsTheText) {
  auto request = GreedyRequest(cases_[0].prompt_ids, kMaxNew);
  request.mutable_sampling()->add_stop(" girl");
  const StreamResult r = Generate(*stub_, request);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.finish_reason, v1::GenerateResponse::STOP);
  EXPECT_EQ(r.text, ", there was a little");
  EXPECT_LT(r.token_ids.size(), 10u);
}

}  // namespace
}  // namespace kvserve::testing
