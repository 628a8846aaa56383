// CRITIPREFILL requests through the engine on the real stories260K model, under every cache policy:
// parameters that leave every segment dense give DENSE's tokens exactly; sparse ones finish with
// the cache DENSE would hold and record the skipped attention; every bad parameter is refused at
// Submit naming its field; GetModelInfo's prefill modes list the parameters with their defaults.
#include <gtest/gtest.h>

#include <future>

#include "cache/policy_factory.h"
#include "metrics/serving_metrics.h"
#include "scheduler/engine.h"
#include "tests/metrics/exposition.h"
#include "tests/scheduler/stories_engine.h"

namespace kvserve {
namespace {

constexpr int32_t kNewTokens = 24;

std::vector<int32_t> Prompt() {
  std::vector<int32_t> prompt = {1};
  for (int32_t i = 1; i < 400; ++i) prompt.push_back(20 + (i * 37 + i * i) % 480);
  return prompt;
}

// Scaled to the model (model/criti_prefill_model_test.cc): segments 128..320 of 400 are sparse.
std::map<std::string, double> SparseParams() {
  return {
      {"segment_size", 64}, {"block_size", 8}, {"kept_blocks", 4}, {"dense_prefix_tokens", 128}};
}

class EngineCritiPrefillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVSERVE_REQUIRE_STORIES260K();
    EngineConfig config = testing::StoriesEngineConfig();
    config.prefill_chunk = 128;  // four chunks per prompt, two segments each
    config.metrics = &metrics_;
    auto engine = Engine::Create(config);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  static GenerationRequest Request(CachePolicyKind kind, PrefillSpec prefill) {
    GenerationRequest r;
    r.prompt_ids = Prompt();
    r.sampling.max_new_tokens = kNewTokens;
    r.sampling.ignore_eos = true;
    r.cache = {kind, kind == CachePolicyKind::kFull ? 0 : 256, {}};
    r.prefill = std::move(prefill);
    return r;
  }

  struct Result {
    std::vector<int32_t> tokens;
    TokenEvent last;
  };

  Result Run(GenerationRequest request) {
    auto result = std::make_shared<Result>();
    auto done = std::make_shared<std::promise<void>>();
    auto submitted = engine_->Submit(std::move(request), [result, done](TokenEvent event) {
      result->tokens.insert(result->tokens.end(), event.token_ids.begin(), event.token_ids.end());
      if (!event.finished) return;
      result->last = std::move(event);
      done->set_value();
    });
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    if (submitted.ok()) done->get_future().wait();
    return *result;
  }

  double Skipped(const std::string& series) {
    auto value = testing::SampleValue(metrics_.Exposition(),
                                      "kvserve_prefill_attention_skipped_ratio_" + series,
                                      {{"model_name", "stories260K"}});
    EXPECT_TRUE(value.has_value()) << series;
    return value.value_or(-1);
  }

  ServingMetrics metrics_{{"stories260K", {"FULL"}}};
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineCritiPrefillTest, EveryPolicyComposes) {
  auto all_dense = SparseParams();
  all_dense["dense_prefix_tokens"] = 512;  // past the prompt
  int64_t sparse_requests = 0;
  for (const auto& d : DescribeCachePolicies()) {
    SCOPED_TRACE(CachePolicyName(d.kind));
    const Result dense = Run(Request(d.kind, {}));
    ASSERT_TRUE(dense.last.status.ok()) << dense.last.status;
    ASSERT_EQ(dense.tokens.size(), static_cast<size_t>(kNewTokens));

    const Result same = Run(Request(d.kind, {PrefillMode::kCritiPrefill, all_dense}));
    ASSERT_TRUE(same.last.status.ok()) << same.last.status;
    EXPECT_EQ(same.tokens, dense.tokens);

    const Result sparse = Run(Request(d.kind, {PrefillMode::kCritiPrefill, SparseParams()}));
    ++sparse_requests;
    ASSERT_TRUE(sparse.last.status.ok()) << sparse.last.status;
    EXPECT_EQ(sparse.tokens.size(), static_cast<size_t>(kNewTokens));
    // The cache decode sees: every prompt token under FULL (400 + 24 at the end), the policy's
    // budget otherwise, as after dense prefill.
    EXPECT_EQ(sparse.last.usage.cache.peak_tokens, dense.last.usage.cache.peak_tokens);
    EXPECT_EQ(sparse.last.usage.cache.evicted_tokens, dense.last.usage.cache.evicted_tokens);
    if (d.kind == CachePolicyKind::kFull) {
      EXPECT_EQ(sparse.last.usage.cache.peak_tokens, 400 + kNewTokens - 1);
    }
  }
  // One observation per CRITIPREFILL request; those of all-dense parameters are 0.
  EXPECT_EQ(Skipped("count"), 2.0 * sparse_requests);
  EXPECT_GT(Skipped("sum"), 0.2 * sparse_requests);
  EXPECT_LT(Skipped("sum"), 0.6 * sparse_requests);
}

TEST_F(EngineCritiPrefillTest, BadParametersAreRefusedNamingTheField) {
  const std::vector<std::pair<std::map<std::string, double>, std::string>> cases = {
      {{}, "prefill.critiprefill.segment_size (default) must be <= 128"},
      {{{"segment_size", 256}}, "prefill.critiprefill.segment_size must be <= 128"},
      {{{"segment_size", 64}, {"block_size", 48}}, "prefill.critiprefill.block_size"},
      {{{"segment_size", 64}, {"kept_blocks", 0}}, "prefill.critiprefill.kept_blocks"},
      {{{"segment_size", 64}, {"dense_prefix_tokens", 100}},
       "prefill.critiprefill.dense_prefix_tokens"},
      {{{"segment_size", 64}, {"dense_layers", 6}},
       "prefill.critiprefill.dense_layers must be in [0, 5]"},
      {{{"segment_size", 64}, {"layer_fusion", 3}}, "prefill.critiprefill.layer_fusion"},
      {{{"segment_size", 64}, {"first_blocks", 70}}, "prefill.critiprefill.first_blocks"},
      {{{"segment_size", 64}, {"budget", 1}}, "prefill.critiprefill.budget is not a parameter"},
  };
  for (const auto& [params, field] : cases) {
    auto submitted = engine_->Submit(
        Request(CachePolicyKind::kFull, {PrefillMode::kCritiPrefill, params}), [](TokenEvent) {});
    ASSERT_FALSE(submitted.ok()) << field;
    EXPECT_EQ(submitted.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(submitted.status().message()).rfind(field, 0), 0u) << submitted.status();
  }
  auto dense_with_params = engine_->Submit(
      Request(CachePolicyKind::kFull, {PrefillMode::kDense, SparseParams()}), [](TokenEvent) {});
  EXPECT_EQ(dense_with_params.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dense_with_params.status().message(),
            "prefill.critiprefill is set but prefill.mode is DENSE");
}

TEST_F(EngineCritiPrefillTest, ModelInfoListsThePrefillModes) {
  const auto& modes = engine_->model_info().prefill_modes;
  ASSERT_EQ(modes.size(), 2u);
  EXPECT_EQ(modes[0].mode, PrefillMode::kDense);
  EXPECT_TRUE(modes[0].parameters.empty());
  EXPECT_EQ(modes[1].mode, PrefillMode::kCritiPrefill);
  EXPECT_TRUE(modes[1].served);
  ASSERT_EQ(modes[1].parameters.size(), 8u);
  EXPECT_EQ(modes[1].parameters[0].name, "segment_size");
  EXPECT_EQ(modes[1].parameters[0].default_rule, "512");
}

}  // namespace
}  // namespace kvserve
