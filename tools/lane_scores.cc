#include "tools/lane_scores.h"

#include <cmath>

namespace kvserve {

double LaneScore::perplexity() const { return std::exp(nll / static_cast<double>(positions)); }
double LaneScore::mean_kl() const { return kl / static_cast<double>(positions); }
double LaneScore::top1_agreement() const {
  return static_cast<double>(agree) / static_cast<double>(positions);
}

void AddPosition(const at::Tensor& logits, int64_t next, std::span<LaneScore> scores) {
  auto log_probs = at::log_softmax(logits.to(at::kDouble), -1).cpu();
  auto reference = log_probs[0].unsqueeze(0);
  auto kl = (reference.exp() * (reference - log_probs)).sum(-1);
  auto top = log_probs.argmax(-1);
  const int64_t reference_top = top[0].item<int64_t>();
  for (size_t i = 0; i < scores.size(); ++i) {
    LaneScore& s = scores[i];
    s.nll -= log_probs[i][next].item<double>();
    s.kl += kl[i].item<double>();
    s.agree += top[i].item<int64_t>() == reference_top;
    ++s.positions;
  }
}

}  // namespace kvserve
