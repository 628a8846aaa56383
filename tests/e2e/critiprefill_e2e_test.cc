// CRITIPREFILL through the real kvserve binary: each bad parameter is refused INVALID_ARGUMENT
// naming its field (the server's generic checks and the engine's), parameters that leave every
// segment dense stream DENSE's tokens, sparse ones stream to the end under FULL and a compressed
// policy, and GetModelInfo lists both prefill modes with CritiPrefill's parameters and defaults.
#include <gtest/gtest.h>

#include <functional>

#include "tests/e2e/client.h"
#include "tests/e2e/server_process.h"
#include "tests/test_support.h"

namespace kvserve::testing {
namespace {

std::vector<int32_t> Prompt() {
  std::vector<int32_t> prompt = {1};
  for (int32_t i = 1; i < 400; ++i) prompt.push_back(20 + (i * 37 + i * i) % 480);
  return prompt;
}

// A CRITIPREFILL request scaled to stories260K (segments 128..320 of 400 sparse).
v1::GenerateRequest CritiPrefillRequest(int32_t max_new_tokens) {
  auto request = GreedyRequest(Prompt(), max_new_tokens);
  request.mutable_prefill()->set_mode(v1::PrefillConfig::CRITIPREFILL);
  auto* p = request.mutable_prefill()->mutable_critiprefill();
  p->set_segment_size(64);
  p->set_block_size(8);
  p->set_kept_blocks(4);
  p->set_dense_prefix_tokens(128);
  return request;
}

class CritiPrefillE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVSERVE_REQUIRE_STORIES260K();
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{"--prefill-chunk=128"});
    ASSERT_TRUE(server_->started()) << server_->log();
    stub_ = NewGenerationStub(server_->address());
  }
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::Generation::Stub> stub_;
};

TEST_F(CritiPrefillE2eTest, EachBadParameterIsNamed) {
  using P = v1::CritiPrefillParams;
  const std::vector<std::pair<std::function<void(P&)>, std::string>> cases = {
      {[](P& p) { p.set_segment_size(256); },
       "prefill.critiprefill.segment_size must be <= 128, the engine's prefill chunk"},
      {[](P& p) { p.set_segment_size(-64); },
       "prefill.critiprefill.segment_size must be >= 1, got -64"},
      {[](P& p) { p.set_block_size(48); }, "prefill.critiprefill.block_size"},
      {[](P& p) { p.set_kept_blocks(0); }, "prefill.critiprefill.kept_blocks must be >= 1"},
      {[](P& p) { p.set_first_blocks(3); }, "prefill.critiprefill.first_blocks"},
      {[](P& p) { p.set_dense_prefix_tokens(100); },
       "prefill.critiprefill.dense_prefix_tokens must be a multiple of segment_size (64)"},
      {[](P& p) { p.set_dense_layers(6); }, "prefill.critiprefill.dense_layers must be in [0, 5]"},
  };
  for (const auto& [mutate, field] : cases) {
    auto request = CritiPrefillRequest(8);
    request.mutable_prefill()->mutable_critiprefill()->set_kept_blocks(2);
    mutate(*request.mutable_prefill()->mutable_critiprefill());
    const StreamResult r = Generate(*stub_, request, std::chrono::seconds(10));
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_NE(r.status.error_message().find(field), std::string::npos)
        << "'" << r.status.error_message() << "' does not name " << field;
    EXPECT_EQ(r.messages, 0) << field;
  }
}

TEST_F(CritiPrefillE2eTest, StreamsUnderFullAndACompressedPolicy) {
  auto all_dense = CritiPrefillRequest(16);
  // The default τ, past this model's context: accepted, and every segment is dense.
  all_dense.mutable_prefill()->mutable_critiprefill()->set_dense_prefix_tokens(4096);
  const StreamResult dense = Generate(*stub_, GreedyRequest(Prompt(), 16));
  const StreamResult same = Generate(*stub_, all_dense);
  ASSERT_TRUE(dense.status.ok()) << dense.status.error_message();
  ASSERT_TRUE(same.status.ok()) << same.status.error_message();
  EXPECT_EQ(same.token_ids, dense.token_ids);
  for (auto policy : {v1::CacheConfig::FULL, v1::CacheConfig::H2O}) {
    auto request = CritiPrefillRequest(16);
    request.mutable_cache()->set_policy(policy);
    if (policy != v1::CacheConfig::FULL) request.mutable_cache()->set_budget_tokens(256);
    const StreamResult r = Generate(*stub_, request);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.token_ids.size(), 16u);
    EXPECT_EQ(r.finish_reason, v1::GenerateResponse::LENGTH);
    EXPECT_EQ(r.usage.cache().peak_tokens(), policy == v1::CacheConfig::FULL ? 415 : 256 + 128);
  }
}

TEST_F(CritiPrefillE2eTest, ModelInfoListsThePrefillModes) {
  grpc::ClientContext context;
  SetTimeout(context, std::chrono::seconds(10));
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
  ASSERT_EQ(info.prefill_modes_size(), 2);
  EXPECT_EQ(info.prefill_modes(0).mode(), v1::PrefillConfig::DENSE);
  EXPECT_EQ(info.prefill_modes(0).parameters_size(), 0);
  const v1::PrefillModeInfo& criti = info.prefill_modes(1);
  EXPECT_EQ(criti.mode(), v1::PrefillConfig::CRITIPREFILL);
  EXPECT_TRUE(criti.served());
  ASSERT_EQ(criti.parameters_size(), v1::CritiPrefillParams::descriptor()->field_count());
  for (const auto& p : criti.parameters()) {
    EXPECT_FALSE(p.description().empty()) << p.name();
    EXPECT_FALSE(p.default_rule().empty()) << p.name();
    EXPECT_FALSE(p.type().empty()) << p.name();
  }
  EXPECT_EQ(criti.parameters(0).name(), "segment_size");
  EXPECT_EQ(criti.parameters(0).default_rule(), "512");
  EXPECT_EQ(criti.parameters(7).name(), "layer_fusion");
  EXPECT_EQ(criti.parameters(7).type(), "bool");
}

}  // namespace
}  // namespace kvserve::testing
