#include "model/scoring.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>

#include "cache/full_policy.h"

namespace kvserve {

absl::StatusOr<std::vector<double>> TokenNll(LlamaModel& model, std::span<const int32_t> ids,
                                             int64_t chunk) {
  const int64_t n = static_cast<int64_t>(ids.size());
  const ModelConfig& config = model.config();
  if (n < 2) return absl::InvalidArgumentError("scoring needs at least 2 tokens");
  if (n > config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("scoring ", n, " tokens exceeds the context of ",
                                                   config.max_position_embeddings));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= config.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token ", i, " = ", ids[i], " is outside the vocabulary"));
    }
  }
  FullPolicy policy(n);
  KvCache cache(model.cache_shape(), n);
  std::vector<double> nll;
  nll.reserve(n - 1);
  for (int64_t start = 0; start < n - 1; start += chunk) {
    // Logits of tokens start..end-1 predict tokens start+1..end.
    const int64_t end = std::min(n - 1, start + chunk);
    SequenceInput input{&cache, &policy, ids.subspan(start, end - start), /*all_logits=*/true};
    auto log_probs = at::log_softmax(model.Forward({&input, 1}).to(at::kDouble), -1);
    std::vector<int64_t> targets(ids.begin() + start + 1, ids.begin() + end + 1);
    auto target = at::tensor(targets, at::kLong).to(log_probs.device()).unsqueeze(1);
    auto picked = log_probs.gather(1, target).squeeze(1).cpu();
    for (int64_t i = 0; i < end - start; ++i) nll.push_back(-picked[i].item<double>());
  }
  return nll;
}

}  // namespace kvserve
