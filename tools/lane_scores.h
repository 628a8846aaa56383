// Running next-token quality sums of lanes (caches, prefill modes) fed the same tokens, against
// lane 0 as the reference: teacher-forced negative log-likelihood, KL(reference ‖ lane) and top-1
// agreement. Shared by the quality tools.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <span>

namespace kvserve {

struct LaneScore {
  double nll = 0;     // Σ -log p(true next token), nats
  double kl = 0;      // Σ KL(reference ‖ lane), nats
  int64_t agree = 0;  // positions where the lane's argmax is the reference's
  int64_t positions = 0;

  double perplexity() const;  // exp(nll / positions)
  double mean_kl() const;
  double top1_agreement() const;
};

// Adds one position to every lane: `logits` [lanes, vocab] (any float type and device, row 0 the
// reference), `next` the true next token. REQUIRES: scores.size() == logits.size(0).
void AddPosition(const at::Tensor& logits, int64_t next, std::span<LaneScore> scores);

}  // namespace kvserve
