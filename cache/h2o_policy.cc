#include "cache/h2o_policy.h"

#include <absl/strings/str_cat.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <tuple>

#include "cache/policy_params.h"
#include "cache/score_selection.h"

namespace kvserve {

absl::StatusOr<H2oPolicy::Params> H2oPolicy::Resolve(const CacheSpec& spec,
                                                     const PolicyContext& /*context*/) {
  auto reader = PolicyParams::Read(spec, "h2o", {"heavy_tokens", "recent_tokens"});
  if (!reader.ok()) return reader.status();
  if (auto s = reader->CheckBudget(2, "one heavy and one recent token"); !s.ok()) return s;
  const int64_t budget = reader->budget();
  auto heavy = reader->Int("heavy_tokens", 0, 1);
  if (!heavy.ok()) return heavy.status();
  auto recent = reader->Int("recent_tokens", 0, 1);
  if (!recent.ok()) return recent.status();
  const bool has_heavy = reader->Has("heavy_tokens"), has_recent = reader->Has("recent_tokens");
  if (!has_heavy && !has_recent) return Params{budget - budget / 2, budget / 2};
  for (const auto& [name, value, given] : {std::tuple("heavy_tokens", *heavy, has_heavy),
                                           std::tuple("recent_tokens", *recent, has_recent)}) {
    // A lone parameter leaves the rest of the budget to the other, which needs >= 1 token.
    if (given && value > budget - 1) {
      return FieldError(
          reader->Field(name),
          absl::StrCat("must be <= cache.budget_tokens - 1 = ", budget - 1, ", got ", value));
    }
  }
  if (!has_heavy) *heavy = budget - *recent;
  if (!has_recent) *recent = budget - *heavy;
  if (*heavy + *recent != budget) {
    return FieldError(
        absl::StrCat(reader->Field("heavy_tokens"), " + ", reader->Field("recent_tokens")),
        absl::StrCat("must equal cache.budget_tokens = ", budget, ", got ", *heavy, " + ",
                     *recent));
  }
  return Params{*heavy, *recent};
}

PolicyDescription H2oPolicy::Describe() {
  return {CachePolicyKind::kH2o,
          true,
          "heavy hitters (most attention received so far, per KV head) plus a window of recent "
          "tokens; original positions (H2O)",
          {{"heavy_tokens", "older tokens kept by accumulated attention, >= 1",
            "budget - recent_tokens"},
           {"recent_tokens", "most recent tokens always kept, >= 1; heavy + recent = budget",
            "budget - heavy_tokens if heavy_tokens is given, else floor(budget / 2)"}}};
}

at::Tensor H2oPolicy::scores(const KvCache& cache, int64_t layer) const {
  if (!scores_.defined()) return {};
  return scores_[layer].narrow(1, 0, cache.length(layer));
}

const at::Tensor& H2oPolicy::ScoreStorage(const KvCache& cache) {
  if (!scores_.defined()) {
    const KvCacheShape& shape = cache.shape();
    scores_ = at::zeros({shape.num_layers, shape.num_kv_heads, cache.capacity()},
                        at::TensorOptions().dtype(at::kFloat).device(shape.device));
  }
  return scores_;
}

int64_t H2oPolicy::MinRecentPosition(const KvCache& cache) const {
  return cache.tokens_seen() + 1 - params_.recent_tokens;
}

void H2oPolicy::Update(KvCache& cache, const LayerStep& step) {
  const int64_t layer = step.layer, length = cache.length(layer), held = length - step.new_tokens;
  stats_.peak_tokens = std::max(stats_.peak_tokens, length);
  auto mass = step.key_mass.to(at::kFloat);
  TORCH_CHECK(mass.size(1) == length, "H2O: key_mass covers ", mass.size(1), " keys, cache holds ",
              length);
  at::Tensor storage = ScoreStorage(cache)[layer];
  auto scores = storage.narrow(1, 0, length);
  // New tokens start at zero and receive their own step's attention like every held key (§0.5
  // item 4: float32 sums over queries and the group's heads, never normalised).
  scores.narrow(1, held, step.new_tokens).zero_();
  scores.add_(mass);
  if (length <= budget()) return;

  const auto long_options = at::TensorOptions().dtype(at::kLong).device(scores.device());
  at::Tensor slots;
  if (step.new_tokens == 1 && length == budget() + 1) {
    // Decode: one eviction among the tokens older than the recent window, by position (slots are
    // not temporal once decoding evicted), the newest among the lowest scores; O(length).
    auto positions = cache.positions(layer);
    const int64_t min_recent = MinRecentPosition(cache);
    auto old = positions < min_recent;
    auto lowest = at::where(old, scores, INFINITY).amin(1, /*keepdim=*/true);
    auto victim = at::where(old.logical_and(scores == lowest), positions, -1).argmax(1, true);
    slots = at::arange(length - 1, long_options).unsqueeze(0).repeat({scores.size(0), 1});
    slots.scatter_(1, victim, length - 1);
  } else {
    // Chunks precede every decode step, so slots are in temporal order here.
    const int64_t old = length - params_.recent_tokens;
    auto heavy = TopScoringSlots(scores.narrow(1, 0, old), params_.heavy_tokens);
    auto recent = at::arange(old, length, long_options).unsqueeze(0).expand({heavy.size(0), -1});
    slots = at::cat({heavy, recent}, 1);
  }
  cache.Keep(layer, slots);
  // Evicted tokens' scores are gone for good.
  storage.narrow(1, 0, slots.size(1)).copy_(scores.gather(1, slots));
  CountEviction(layer, length - budget());
}

std::optional<BatchedDecodeStep> H2oPolicy::PlanBatchedDecode(const KvCache& cache) {
  BatchedDecodeStep step;
  step.rule = BatchedDecodeStep::Rule::kLowestScore;
  step.scores = ScoreStorage(cache);
  step.min_recent_position = MinRecentPosition(cache);
  step.evict = cache.length(0) + 1 > budget();
  return step;
}

void H2oPolicy::CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) {
  CommitDecodeToken(cache, step.evict);
}

}  // namespace kvserve
