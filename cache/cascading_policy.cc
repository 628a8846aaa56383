#include "cache/cascading_policy.h"

#include <absl/strings/str_cat.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cache/policy_params.h"
#include "cache/policy_tensors.h"

namespace kvserve {
namespace {

// The non-negative remainder (§0.5 item 13).
int64_t Mod(int64_t x, int64_t m) { return ((x % m) + m) % m; }

}  // namespace

absl::StatusOr<CascadingParams> CascadingPolicy::Resolve(const CacheSpec& spec,
                                                         const PolicyContext& /*context*/) {
  auto params = PolicyParams::Read(
      spec, "cascading",
      {"sink_tokens", "num_cascades", "cascade_tokens", "ema_decay", "head_reduction"});
  if (!params.ok()) return params.status();
  const int64_t budget = params->budget();
  CascadingParams out;
  // 2^i must not overflow in the schedule: 32 cascades already span 2^32 tokens.
  auto cascades = params->Int("num_cascades", 4, 1, 32);
  if (!cascades.ok()) return cascades.status();
  out.num_cascades = *cascades;
  // §0.5 item 19; a request that sets W but not S gets the sinks the budget leaves.
  const int64_t s0 = budget >= 1024 ? 64 : 4;
  int64_t default_sinks = s0 + Mod(budget - s0, out.num_cascades);
  if (params->Has("cascade_tokens") && !params->Has("sink_tokens")) {
    auto w = params->Int("cascade_tokens", 1, 1, budget);
    if (!w.ok()) return w.status();
    default_sinks = budget - out.num_cascades * *w;
    if (default_sinks < 0) {
      return FieldError(params->Field("cascade_tokens"),
                        absl::StrCat("must be at most budget_tokens / num_cascades = ",
                                     budget / out.num_cascades, ", got ", *w));
    }
  }
  auto sinks = params->Int("sink_tokens", default_sinks, 0, budget);
  if (!sinks.ok()) return sinks.status();
  out.sink_tokens = *sinks;
  const int64_t rest = budget - out.sink_tokens;
  if (rest < out.num_cascades || rest % out.num_cascades != 0) {
    return FieldError(
        params->Blame({"cascade_tokens", "sink_tokens", "num_cascades"}),
        absl::StrCat("leaves budget_tokens - sink_tokens = ", rest,
                     " which must be a positive multiple of num_cascades (budget ", budget,
                     ", sink_tokens ", out.sink_tokens, ", num_cascades ", out.num_cascades, ")"));
  }
  auto window = params->Int("cascade_tokens", rest / out.num_cascades, 1, budget);
  if (!window.ok()) return window.status();
  out.cascade_tokens = *window;
  if (out.budget() != budget) {
    return FieldError(params->Field("cascade_tokens"),
                      absl::StrCat("must be (budget_tokens - sink_tokens) / num_cascades = ",
                                   rest / out.num_cascades, ", got ", out.cascade_tokens));
  }
  auto decay = params->Real("ema_decay", out.ema_decay, 0.0, 1.0, /*min_open=*/true);
  if (!decay.ok()) return decay.status();
  out.ema_decay = *decay;
  auto reduction = params->Int("head_reduction", 0, 0, 2);
  if (!reduction.ok()) return reduction.status();
  out.head_reduction = *reduction == 2 ? CascadingParams::HeadReduction::kMean
                                       : CascadingParams::HeadReduction::kMax;
  return out;
}

PolicyDescription CascadingPolicy::Describe() {
  return {CachePolicyKind::kCascading,
          true,
          "sinks + num_cascades sub-caches of cascade_tokens slots; sub-cache i keeps about one "
          "token in 2^i, chosen pairwise by an EMA of attention; positions within the cache",
          {{"sink_tokens", "attention-sink tokens, never evicted",
            "S0 + ((budget - S0) mod num_cascades), S0 = 64 if budget >= 1024 else 4; "
            "budget - num_cascades * cascade_tokens when only cascade_tokens is set"},
           {"num_cascades", "number of sub-caches C (1 = StreamingLLM)", "4"},
           {"cascade_tokens", "slots per sub-cache W; sink_tokens + C * W must equal the budget",
            "(budget - sink_tokens) / num_cascades"},
           {"ema_decay", "EMA decay beta of the attention score, in (0, 1]", "0.9999999"},
           {"head_reduction", "reduction over a KV group's query heads: 0 or 1 = max, 2 = mean",
            "0 (max)"}}};
}

CascadingPolicy::CascadingPolicy(const CascadingParams& params)
    : params_(params),
      layout_(Schedule{0, std::vector<int64_t>(params.num_cascades, 0),
                       std::vector<int64_t>(params.num_cascades, 0)}) {}

const at::Tensor& CascadingPolicy::ScoreStorage(const KvCache& cache) {
  if (!scores_.defined()) {
    const KvCacheShape& shape = cache.shape();
    scores_ = at::zeros({shape.num_layers, shape.num_kv_heads, cache.capacity()},
                        at::TensorOptions().dtype(at::kFloat).device(shape.device));
  }
  return scores_;
}

RingLayout CascadingPolicy::ring_layout(int64_t layer) const {
  RingLayout layout;
  layout.ranks = layout_.ranks(layer);
  return layout;
}

void CascadingPolicy::Update(KvCache& cache, const LayerStep& step) {
  const int64_t layer = step.layer, length = cache.length(layer), n = step.new_tokens;
  const int64_t held = length - n, kv_heads = cache.shape().num_kv_heads;
  stats_.peak_tokens = std::max(stats_.peak_tokens, length);
  at::Tensor storage = ScoreStorage(cache)[layer];
  const int64_t seen = cache.tokens_seen();
  Schedule schedule = layout_.Begin(layer, cache.shape().num_layers, seen);
  TORCH_CHECK(static_cast<int64_t>(layout_.ranks(layer).size()) == held, "CascadingPolicy: layer ",
              layer, " holds ", held, " tokens, the schedule ", layout_.ranks(layer).size());

  // Per query head Σ_i β^{n−1−i}·a[i, h, j], then the group reduction (§1.5, §0.5 item 12).
  const double beta = params_.ema_decay;
  auto probs = StepAttentionProbs(step.queries, step.keys);  // [kv_heads, group, n, length]
  auto weights = at::pow(beta, at::arange(n - 1, -1, -1, at::TensorOptions().dtype(at::kDouble)));
  auto per_head = at::matmul(probs.transpose(2, 3), weights.to(probs.options()));
  auto stat = params_.head_reduction == CascadingParams::HeadReduction::kMax ? per_head.amax(1)
                                                                             : per_head.mean(1);
  std::vector<float> scores = ToHost(stat);  // [kv_heads * length]
  const std::vector<float> old = ToHost(storage.narrow(1, 0, held));
  const float decay = static_cast<float>(std::pow(beta, static_cast<double>(n)));
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t j = 0; j < held; ++j) scores[h * length + j] += decay * old[h * held + j];
  }

  // content[h * length + s]: the step's slot whose token cache slot s holds in head h.
  std::vector<int64_t> content(kv_heads * length);
  for (int64_t h = 0; h < kv_heads; ++h) {
    std::iota(content.begin() + h * length, content.begin() + (h + 1) * length, 0);
  }
  for (int64_t slot = held; slot < length; ++slot) {
    const Insertion insertion = Insert(schedule, slot, seen + slot - held);
    const std::vector<int32_t>& chain = insertion.chain;
    const int64_t hops = static_cast<int64_t>(chain.size()) - 1;
    for (int64_t h = 0; h < kv_heads && hops > 0; ++h) {
      int64_t* c = content.data() + h * length;
      const float* score = scores.data() + h * length;
      // A tie goes to the newer, incoming token.
      const bool last = !insertion.competes || score[c[chain[hops - 1]]] >= score[c[chain[hops]]];
      int64_t carried = c[chain[0]];
      for (int64_t k = 1; k <= (last ? hops : hops - 1); ++k) std::swap(carried, c[chain[k]]);
    }
  }

  std::vector<int32_t> ranks = Ranks(schedule);
  const int64_t k = static_cast<int64_t>(ranks.size());
  std::vector<int64_t> kept(kv_heads * k);
  auto next = at::zeros({kv_heads, k}, at::TensorOptions().dtype(at::kFloat));
  float* next_scores = next.data_ptr<float>();
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t r = 0; r < k; ++r) {
      kept[h * k + r] = content[h * length + r];
      next_scores[h * k + r] = scores[h * length + kept[h * k + r]];
    }
  }
  KeepSlots(cache, layer, kept, k);
  storage.narrow(1, 0, k).copy_(next);
  layout_.Finish(layer, seen + n, std::move(schedule), std::move(ranks));
  CountEviction(layer, length - k);
}

