// Rotary position embedding as Hugging Face's Llama computes it (rotate_half layout; inverse
// frequencies in float32; "linear" and "llama3" scaling), so that float32 outputs match exactly.
#pragma once

#include <ATen/ATen.h>

#include "model/model_config.h"

namespace kvserve {

class RotaryEmbedding {
 public:
  RotaryEmbedding(const ModelConfig& config, at::Device device);

  // Rotates x, whose dimension `seq_dim` runs over `positions` ([n] int64) and whose last dimension
  // is head_dim. Computes in float32 angles, applies in x's dtype (as HF does). On CUDA, for 16-bit
  // 3-D x, through one kernel with the same roundings; else ApplyReference.
  at::Tensor Apply(const at::Tensor& x, const at::Tensor& positions, int64_t seq_dim) const;
  // The same from torch ops.
  at::Tensor ApplyReference(const at::Tensor& x, const at::Tensor& positions,
                            int64_t seq_dim) const;

  // Keys stored under PositionMode::kShiftedSinks as attention sees them: `keys` [kv_heads,
  // length, head_dim] with slots [0, sinks) turned on by `shift` positions; `keys` itself when
  // there is nothing to turn.
  at::Tensor ShiftSinks(const at::Tensor& keys, int64_t sinks, int64_t shift) const;

  const at::Tensor& inverse_frequencies() const { return inv_freq_; }

 private:
  at::Tensor inv_freq_;  // [head_dim / 2] float32
};

}  // namespace kvserve
