#include "cache/freqkv_policy.h"

#include <absl/strings/str_cat.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "cache/policy_params.h"

namespace kvserve {

absl::StatusOr<FreqKvParams> FreqKvPolicy::Resolve(const CacheSpec& spec,
                                                   const PolicyContext& /*context*/) {
  auto params = PolicyParams::Read(
      spec, "freqkv",
      {"cache_tokens", "sink_tokens", "recent_tokens", "ratio_numerator", "ratio_denominator"});
  if (!params.ok()) return params.status();
  const int64_t budget = params->budget();
  FreqKvParams out;
  // The cache never holds more than N_cap, which therefore may not exceed the budget.
  auto cap = params->Int("cache_tokens", budget, 1, budget);
  auto sinks = params->Int("sink_tokens", 4, 0, budget);
  auto recent = params->Int("recent_tokens", 0, 0, budget);
  // Bounded so that N_c · numerator stays far from overflow.
  auto numerator = params->Int("ratio_numerator", 1, 1, 1 << 20);
  auto denominator = params->Int("ratio_denominator", 2, 1, 1 << 20);
  for (const auto* value : {&cap, &sinks, &recent, &numerator, &denominator}) {
    if (!value->ok()) return value->status();
  }
  out.cache_tokens = *cap;
  out.sink_tokens = *sinks;
  out.recent_tokens = *recent;
  out.ratio_numerator = *numerator;
  out.ratio_denominator = *denominator;
  const int64_t span = out.span(), kept = out.kept_frequencies();
  if (span < 2) {
    return FieldError(params->Blame({"cache_tokens", "sink_tokens", "recent_tokens"}),
                      absl::StrCat("leaves a compressible span cache_tokens - sink_tokens - "
                                   "recent_tokens = ",
                                   span, " < 2 (cache_tokens ", out.cache_tokens, ", sink_tokens ",
                                   out.sink_tokens, ", recent_tokens ", out.recent_tokens, ")"));
  }
  if (kept < 1 || kept > span - 1) {
    return FieldError(params->Blame({"ratio_numerator", "ratio_denominator"}),
                      absl::StrCat("gives L = floor(", span, " * ", out.ratio_numerator, " / ",
                                   out.ratio_denominator, ") = ", kept, ", which must be in [1, ",
                                   span - 1, "]"));
  }
  return out;
}

PolicyDescription FreqKvPolicy::Describe() {
  return {CachePolicyKind::kFreqKv,
          true,
          "when the cache is full, the span after the sinks is compressed along the sequence to "
          "its lowest DCT frequencies (L = floor(span * ratio)), iteratively; positions within "
          "the cache",
          {{"cache_tokens", "capacity N_cap, sinks included; at most the budget", "budget"},
           {"sink_tokens", "attention-sink tokens, never compressed", "4"},
           {"recent_tokens", "newest raw tokens excluded from compression", "0"},
           {"ratio_numerator", "numerator of the kept-frequency ratio", "1"},
           {"ratio_denominator", "denominator of the kept-frequency ratio", "2"}}};
}

at::Tensor FreqKvPolicy::CompressionMatrix(int64_t n, int64_t l) {
  TORCH_CHECK(1 <= l && l <= n, "CompressionMatrix needs 1 <= l <= n, got l ", l, ", n ", n);
  auto alpha = [](int64_t size, int64_t k) {
    return std::sqrt((k == 0 ? 1.0 : 2.0) / static_cast<double>(size));
  };
  const double pi = std::numbers::pi;
  auto out = at::zeros({l, n}, at::TensorOptions().dtype(at::kDouble));
  auto t = out.accessor<double, 2>();
  const double scale = std::sqrt(static_cast<double>(l) / static_cast<double>(n));
  for (int64_t m = 0; m < l; ++m) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t k = 0; k < l; ++k) {
        sum += alpha(l, k) * alpha(n, k) * std::cos(pi * k * (2 * m + 1) / (2.0 * l)) *
               std::cos(pi * k * (2 * j + 1) / (2.0 * n));
      }
      t[m][j] = scale * sum;
    }
  }
  return out;
}

int64_t FreqKvPolicy::MaxStepTokens(const KvCache& cache, int64_t wanted) const {
  return std::min(wanted, params_.cache_tokens - cache.length(0));
}

std::optional<BatchedDecodeStep> FreqKvPolicy::PlanBatchedDecode(const KvCache& cache) {
  if (cache.length(0) + 1 < params_.cache_tokens) return BatchedDecodeStep{};
  return std::nullopt;
}

void FreqKvPolicy::Update(KvCache& cache, const LayerStep& step) {
  const int64_t layer = step.layer, length = cache.length(layer);
  stats_.peak_tokens = std::max(stats_.peak_tokens, length);
  TORCH_CHECK(length <= params_.cache_tokens, "FreqKvPolicy: layer ", layer, " holds ", length,
              " tokens > cache_tokens ", params_.cache_tokens,
              " (steps must respect MaxStepTokens)");
  if (length < params_.cache_tokens) return;

  const int64_t sinks = params_.sink_tokens, span = params_.span();
  const int64_t kept = params_.kept_frequencies();
  auto keys = cache.keys(layer), values = cache.values(layer), positions = cache.positions(layer);
  if (!matrix_.defined() || matrix_.device() != keys.device()) {
    matrix_ = CompressionMatrix(span, kept).to(keys.device(), at::kFloat);
  }
  // One GEMM each for keys and values over all heads: [L, N_c] · [kv_heads, N_c, d], in float32.
  auto compress = [&](const at::Tensor& x) {
    return at::matmul(matrix_, x.narrow(1, sinks, span).to(at::kFloat)).to(x.scalar_type());
  };
  std::vector<int64_t> centre(kept);
  for (int64_t m = 0; m < kept; ++m) centre[m] = sinks + (2 * m + 1) * span / (2 * kept);
  auto centre_index = at::tensor(centre, positions.options()).to(positions.device());
  auto rest = [&](const at::Tensor& x) { return x.narrow(1, sinks + span, length - sinks - span); };
  auto head = [&](const at::Tensor& x) { return x.narrow(1, 0, sinks); };
  auto new_keys = at::cat({head(keys), compress(keys), rest(keys)}, 1);
  auto new_values = at::cat({head(values), compress(values), rest(values)}, 1);
  auto new_positions =
      at::cat({head(positions), positions.index_select(1, centre_index), rest(positions)}, 1);
  cache.Replace(layer, new_keys, new_values, new_positions);
  CountEviction(layer, span - kept);
}

}  // namespace kvserve
