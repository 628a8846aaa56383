// The reference attention backend: plain torch ops, one sequence at a time, scores and softmax in
// float32. Slow and simple on purpose: it is what faster backends are tested against.
#include <cmath>

#include "model/attention_backend.h"

namespace kvserve {
namespace {

class ReferenceAttention : public AttentionBackend {
 public:
  std::vector<AttentionOutput> Attend(std::span<const AttentionInput> batch) override {
    std::vector<AttentionOutput> outputs;
    outputs.reserve(batch.size());
    for (const auto& input : batch) outputs.push_back(AttendOne(input));
    return outputs;
  }

 private:
  static AttentionOutput AttendOne(const AttentionInput& in) {
    const int64_t n = in.queries.size(0);
    const int64_t heads = in.queries.size(1);
    const int64_t dim = in.queries.size(2);
    const int64_t kv_heads = in.keys.size(0);
    const int64_t m = in.keys.size(1);
    const int64_t group = heads / kv_heads;
    // [kv_heads, group, n, dim] against [kv_heads, 1, m, dim].
    auto q = in.queries.to(at::kFloat).view({n, kv_heads, group, dim}).permute({1, 2, 0, 3});
    auto k = in.keys.to(at::kFloat).unsqueeze(1);
    auto v = in.values.to(at::kFloat).unsqueeze(1);
    auto scores = at::matmul(q, k.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(dim)));
    // Query i may see keys j <= m - n + i.
    auto query_pos = at::arange(m - n, m, scores.options().dtype(at::kLong)).unsqueeze(1);
    auto key_pos = at::arange(0, m, scores.options().dtype(at::kLong)).unsqueeze(0);
    scores = scores.masked_fill(key_pos > query_pos, -INFINITY);
    auto probs = at::softmax(scores, -1);
    auto out = at::matmul(probs, v).permute({2, 0, 1, 3}).reshape({n, heads, dim});
    AttentionOutput result{out.to(in.queries.scalar_type()), at::Tensor()};
    if (in.want_key_mass) result.key_mass = probs.sum({1, 2});
    return result;
  }
};

}  // namespace

std::unique_ptr<AttentionBackend> MakeReferenceAttention() {
  return std::make_unique<ReferenceAttention>();
}

std::unique_ptr<AttentionBackend> MakeDefaultAttention(at::Device device) {
#ifdef KVSERVE_WITH_CUDA
  if (device.is_cuda()) return MakeCudaAttention();
#endif
  (void)device;
  return MakeReferenceAttention();
}

}  // namespace kvserve
