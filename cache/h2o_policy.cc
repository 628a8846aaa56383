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

void H2oPolicy::Update(KvCache& cache, const LayerStep& step) {
  const int64_t layer = step.layer, length = cache.length(layer), held = length - step.new_tokens;
  const int64_t kv_heads = cache.shape().num_kv_heads;
  stats_.peak_tokens = std::max(stats_.peak_tokens, length);
  if (static_cast<int64_t>(scores_.size()) <= layer) scores_.resize(layer + 1);
  at::Tensor& scores = scores_[layer];
  auto mass = step.key_mass.to(at::kFloat);
  TORCH_CHECK(mass.size(1) == length, "H2O: key_mass covers ", mass.size(1), " keys, cache holds ",
              length);
  if (!scores.defined()) scores = at::zeros({kv_heads, 0}, mass.options());
  TORCH_CHECK(scores.size(1) == held, "H2O: ", scores.size(1), " scores for ", held, " held slots");
  // New tokens start at zero and receive their own step's attention like every held key (§0.5
  // item 4: float32 sums over queries and the group's heads, never normalised).
  scores = at::cat({scores, at::zeros({kv_heads, step.new_tokens}, mass.options())}, 1) + mass;
  if (length <= budget()) return;

  const int64_t old = length - params_.recent_tokens;  // candidates: every non-recent slot
  const auto long_options = at::TensorOptions().dtype(at::kLong).device(scores.device());
  at::Tensor slots;
  if (length == budget() + 1) {
    // Decode: exactly one eviction, the last of the stable (score desc, slot asc) order, i.e. the
    // newest slot among the lowest scores. O(length) instead of a sort.
    auto candidates = scores.narrow(1, 0, old);
    auto lowest = candidates.amin(1, /*keepdim=*/true);
    auto victim = at::where(candidates == lowest, at::arange(old, long_options), -1).amax(1, true);
    auto index = at::arange(length - 1, long_options).unsqueeze(0);
    slots = index + (index >= victim).to(at::kLong);
  } else {
    auto heavy = TopScoringSlots(scores.narrow(1, 0, old), params_.heavy_tokens);
    auto recent = at::arange(old, length, long_options).unsqueeze(0).expand({kv_heads, -1});
    slots = at::cat({heavy, recent}, 1);
  }
  cache.Keep(layer, slots);
  scores = scores.gather(1, slots);  // evicted tokens' scores are gone for good
  if (layer == 0) {
    stats_.evicted_tokens += length - budget();
    stats_.compression_events += 1;
  }
}

}  // namespace kvserve
