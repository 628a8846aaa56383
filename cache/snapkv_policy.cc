#include "cache/snapkv_policy.h"

#include <absl/strings/str_cat.h>
#include <c10/util/Exception.h>

#include <algorithm>

#include "cache/policy_params.h"
#include "cache/policy_tensors.h"
#include "cache/score_selection.h"

namespace kvserve {

absl::StatusOr<SnapKvPolicy::Params> SnapKvPolicy::Resolve(const CacheSpec& spec,
                                                           const PolicyContext& context) {
  auto reader = PolicyParams::Read(spec, "snapkv", {"window_tokens", "kernel_size", "pooling"});
  if (!reader.ok()) return reader.status();
  if (auto s = reader->CheckBudget(2, "a window of >= 1 token plus >= 1 selected token"); !s.ok()) {
    return s;
  }
  Params p;
  p.budget_tokens = reader->budget();
  p.prompt_tokens = context.prompt_tokens;
  p.max_new_tokens = context.max_new_tokens;
  auto window = reader->Int("window_tokens", std::min<int64_t>(32, p.budget_tokens / 2), 1);
  if (!window.ok()) return window.status();
  p.window_tokens = *window;
  if (p.window_tokens >= p.budget_tokens) {  // §0.5 item 6: B <= w is refused
    return FieldError(reader->Field("window_tokens"),
                      absl::StrCat("must be < cache.budget_tokens = ", p.budget_tokens, ", got ",
                                   p.window_tokens));
  }
  auto kernel = reader->Int("kernel_size", 5);
  if (!kernel.ok()) return kernel.status();
  p.kernel_size = *kernel;
  if (p.kernel_size < 1 || p.kernel_size % 2 == 0) {
    return FieldError(reader->Field("kernel_size"),
                      absl::StrCat("must be an odd integer >= 1, got ", p.kernel_size));
  }
  auto pooling = reader->Int("pooling", 1);
  if (!pooling.ok()) return pooling.status();
  if (*pooling < 0 || *pooling > 2) {
    return FieldError(reader->Field("pooling"),
                      absl::StrCat("must be 0 or 1 (average) or 2 (max), got ", *pooling));
  }
  p.pooling = *pooling == 2 ? Pooling::kMax : Pooling::kAverage;
  return p;
}

PolicyDescription SnapKvPolicy::Describe() {
  return {CachePolicyKind::kSnapKv,
          true,
          "compresses the prompt once at its end: the last window_tokens prompt tokens plus the "
          "prefix tokens they attend to most (pooled); grows during decode; reserves "
          "max(prompt, budget + max_new_tokens) (SnapKV)",
          {{"window_tokens", "observation window: last prompt tokens, always kept, < budget",
            "min(32, floor(budget / 2))"},
           {"kernel_size", "pooling kernel over the prefix scores, odd >= 1 (1 = no pooling)", "5"},
           {"pooling", "0 or 1 = average pooling (zero padding counted), 2 = max pooling", "1"}}};
}

int64_t SnapKvPolicy::Capacity(int64_t /*max_step_tokens*/) const {
  return std::max(params_.prompt_tokens, params_.budget_tokens + params_.max_new_tokens);
}

std::optional<BatchedDecodeStep> SnapKvPolicy::PlanBatchedDecode(const KvCache& cache) {
  const bool compresses = params_.prompt_tokens > params_.budget_tokens;
  if (compresses && cache.tokens_seen() < params_.prompt_tokens) return std::nullopt;
  return BatchedDecodeStep{};
}

void SnapKvPolicy::Update(KvCache& cache, const LayerStep& step) {
  const int64_t layer = step.layer, length = cache.length(layer);
  stats_.peak_tokens = std::max(stats_.peak_tokens, length);
  const int64_t prompt = params_.prompt_tokens;
  // Prompts within the budget are never compressed; decode never evicts.
  if (prompt <= params_.budget_tokens) return;
  const int64_t step_start = cache.tokens_seen(), step_end = step_start + step.new_tokens;
  if (step_start >= prompt) return;
  TORCH_CHECK(step_end <= prompt, "SnapKV: a step of tokens [", step_start, ", ", step_end,
              ") crosses the prompt's end at ", prompt);
  // Nothing was evicted yet, so slot j holds token j; the causal masks below rely on it.
  TORCH_CHECK(length == step_end, "SnapKV: ", length, " slots before the prompt's end, expected ",
              step_end);
  const int64_t window_start = prompt - params_.window_tokens;
  if (step_end > window_start) {
    AccumulateWindowAttention(step, std::max<int64_t>(0, window_start - step_start));
  }
  if (step_end == prompt) Compress(cache, layer);
}

// A window query sees only keys up to itself, and nothing is evicted before the prompt's end, so
// its attention is final in the step that brings it: accumulating here equals attending with all
// the last w queries at the end, whatever the chunking, without keeping queries across steps.
void SnapKvPolicy::AccumulateWindowAttention(const LayerStep& step, int64_t first_query) {
  const int64_t layer = step.layer, m = step.new_tokens - first_query;
  const int64_t prefix = params_.prompt_tokens - params_.window_tokens;
  // The step ends at the cache's end (checked in Update), so these m queries are its last.
  auto probs = StepAttentionProbs(step.queries.narrow(0, first_query, m), step.keys);
  // §0.5 item 14: mean over the group's query heads; Σ over the window queries (same ranking as
  // the mean, and the spec's worked example lists sums).
  auto mass = probs.narrow(-1, 0, prefix).mean(1).sum(1);
  if (static_cast<int64_t>(window_mass_.size()) <= layer) window_mass_.resize(layer + 1);
  if (!window_mass_[layer].defined()) window_mass_[layer] = at::zeros_like(mass);
  window_mass_[layer] += mass;
}

void SnapKvPolicy::Compress(KvCache& cache, int64_t layer) {
  const int64_t prompt = params_.prompt_tokens, window = params_.window_tokens;
  const int64_t k = params_.kernel_size, kv_heads = cache.shape().num_kv_heads;
  TORCH_CHECK(layer < static_cast<int64_t>(window_mass_.size()) && window_mass_[layer].defined(),
              "SnapKV: no window attention accumulated for layer ", layer);
  // §0.5 item 15: pool the prefix only, zero padding k/2 at both ends, divisor k. Max pooling pads
  // with -inf, which equals zero padding here because attention mass is >= 0.
  auto scores = window_mass_[layer].unsqueeze(1);  // [kv_heads, 1, prefix]
  scores = params_.pooling == Pooling::kMax
               ? at::max_pool1d(scores, {k}, {1}, {k / 2})
               : at::avg_pool1d(scores, {k}, {1}, {k / 2}, /*ceil_mode=*/false,
                                /*count_include_pad=*/true);
  auto selected = TopScoringSlots(scores.squeeze(1), params_.budget_tokens - window);
  const auto long_options = at::TensorOptions().dtype(at::kLong).device(selected.device());
  auto recent = at::arange(prompt - window, prompt, long_options);
  cache.Keep(layer, at::cat({selected, recent.unsqueeze(0).expand({kv_heads, -1})}, 1));
  window_mass_[layer] = at::Tensor();
  CountEviction(layer, prompt - params_.budget_tokens);
}

}  // namespace kvserve
