#include "cache/cascading_policy.h"

#include <absl/strings/str_cat.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

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

CascadingPolicy::CascadingPolicy(const CascadingParams& params) : params_(params) {
  schedule_.start.assign(params.num_cascades, 0);
  schedule_.stored.assign(params.num_cascades, 0);
}

void CascadingPolicy::Update(KvCache& cache, const LayerStep& step) {
  const int64_t layer = step.layer, length = cache.length(layer), n = step.new_tokens;
  const int64_t held = length - n, kv_heads = cache.shape().num_kv_heads;
  stats_.peak_tokens = std::max(stats_.peak_tokens, length);
  if (static_cast<int64_t>(scores_.size()) < cache.shape().num_layers) {
    scores_.resize(cache.shape().num_layers);
    score_length_.resize(cache.shape().num_layers, 0);
  }
  // The schedule advances once per step, not per layer: the first layer of a new step commits the
  // state the previous step computed.
  const int64_t seen = cache.tokens_seen();
  if (next_schedule_tokens_ == seen) {
    schedule_ = next_schedule_;
    schedule_tokens_ = seen;
  }
  TORCH_CHECK(schedule_tokens_ == seen && score_length_[layer] == held, "CascadingPolicy: layer ",
              layer, " out of step (", held, " held, ", score_length_[layer],
              " scored; tokens_seen ", seen, ")");

  // Per query head Σ_i β^{n−1−i}·a[i, h, j], then the group reduction (§1.5, §0.5 item 12).
  const double beta = params_.ema_decay;
  auto probs = StepAttentionProbs(step.queries, step.keys);  // [kv_heads, group, n, length]
  auto weights = at::pow(beta, at::arange(n - 1, -1, -1, at::TensorOptions().dtype(at::kDouble)));
  auto per_head = at::matmul(probs.transpose(2, 3), weights.to(probs.options()));
  auto stat = params_.head_reduction == CascadingParams::HeadReduction::kMax ? per_head.amax(1)
                                                                             : per_head.mean(1);
  const std::vector<float> attended = ToHost(stat);  // [kv_heads * length]
  const float decay = static_cast<float>(std::pow(beta, static_cast<double>(n)));
  std::vector<float> scores(attended);
  const std::vector<float>& old = scores_[layer];
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t j = 0; j < held; ++j) scores[h * length + j] += decay * old[h * held + j];
  }

  Schedule schedule = schedule_;
  const std::vector<int64_t> kept = Insert(schedule, scores, kv_heads, held, length, seen);
  const int64_t k = static_cast<int64_t>(kept.size()) / kv_heads;
  std::vector<float>& next = scores_[layer];
  next.assign(kv_heads * k, 0.0f);
  for (int64_t h = 0; h < kv_heads; ++h) {
    for (int64_t r = schedule.sinks; r < k; ++r)
      next[h * k + r] = scores[h * length + kept[h * k + r]];
  }
  score_length_[layer] = k;
  KeepSlots(cache, layer, kept, k);
  next_schedule_ = std::move(schedule);
  next_schedule_tokens_ = seen + n;
  CountEviction(layer, length - k);
}

std::vector<int64_t> CascadingPolicy::Insert(Schedule& schedule, const std::vector<float>& scores,
                                             int64_t kv_heads, int64_t held, int64_t length,
                                             int64_t first_token) const {
  const int64_t cascades = params_.num_cascades, width = params_.cascade_tokens;
  const int64_t sinks = params_.sink_tokens, slots = cascades * width;
  // phys[h * slots + t]: the cache slot of the token in physical slot t of head h. Before the step
  // the cache is in temporal order, so occupied physical slots map to their rank (§1.6).
  std::vector<int64_t> phys(kv_heads * slots, -1);
  int64_t rank = schedule.sinks;
  for (int64_t i = cascades - 1; i >= 0; --i) {
    for (int64_t j = 0; j < schedule.stored[i]; ++j) {
      const int64_t t = i * width + (schedule.start[i] + j) % width;
      for (int64_t h = 0; h < kv_heads; ++h) phys[h * slots + t] = rank + j;
    }
    rank += schedule.stored[i];
  }
  TORCH_CHECK(rank == held, "CascadingPolicy: ", held, " held tokens but the schedule has ", rank);

  std::vector<int64_t> cand(kv_heads);
  // §1.4, vectorised over heads: the schedule is shared, only competitions differ per head.
  auto insert = [&](int64_t slot, int64_t p) {
    if (schedule.sinks < sinks) {
      ++schedule.sinks;  // sinks are the stream's first tokens: they already sit in slots 0..S−1
      return;
    }
    const int64_t offset = p - sinks;
    const bool eager = p < sinks + slots;  // [D] `<`, the reference uses `<=`
    std::fill(cand.begin(), cand.end(), slot);
    for (int64_t i = 0; i < cascades; ++i) {
      int64_t& start = schedule.start[i];
      int64_t& stored = schedule.stored[i];
      const int64_t base = i * width;
      if (eager || offset % (int64_t{1} << i) == 0) {
        if (stored < width) {
          for (int64_t h = 0; h < kv_heads; ++h) phys[h * slots + base + start + stored] = cand[h];
          ++stored;
          return;
        }
        for (int64_t h = 0; h < kv_heads; ++h) std::swap(phys[h * slots + base + start], cand[h]);
        start = (start + 1) % width;
        continue;  // the evicted oldest token is offered downstream
      }
      if (stored == 0) {
        for (int64_t h = 0; h < kv_heads; ++h) phys[h * slots + base] = cand[h];
        stored = 1;
        return;
      }
      const int64_t newest = base + Mod(start - 1, stored);
      for (int64_t h = 0; h < kv_heads; ++h) {
        int64_t& target = phys[h * slots + newest];
        // A tie goes to the newer, incoming token.
        if (scores[h * length + cand[h]] >= scores[h * length + target]) target = cand[h];
      }
      return;
    }
    // Fell off the last sub-cache: dropped.
  };
  for (int64_t slot = held; slot < length; ++slot) insert(slot, first_token + slot - held);

  int64_t kept = schedule.sinks;
  for (int64_t i = 0; i < cascades; ++i) kept += schedule.stored[i];
  std::vector<int64_t> order(kv_heads * kept);
  for (int64_t h = 0; h < kv_heads; ++h) {
    int64_t* out = order.data() + h * kept;
    for (int64_t s = 0; s < schedule.sinks; ++s) *out++ = s;
    for (int64_t i = cascades - 1; i >= 0; --i) {
      for (int64_t j = 0; j < schedule.stored[i]; ++j) {
        *out++ = phys[h * slots + i * width + (schedule.start[i] + j) % width];
      }
    }
  }
  return order;
}

at::Tensor CascadingPolicy::Scores(int64_t layer) const {
  const int64_t length = score_length_.at(layer);
  const auto& scores = scores_.at(layer);
  const int64_t kv_heads = length == 0 ? 0 : static_cast<int64_t>(scores.size()) / length;
  auto out = at::empty({kv_heads, length}, at::TensorOptions().dtype(at::kFloat));
  std::copy(scores.begin(), scores.end(), out.data_ptr<float>());
  return out * static_cast<float>(1.0 - params_.ema_decay);
}

}  // namespace kvserve