CascadingPolicy::Insertion CascadingPolicy::Insert(Schedule& schedule, int64_t slot,
                                                   int64_t p) const {
  const int64_t cascades = params_.num_cascades, width = params_.cascade_tokens;
  const int64_t sinks = params_.sink_tokens;
  Insertion out;
  if (schedule.sinks < sinks) {
    ++schedule.sinks;  // sinks are the stream's first tokens: they already sit in slots 0..S−1
    out.grows = true;
    return out;
  }
  const int64_t offset = p - sinks;
  const bool eager = p < sinks + cascades * width;  // [D] `<`, the reference uses `<=`
  out.chain.push_back(static_cast<int32_t>(slot));
  auto to = [&](int64_t s) { out.chain.push_back(static_cast<int32_t>(s)); };
  for (int64_t i = 0; i < cascades; ++i) {
    int64_t& start = schedule.start[i];
    int64_t& stored = schedule.stored[i];
    const int64_t base = sinks + i * width;
    if (eager || offset % (int64_t{1} << i) == 0) {
      if (stored < width) {
        // Room after the newest: the first free slot, since the buffers fill in order.
        to(base + start + stored);
        ++stored;
        out.grows = true;
        return out;
      }
      to(base + start);  // the oldest is displaced and offered downstream
      start = (start + 1) % width;
      continue;
    }
    if (stored == 0) {
      to(base);
      stored = 1;
      out.grows = true;
      return out;
    }
    to(base + Mod(start - 1, stored));  // compete with the most recently accepted token
    out.competes = true;
    return out;
  }
  return out;  // fell off the last sub-cache: dropped
}

