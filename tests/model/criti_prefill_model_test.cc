// CritiPrefill inside LlamaModel::Forward on the real stories260K model (5 layers, GQA 8/4 heads):
// parameters that leave every segment dense reproduce dense prefill bit for bit; sparse ones store
// every prompt token's K/V (the dense layers' K/V exactly as dense prefill), skip attention, and
// give the same result chunked on segment boundaries as in one shot; and under every cache policy
// the cache decode sees holds what the policy keeps after dense prefill.
#include <gtest/gtest.h>

#include "cache/full_policy.h"
#include "cache/policy_factory.h"
#include "model/criti_prefill_attention.h"
#include "model/llama_model.h"
#include "tests/test_support.h"

namespace kvserve {
namespace {

constexpr int64_t kPrompt = 400, kDecode = 8;

std::vector<int32_t> Prompt() {
  std::vector<int32_t> prompt = {1};
  for (int32_t i = 1; i < kPrompt; ++i) prompt.push_back(20 + (i * 37 + i * i) % 480);
  return prompt;
}

// Scaled to this model: segments of 64, blocks of 8, 4 kept blocks (32 tokens), τ = 128, so that
// segments 128..320 of a 400-token prompt are sparse in layers 1-4.
CritiPrefillParams Sparse() {
  return {.segment_size = 64, .block_size = 8, .kept_blocks = 4, .dense_prefix_tokens = 128};
}

CritiPrefillParams AllDense() {
  CritiPrefillParams p = Sparse();
  p.dense_prefix_tokens = 512;  // past the prompt: every segment dense
  return p;
}

struct Generation {
  std::unique_ptr<CachePolicy> policy;
  std::unique_ptr<KvCache> cache;
  std::vector<at::Tensor> logits;  // after the prompt, then after each decode token
  std::vector<int64_t> lengths;    // layer 0's length after each step
  double skipped = 0;
};

// Prefills Prompt() in chunks of at most `chunk` (CritiPrefill with `params` unless null), cut on
// segment boundaries when `align`, then decodes kDecode greedy tokens densely.
Generation Generate(LlamaModel& model, const CacheSpec& spec, int64_t chunk,
                    const CritiPrefillParams* params, bool align = true) {
  Generation run;
  run.policy = std::move(*MakeCachePolicy(spec, {kPrompt, kDecode}));
  run.cache = std::make_unique<KvCache>(model.cache_shape(), run.policy->Capacity(chunk));
  CritiPrefillSequence sequence;
  if (params != nullptr) sequence = {*params, kPrompt, {}, {}};
  const auto prompt = Prompt();
  std::vector<int32_t> next;
  for (int64_t done = 0; done < kPrompt + kDecode;) {
    const bool prefill = done < kPrompt;
    int64_t n = 1;
    if (prefill) {  // as the engine plans it: capped by the policy, cut on segment boundaries
      n = std::min(chunk, run.policy->MaxStepTokens(*run.cache, kPrompt - done));
      if (align) n = AlignedChunkTokens(done, n, kPrompt - done, 64);
    }
    SequenceInput input{run.cache.get(), run.policy.get(),
                        prefill ? std::span<const int32_t>(prompt).subspan(done, n) : next};
    if (prefill && params != nullptr) input.critiprefill = &sequence;
    auto logits = model.Forward({&input, 1}).cpu()[0];
    done += n;
    run.lengths.push_back(run.cache->length(0));
    if (done < kPrompt) continue;
    run.logits.push_back(logits);
    next = {static_cast<int32_t>(logits.argmax().item<int64_t>())};
  }
  run.skipped = sequence.SkippedFraction();
  return run;
}

class CritiPrefillModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVSERVE_REQUIRE_STORIES260K();
    auto model = LlamaModel::Load(testing::Stories260kDir(),
                                  {at::kFloat, *ParseDevice(testing::TestDevice()), 0});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }
  std::unique_ptr<LlamaModel> model_;
};

bool SameLogits(const Generation& a, const Generation& b) {
  if (a.logits.size() != b.logits.size()) return false;
  for (size_t i = 0; i < a.logits.size(); ++i) {
    if (!at::equal(a.logits[i], b.logits[i])) return false;
  }
  return true;
}

