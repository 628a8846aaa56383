#include "server/request_conversion.h"

#include <gtest/gtest.h>

namespace kvserve {
namespace {

const RequestLimits kLimits{512, 512, 300};

v1::GenerateRequest Good() {
  v1::GenerateRequest r;
  r.add_prompt_ids(1);
  r.add_prompt_ids(403);
  return r;
}

TEST(RequestConversionTest, DefaultsOfUnsetOptionalFields) {
  const SamplingParams p = ToSamplingParams(v1::SamplingParams());
  EXPECT_EQ(p.max_new_tokens, 16);
  EXPECT_EQ(p.temperature, 1.0f);
  EXPECT_EQ(p.top_p, 1.0f);
  EXPECT_EQ(p.repetition_penalty, 1.0f);
  EXPECT_FALSE(p.seed.has_value());
  EXPECT_EQ(p.top_k, 0);
}

TEST(RequestConversionTest, SetFieldsArePassedOn) {
  v1::GenerateRequest r = Good();
  auto* s = r.mutable_sampling();
  s->set_max_new_tokens(7);
  s->set_temperature(0);
  s->set_top_k(5);
  s->set_seed(42);
  s->add_stop_token_ids(2);
  s->set_ignore_eos(true);
  r.set_priority(3);
  r.set_request_id("abc");
  const GenerationRequest g = ToGenerationRequest(r, {1, 403});
  EXPECT_EQ(g.sampling.max_new_tokens, 7);
  EXPECT_EQ(g.sampling.temperature, 0.0f);
  EXPECT_EQ(g.sampling.top_k, 5);
  EXPECT_EQ(g.sampling.seed, 42u);
  EXPECT_EQ(g.sampling.stop_token_ids, std::vector<int32_t>{2});
  EXPECT_TRUE(g.sampling.ignore_eos);
  EXPECT_EQ(g.priority, 3);
  EXPECT_EQ(g.request_id, "abc");
  EXPECT_EQ(g.prompt_ids, (std::vector<int32_t>{1, 403}));
  EXPECT_EQ(g.cache.kind, CachePolicyKind::kFull);
}

TEST(RequestConversionTest, PolicyParamsBecomeTheSpecMapByFieldName) {
  v1::GenerateRequest r = Good();
  auto* c = r.mutable_cache();
  c->set_policy(v1::CacheConfig::CASCADING);
  c->set_budget_tokens(64);
  c->mutable_cascading()->set_sink_tokens(4);
  c->mutable_cascading()->set_ema_decay(0.5);
  c->mutable_cascading()->set_head_reduction(v1::CascadingParams::MEAN);
  const GenerationRequest g = ToGenerationRequest(r, {1});
  EXPECT_EQ(g.cache.kind, CachePolicyKind::kCascading);
  EXPECT_EQ(g.cache.budget_tokens, 64);
  const std::map<std::string, double> want = {
      {"sink_tokens", 4}, {"ema_decay", 0.5}, {"head_reduction", 2}};
  EXPECT_EQ(g.cache.params, want);  // unset ones are left to the policy's defaults
}

TEST(RequestConversionTest, ExplicitZeroOfAnOptionalParamIsKept) {
  v1::StreamingLlmParams p;
  p.set_sink_tokens(0);
  EXPECT_EQ(ParamsFromProto(p), (std::map<std::string, double>{{"sink_tokens", 0}}));
}

TEST(RequestConversionTest, CritiPrefillParams) {
  v1::GenerateRequest r = Good();
  r.mutable_prefill()->set_mode(v1::PrefillConfig::CRITIPREFILL);
  r.mutable_prefill()->mutable_critiprefill()->set_segment_size(256);
  r.mutable_prefill()->mutable_critiprefill()->set_layer_fusion(false);
  ASSERT_TRUE(ValidateGenerateRequest(r, kLimits).ok());
  const GenerationRequest g = ToGenerationRequest(r, {1});
  EXPECT_EQ(g.prefill.mode, PrefillMode::kCritiPrefill);
  EXPECT_EQ(g.prefill.params,
            (std::map<std::string, double>{{"segment_size", 256}, {"layer_fusion", 0}}));
}

TEST(RequestValidationTest, GoodRequestPasses) {
  EXPECT_TRUE(ValidateGenerateRequest(Good(), kLimits).ok());
  std::vector<int32_t> ids = {1, 403};
  EXPECT_TRUE(ValidatePromptIds(ids, Good(), kLimits).ok());
}

TEST(RequestValidationTest, MessagesNameFieldAndLimit) {
  v1::GenerateRequest r = Good();
  r.mutable_sampling()->set_top_p(1.5f);
  EXPECT_EQ(ValidateGenerateRequest(r, kLimits).message(),
            "sampling.top_p must be in (0, 1], got 1.5");
  r = Good();
  r.mutable_sampling()->set_max_new_tokens(301);
  EXPECT_EQ(ValidateGenerateRequest(r, kLimits).message(),
            "sampling.max_new_tokens must be in [1, 300], got 301");
}

TEST(RequestValidationTest, CompressedPolicyBudgetRange) {
  v1::GenerateRequest r = Good();
  r.mutable_cache()->set_policy(v1::CacheConfig::TREEKV);
  for (int64_t budget : {0, -1, 513}) {
    r.mutable_cache()->set_budget_tokens(budget);
    EXPECT_EQ(ValidateGenerateRequest(r, kLimits).code(), absl::StatusCode::kInvalidArgument)
        << budget;
  }
  r.mutable_cache()->set_budget_tokens(512);
  EXPECT_TRUE(ValidateGenerateRequest(r, kLimits).ok());
}

TEST(RequestValidationTest, PromptTooLongOnlyUnderFull) {
  v1::GenerateRequest r = Good();
  r.mutable_sampling()->set_max_new_tokens(100);
  std::vector<int32_t> ids(500, 5);
  EXPECT_EQ(ValidatePromptIds(ids, r, kLimits).code(), absl::StatusCode::kInvalidArgument);
  r.mutable_cache()->set_policy(v1::CacheConfig::STREAMING_LLM);
  r.mutable_cache()->set_budget_tokens(64);
  EXPECT_TRUE(ValidatePromptIds(ids, r, kLimits).ok());
}

TEST(RequestValidationTest, IdsOutsideTheVocabularyAreNamedByIndex) {
  std::vector<int32_t> ids = {1, 2, 512};
  EXPECT_EQ(ValidatePromptIds(ids, Good(), kLimits).message(),
            "prompt_ids[2] = 512 is outside the vocabulary [0, 512)");
}

}  // namespace
}  // namespace kvserve
