// The batched decode-step rules of Cascading and TreeKV (PlanBatchedDecode, the chain a kernel
// applies, CommitBatchedDecode) against their per-layer Update, over random streams: prefill chunks
// of several sizes, then many decode steps of several requests at once. Both paths must keep the
// same tokens per layer and head, in the same rank order, with the same keys, values and scores.
// On the CPU the chains are applied by this file's emulation of kernels::MoveAlongChains; in CUDA
// builds on a GPU, also by the kernel itself (cache/batched_decode.h).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "cache/cascading_policy.h"
#include "cache/treekv_policy.h"
#include "tests/cache/policy_driver.h"
#ifdef KVSERVE_WITH_CUDA
#include "cache/batched_decode.h"
#endif

namespace kvserve {
namespace {

using testing::FeedChunks;
using testing::FeedStep;
using testing::HeldInRankOrder;
using testing::InRankOrder;
using testing::SlotsInRankOrder;
using testing::Stream;

constexpr int64_t kLayers = 3, kKvHeads = 4, kGroup = 2, kDim = 16;

// One request through one path.
struct Request {
  std::unique_ptr<CachePolicy> policy;
  std::unique_ptr<KvCache> cache;
};

using PolicyFactory = std::function<std::unique_ptr<CachePolicy>()>;

// What kernels::MoveAlongChains does to one cache, written plainly (decode_maintenance.h).
void EmulateChain(KvCache& cache, const BatchedDecodeStep& step) {
  const int64_t length = cache.length(0), last = length - 1;
  const int64_t group = cache.logit_scratch().size(1);
  auto storage = cache.storage();  // [layers, 2, kv_heads, capacity, dim]
  auto positions = cache.position_storage();
  auto mass = cache.key_mass_storage();
  const float scale =
      step.reduction == BatchedDecodeStep::GroupReduction::kMean ? 1.0f / group : 1.0f;
  for (int64_t layer = 0; layer < cache.shape().num_layers; ++layer) {
    for (int64_t h = 0; h < cache.shape().num_kv_heads; ++h) {
      auto score = step.scores[layer][h];
      for (int64_t s = 0; s < length; ++s) {
        const float added = scale * mass[layer][h][s].item<float>();
        const float old = score[s].item<float>();
        score[s] = s == last ? added : added + step.score_decay * old;
        if (step.counts.defined()) {
          auto count = step.counts[layer][h];
          count[s] = s == last ? 1.0f : count[s].item<float>() + 1.0f;
        }
      }
      const int64_t hops = static_cast<int64_t>(step.chain.size()) - 1;
      if (hops <= 0) continue;
      bool take_last = true;
      if (step.last_hop == BatchedDecodeStep::LastHop::kIfNotWorse) {
        take_last =
            score[step.chain[hops - 1]].item<float>() >= score[step.chain[hops]].item<float>();
      } else if (step.last_hop != BatchedDecodeStep::LastHop::kAlways) {
        auto count = step.counts[layer][h];
        auto averaged = [&](int64_t s) {
          return static_cast<double>(score[s].item<float>()) /
                 static_cast<double>(count[s].item<float>());
        };
        const bool left_wins = averaged(step.left) > averaged(step.right);
        take_last = left_wins == (step.last_hop == BatchedDecodeStep::LastHop::kIfLeftWins);
      }
      std::vector<at::Tensor> rows = {storage[layer][0][h], storage[layer][1][h],
                                      positions[layer][h].unsqueeze(1), score.unsqueeze(1)};
      if (step.counts.defined()) rows.push_back(step.counts[layer][h].unsqueeze(1));
      for (at::Tensor& row : rows) {
        at::Tensor carried = row[step.chain[0]].clone();
        for (int64_t k = 1; k <= (take_last ? hops : hops - 1); ++k) {
          at::Tensor displaced = row[step.chain[k]].clone();
          row[step.chain[k]].copy_(carried);
          carried = displaced;
        }
      }
    }
  }
}

// The step's key mass as the attention backend gives it: the group sum, or the group max where the
// step asks for it.
at::Tensor StepMass(const BatchedDecodeStep& step, const KvCache& cache, int64_t layer,
                    const at::Tensor& queries) {
  auto probs = StepAttentionProbs(queries, cache.keys(layer)).sum(2);  // one query
  return step.reduction == BatchedDecodeStep::GroupReduction::kMax ? probs.amax(1) : probs.sum(1);
}

// One decode step of every request of `batched` through Plan, the chain (emulated or the kernel)
// and Commit.
void BatchedStep(std::vector<Request>& batched, const std::vector<Stream>& streams, bool kernel) {
  std::vector<BatchedDecodeStep> steps;
  for (size_t i = 0; i < batched.size(); ++i) {
    KvCache& cache = *batched[i].cache;
    auto step = batched[i].policy->PlanBatchedDecode(cache);
    ASSERT_TRUE(step.has_value());
    ASSERT_EQ(step->rule, BatchedDecodeStep::Rule::kSlotChain);
    cache.EnsureKeyMass(kGroup);
    const int64_t first = cache.tokens_seen();
    for (int64_t layer = 0; layer < kLayers; ++layer) {
      testing::StepInput in = streams[i].Step(layer, first, 1);
      cache.Append(layer, in.keys, in.values);
      cache.key_mass_storage()[layer]
          .narrow(1, 0, cache.length(layer))
          .copy_(StepMass(*step, cache, layer, in.queries));
    }
    steps.push_back(std::move(*step));
  }
  if (kernel) {
#ifdef KVSERVE_WITH_CUDA
    std::vector<KvCache*> caches;
    std::vector<const BatchedDecodeStep*> plans;
    for (size_t i = 0; i < batched.size(); ++i) {
      caches.push_back(batched[i].cache.get());
      plans.push_back(&steps[i]);
    }
    ApplyBatchedDecodeSteps(caches, plans);
#endif
  } else {
    for (size_t i = 0; i < batched.size(); ++i) EmulateChain(*batched[i].cache, steps[i]);
  }
  for (size_t i = 0; i < batched.size(); ++i) {
    batched[i].policy->CommitBatchedDecode(*batched[i].cache, steps[i]);
    batched[i].cache->Advance(1);
  }
}

// The statistic each policy decides by, slot-aligned: Cascading's EMA, TreeKV's S/C.
at::Tensor Statistic(const CachePolicy& policy, const KvCache& cache, int64_t layer) {
  if (auto* c = dynamic_cast<const CascadingPolicy*>(&policy)) return c->Scores(cache, layer);
  return dynamic_cast<const TreeKvPolicy&>(policy).AveragedAttention(cache, layer);
}

void ExpectSame(const Request& batched, const Request& per_layer, const std::string& where) {
  const KvCache& a = *batched.cache;
  const KvCache& b = *per_layer.cache;
  for (int64_t layer = 0; layer < kLayers; ++layer) {
    ASSERT_EQ(a.length(layer), b.length(layer)) << where << " layer " << layer;
    for (int64_t h = 0; h < kKvHeads; ++h) {
      const auto held = HeldInRankOrder(*batched.policy, a, layer, h);
      ASSERT_EQ(held, HeldInRankOrder(*per_layer.policy, b, layer, h))
          << where << " layer " << layer << " head " << h;
      EXPECT_TRUE(std::is_sorted(held.begin(), held.end())) << where;
    }
    auto slots_a = at::tensor(SlotsInRankOrder(*batched.policy, a, layer)).to(a.keys(0).device());
    auto slots_b = at::tensor(SlotsInRankOrder(*per_layer.policy, b, layer)).to(b.keys(0).device());
    EXPECT_TRUE(
        at::equal(a.keys(layer).index_select(1, slots_a), b.keys(layer).index_select(1, slots_b)))
        << where;
    EXPECT_TRUE(at::equal(a.values(layer).index_select(1, slots_a),
                          b.values(layer).index_select(1, slots_b)))
        << where;
    auto stat_a = InRankOrder(*batched.policy, a, layer, Statistic(*batched.policy, a, layer));
    auto stat_b = InRankOrder(*per_layer.policy, b, layer, Statistic(*per_layer.policy, b, layer));
    EXPECT_TRUE(at::allclose(stat_a, stat_b, 1e-4, 1e-7)) << where << " layer " << layer;
  }
  EXPECT_EQ(batched.policy->stats().evicted_tokens, per_layer.policy->stats().evicted_tokens);
  EXPECT_EQ(batched.policy->stats().peak_tokens, per_layer.policy->stats().peak_tokens);
}

// Three requests (prompts of different lengths in chunks of different sizes), then `decode`
// steps of all three at once, each compared after every step.
void CompareBatchedWithPerLayer(const PolicyFactory& make, at::Device device, bool kernel,
                                int64_t decode) {
  struct Prompt {
    int64_t tokens, chunk;
  };
  const std::vector<Prompt> prompts = {{5, 5}, {37, 16}, {90, 7}};
  std::vector<Request> batched, per_layer;
  std::vector<Stream> streams;
  for (size_t i = 0; i < prompts.size(); ++i) {
    Stream s =
        testing::RandomStream(kLayers, kKvHeads, kGroup, prompts[i].tokens + decode, kDim, 100 + i);
    streams.push_back({s.queries.to(device), s.keys.to(device), s.values.to(device)});
    for (auto* path : {&batched, &per_layer}) {
      Request r{make(), nullptr};
      r.cache = std::make_unique<KvCache>(KvCacheShape{kLayers, kKvHeads, kDim, at::kFloat, device},
                                          r.policy->Capacity(prompts[i].chunk));
      FeedChunks(*r.policy, *r.cache, streams[i], prompts[i].tokens, prompts[i].chunk,
                 testing::AttentionKeyMass);
      path->push_back(std::move(r));
    }
  }
  for (int64_t step = 0; step < decode; ++step) {
    BatchedStep(batched, streams, kernel);
    for (size_t i = 0; i < prompts.size(); ++i) {
      FeedStep(*per_layer[i].policy, *per_layer[i].cache, streams[i], 1, testing::AttentionKeyMass);
      ExpectSame(batched[i], per_layer[i],
                 "request " + std::to_string(i) + " step " + std::to_string(step));
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  for (const Request& r : batched) EXPECT_GT(r.policy->stats().evicted_tokens, 0);
}

PolicyFactory Cascading(CascadingParams::HeadReduction reduction) {
  return [reduction] {
    CascadingParams p;
    p.sink_tokens = 3;
    p.num_cascades = 4;
    p.cascade_tokens = 5;
    p.ema_decay = 0.95;
    p.head_reduction = reduction;
    return std::make_unique<CascadingPolicy>(p);
  };
}

PolicyFactory TreeKv(int64_t recent) {
  return [recent] {
    TreeKvParams p;
    p.sink_tokens = 2;
    p.tree_tokens = 9;
    p.recent_tokens = recent;
    return std::make_unique<TreeKvPolicy>(p);
  };
}

struct Case {
  std::string name;
  PolicyFactory make;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class BatchedDecodeTest : public ::testing::TestWithParam<Case> {};

TEST_P(BatchedDecodeTest, ChainsMatchPerLayerUpdateOnTheCpu) {
  at::manual_seed(3);
  CompareBatchedWithPerLayer(GetParam().make, at::kCPU, /*kernel=*/false, 80);
}

#ifdef KVSERVE_WITH_CUDA
TEST_P(BatchedDecodeTest, KernelMatchesPerLayerUpdateOnTheGpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  CompareBatchedWithPerLayer(GetParam().make, at::kCUDA, /*kernel=*/true, 120);
}
#endif

INSTANTIATE_TEST_SUITE_P(
    Policies, BatchedDecodeTest,
    ::testing::Values(Case{"CascadingMax", Cascading(CascadingParams::HeadReduction::kMax)},
                      Case{"CascadingMean", Cascading(CascadingParams::HeadReduction::kMean)},
                      Case{"TreeKv", TreeKv(6)}, Case{"TreeKvPure", TreeKv(0)}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace kvserve
