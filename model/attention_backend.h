// One interface for attention over a batch of sequences of different lengths, each against its own
// cache. The reference backend (torch ops) is the oracle for every faster one.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <span>
#include <vector>

namespace kvserve {

// One sequence's attention in one layer.
struct AttentionInput {
  // This step's queries, rotated: [n, num_heads, head_dim].
  at::Tensor queries;
  // Every key and value the queries may see, rotated, the step's own n last: [kv_heads, m,
  // head_dim], m >= n. Query i sits at key m - n + i and sees keys 0..m-n+i (causal).
  at::Tensor keys;
  at::Tensor values;
  // Whether to return the attention mass each key received.
  bool want_key_mass = false;
};

struct AttentionOutput {
  at::Tensor out;       // [n, num_heads, head_dim], the queries' dtype
  at::Tensor key_mass;  // [kv_heads, m] float32: Σ over the group's heads and the n queries
};

class AttentionBackend {
 public:
  virtual ~AttentionBackend() = default;
  // Scaled dot-product attention with scale 1/sqrt(head_dim), grouped-query aware.
  virtual std::vector<AttentionOutput> Attend(std::span<const AttentionInput> batch) = 0;
};

// Built from torch ops, float32 scores and softmax; CPU and CUDA.
std::unique_ptr<AttentionBackend> MakeReferenceAttention();

// CUDA builds only (KVSERVE_WITH_CUDA): decode queries through the decode kernel
// (kernels/decode_step.h), prefill chunks that start their sequence through torch's fused SDPA,
// everything else through the reference.
std::unique_ptr<AttentionBackend> MakeCudaAttention();

// The backend a model on `device` attends with: the CUDA one on CUDA (in CUDA builds), else the
// reference.
std::unique_ptr<AttentionBackend> MakeDefaultAttention(at::Device device);

}  // namespace kvserve