TEST_F(CritiPrefillModelTest, SparsePrefillStoresEveryTokenAndSkipsAttention) {
  const CacheSpec full{CachePolicyKind::kFull, 0, {}};
  const auto params = Sparse();
  Generation dense = Generate(*model_, full, 128, nullptr);
  Generation sparse = Generate(*model_, full, 128, &params);
  // Sparse segments read 32 + up to 64 keys of 128..383, in 4 of 5 layers.
  EXPECT_GT(sparse.skipped, 0.2);
  EXPECT_LT(sparse.skipped, 0.6);
  const KvCache& a = *dense.cache;
  const KvCache& b = *sparse.cache;
  EXPECT_EQ(b.tokens_seen(), kPrompt + kDecode);
  for (int64_t layer = 0; layer < model_->config().num_layers; ++layer) {
    ASSERT_EQ(b.length(layer), kPrompt + kDecode);
    EXPECT_TRUE(at::equal(b.positions(layer), a.positions(layer)));
    // Layers 0 and 1 read dense layer-0 outputs; the later ones sparse attention's.
    auto prompt_keys = [&](const KvCache& c) { return c.keys(layer).narrow(1, 0, kPrompt); };
    EXPECT_EQ(at::equal(prompt_keys(b), prompt_keys(a)), layer <= 1) << "layer " << layer;
  }
  EXPECT_FALSE(SameLogits(dense, sparse));
  // An approximation, not a different model: the next-token distributions stay close.
  auto p = at::softmax(dense.logits[0], -1), q = at::log_softmax(sparse.logits[0], -1);
  const double kl = (p * (p.log() - q)).sum().item<double>();
  EXPECT_LT(kl, 0.01);
}

TEST_F(CritiPrefillModelTest, ChunksOnSegmentBoundariesMatchOneShot) {
  const CacheSpec full{CachePolicyKind::kFull, 0, {}};
  const auto params = Sparse();
  Generation one_shot = Generate(*model_, full, kPrompt, &params);
  Generation chunked = Generate(*model_, full, 64, &params);
  EXPECT_NEAR(chunked.skipped, one_shot.skipped, 1e-12);
  ASSERT_EQ(chunked.logits.size(), one_shot.logits.size());
  for (size_t i = 0; i < chunked.logits.size(); ++i) {
    EXPECT_TRUE(at::allclose(chunked.logits[i], one_shot.logits[i], 1e-4, 1e-4)) << "step " << i;
  }
  for (int64_t layer = 0; layer < model_->config().num_layers; ++layer) {
    EXPECT_TRUE(
        at::allclose(chunked.cache->values(layer), one_shot.cache->values(layer), 1e-4, 1e-5));
  }
  // A chunk that cuts a segment (100 tokens) runs that piece dense: less is skipped.
  Generation uneven = Generate(*model_, full, 100, &params, /*align=*/false);
  EXPECT_LT(uneven.skipped, one_shot.skipped);
}

TEST_F(CritiPrefillModelTest, EveryPolicyKeepsWhatItKeepsAfterDensePrefill) {
  const auto sparse_params = Sparse(), dense_params = AllDense();
  for (const auto& d : DescribeCachePolicies()) {
    // 256: FreqKV's step cap (cache_tokens minus what a compression keeps) must reach a segment.
    const CacheSpec spec{d.kind, d.kind == CachePolicyKind::kFull ? 0 : 256, {}};
    SCOPED_TRACE(CachePolicyName(d.kind));
    Generation dense = Generate(*model_, spec, 64, nullptr);
    // Every segment dense: exactly dense prefill, whatever the policy.
    Generation all_dense = Generate(*model_, spec, 64, &dense_params);
    EXPECT_TRUE(SameLogits(all_dense, dense));
    EXPECT_EQ(all_dense.skipped, 0);
    // Sparse: the same number of tokens held after every step, the same positions for the
    // policies whose choice depends on positions only.
    Generation sparse = Generate(*model_, spec, 64, &sparse_params);
    EXPECT_EQ(sparse.lengths, dense.lengths);
    EXPECT_GT(sparse.skipped, 0);
    for (const auto& row : sparse.logits) EXPECT_TRUE(at::isfinite(row).all().item<bool>());
    if (d.kind == CachePolicyKind::kFull || d.kind == CachePolicyKind::kStreamingLlm) {
      for (int64_t layer = 0; layer < model_->config().num_layers; ++layer) {
        EXPECT_TRUE(at::equal(sparse.cache->positions(layer), dense.cache->positions(layer)));
      }
    }
  }
}

}  // namespace
}  // namespace kvserve
