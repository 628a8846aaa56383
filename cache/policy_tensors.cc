#include "cache/policy_tensors.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvserve {

at::Tensor StepAttentionProbs(const at::Tensor& queries, const at::Tensor& keys) {
  const int64_t nq = queries.size(0), heads = queries.size(1), dim = queries.size(2);
  const int64_t kv_heads = keys.size(0), length = keys.size(1);
  const int64_t group = heads / kv_heads;
  // Same arithmetic as the reference attention backend (model/reference_attention.cc).
  auto q = queries.to(at::kFloat).reshape({nq, kv_heads, group, dim}).permute({1, 2, 0, 3});
  auto k = keys.to(at::kFloat).unsqueeze(1);
  auto scores = at::matmul(q, k.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(dim)));
  const auto long_options = scores.options().dtype(at::kLong);
  auto query_pos = at::arange(length - nq, length, long_options).unsqueeze(1);
  auto key_pos = at::arange(0, length, long_options).unsqueeze(0);
  scores = scores.masked_fill(key_pos > query_pos, -std::numeric_limits<float>::infinity());
  return at::softmax(scores, -1);
}

std::vector<float> ToHost(const at::Tensor& stat) {
  auto host = stat.to(at::kCPU, at::kFloat).contiguous();
  const float* data = host.data_ptr<float>();
  return std::vector<float>(data, data + host.numel());
}

void KeepSlots(KvCache& cache, int64_t layer, const std::vector<int64_t>& slots, int64_t kept) {
  const int64_t kv_heads = cache.shape().num_kv_heads;
  auto host = at::empty({kv_heads, kept}, at::TensorOptions().dtype(at::kLong));
  std::copy(slots.begin(), slots.end(), host.data_ptr<int64_t>());
  cache.Keep(layer, host.to(cache.shape().device));
}

}  // namespace kvserve
