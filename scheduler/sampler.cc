#include "scheduler/sampler.h"

#include <absl/strings/str_cat.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kvserve {

absl::Status ValidateSamplingParams(const SamplingParams& p, int32_t max_new_tokens_limit) {
  auto bad = [](const std::string& message) { return absl::InvalidArgumentError(message); };
  if (p.max_new_tokens < 1 || p.max_new_tokens > max_new_tokens_limit) {
    return bad(absl::StrCat("sampling.max_new_tokens must be in [1, ", max_new_tokens_limit,
                            "], got ", p.max_new_tokens));
  }
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return bad(
        absl::StrCat("sampling.temperature must be a finite number >= 0, got ", p.temperature));
  }
  if (p.top_k < 0) return bad(absl::StrCat("sampling.top_k must be >= 0, got ", p.top_k));
  if (!(p.top_p > 0 && p.top_p <= 1)) {
    return bad(absl::StrCat("sampling.top_p must be in (0, 1], got ", p.top_p));
  }
  if (!(p.min_p >= 0 && p.min_p <= 1)) {
    return bad(absl::StrCat("sampling.min_p must be in [0, 1], got ", p.min_p));
  }
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0) {
    return bad(absl::StrCat("sampling.repetition_penalty must be a finite number > 0, got ",
                            p.repetition_penalty));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, uint64_t seed, std::span<const int32_t> prompt)
    : params_(params), rng_(seed) {
  if (params_.repetition_penalty != 1.0f) seen_.insert(prompt.begin(), prompt.end());
}

int32_t Sampler::Sample(std::span<const float> logits) {
  std::vector<float> scores(logits.begin(), logits.end());
  const int32_t vocab = static_cast<int32_t>(scores.size());
  for (int32_t id : seen_) {  // as HF: shrink positive logits, push negative ones further down
    if (id < 0 || id >= vocab) continue;
    scores[id] = scores[id] > 0 ? scores[id] / params_.repetition_penalty
                                : scores[id] * params_.repetition_penalty;
  }

  int32_t chosen = 0;
  if (params_.temperature == 0.0f) {
    chosen = static_cast<int32_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
  } else {
    // Candidates by descending score (ties: lower id first), cut by top-k.
    std::vector<int32_t> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    const int32_t keep = params_.top_k > 0 ? std::min(params_.top_k, vocab) : vocab;
    auto by_score = [&](int32_t a, int32_t b) {
      return scores[a] != scores[b] ? scores[a] > scores[b] : a < b;
    };
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_score);
    order.resize(keep);

    std::vector<double> probs(keep);
    const double top = scores[order[0]] / params_.temperature;
    double total = 0;
    for (int32_t i = 0; i < keep; ++i) {
      probs[i] = std::exp(scores[order[i]] / params_.temperature - top);
      total += probs[i];
    }
    // top-p: the smallest prefix whose mass reaches p (at least one token).
    int32_t kept = 0;
    double mass = 0;
    while (kept < keep && (kept == 0 || mass < params_.top_p * total)) mass += probs[kept++];
    // min-p: drop tokens below min_p times the most likely one.
    while (kept > 1 && probs[kept - 1] < params_.min_p * probs[0]) mass -= probs[--kept];

    double draw = std::uniform_real_distribution<double>(0.0, mass)(rng_);
    chosen = order[kept - 1];
    for (int32_t i = 0; i < kept; ++i) {
      if (draw < probs[i]) {
        chosen = order[i];
        break;
      }
      draw -= probs[i];
    }
  }
  if (params_.repetition_penalty != 1.0f) seen_.insert(chosen);
  return chosen;
}

}  // namespace kvserve