std::vector<int32_t> CascadingPolicy::Ranks(const Schedule& schedule) const {
  const int64_t width = params_.cascade_tokens, sinks = params_.sink_tokens;
  int64_t held = schedule.sinks;
  for (int64_t stored : schedule.stored) held += stored;
  std::vector<int32_t> ranks(held);
  std::iota(ranks.begin(), ranks.begin() + schedule.sinks, 0);
  // Sub-cache C−1 holds the oldest tokens; inside one, circular order from start (§1.6). A
  // sub-cache that is not full has start 0 and its tokens in its first slots.
  int64_t older = schedule.sinks;
  for (int64_t i = params_.num_cascades - 1; i >= 0; --i) {
    const int64_t stored = schedule.stored[i];
    for (int64_t t = 0; t < stored; ++t) {
      ranks[sinks + i * width + t] =
          static_cast<int32_t>(older + Mod(t - schedule.start[i], stored));
    }
    older += stored;
  }
  return ranks;
}

std::optional<BatchedDecodeStep> CascadingPolicy::PlanBatchedDecode(const KvCache& cache) {
  const int64_t seen = cache.tokens_seen();
  planned_ = layout_.Begin(0, cache.shape().num_layers, seen);
  BatchedDecodeStep step;
  step.rule = BatchedDecodeStep::Rule::kSlotChain;
  step.scores = ScoreStorage(cache);
  step.score_decay = static_cast<float>(params_.ema_decay);
  step.reduction = params_.head_reduction == CascadingParams::HeadReduction::kMax
                       ? BatchedDecodeStep::GroupReduction::kMax
                       : BatchedDecodeStep::GroupReduction::kMean;
  Insertion insertion = Insert(planned_, cache.length(0), seen);
  step.chain = std::move(insertion.chain);
  step.last_hop = insertion.competes ? BatchedDecodeStep::LastHop::kIfNotWorse
                                     : BatchedDecodeStep::LastHop::kAlways;
  step.evict = !insertion.grows;
  return step;
}

void CascadingPolicy::CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) {
  std::vector<int32_t> ranks = Ranks(planned_);
  layout_.FinishAll(cache.tokens_seen() + 1, std::move(planned_), std::move(ranks));
  CommitDecodeToken(cache, step.evict);
}

at::Tensor CascadingPolicy::Scores(const KvCache& cache, int64_t layer) const {
  const int64_t length = cache.length(layer);
  if (!scores_.defined()) return at::zeros({cache.shape().num_kv_heads, length});
  auto scores = scores_[layer].narrow(1, 0, length).to(at::kCPU).clone();
  const int64_t sinks = std::min(params_.sink_tokens, length);
  scores.narrow(1, 0, sinks).zero_();
  return scores * static_cast<float>(1.0 - params_.ema_decay);
}

}  // namespace kvserve
