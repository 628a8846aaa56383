#include "cache/batched_decode.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <vector>

#include "cache/kernel_dtype.h"
#include "kernels/decode_maintenance.h"

namespace kvserve {
namespace {

kernels::EvictionEntry Entry(KvCache& cache, const BatchedDecodeStep& step) {
  const KvCache::Layout layout = cache.layout();
  kernels::EvictionEntry e;
  e.keys = layout.keys;
  e.values = layout.values;
  e.layer_stride = layout.layer_stride;
  e.head_stride = layout.head_stride;
  e.positions = layout.positions;
  e.positions_layer_stride = layout.positions_layer_stride;
  e.positions_head_stride = cache.capacity();
  e.length = static_cast<int32_t>(cache.length(0));
  if (step.rule == BatchedDecodeStep::Rule::kRingVictim) {
    e.rule = kernels::EvictionRule::kRingVictim;
    e.ring_victim = static_cast<int32_t>(step.ring_victim);
    return e;
  }
  const at::Tensor& mass = cache.key_mass_storage();
  TORCH_CHECK(step.scores.defined() && step.scores.is_contiguous() &&
                  step.scores.size(2) == cache.capacity() && mass.defined(),
              "batched decode maintenance: kLowestScore needs scores and the key mass");
  e.rule = kernels::EvictionRule::kLowestScore;
  e.evict = step.evict ? 1 : 0;
  e.scores = step.scores.data_ptr<float>();
  // Scores and key mass are [layers, kv_heads, capacity], laid out as the positions.
  e.scores_layer_stride = e.mass_layer_stride = layout.positions_layer_stride;
  e.scores_head_stride = e.mass_head_stride = cache.capacity();
  e.key_mass = mass.data_ptr<float>();
  e.min_recent_position = step.min_recent_position;
  return e;
}

}  // namespace

void ApplyBatchedDecodeSteps(std::span<KvCache* const> caches,
                             std::span<const BatchedDecodeStep* const> steps) {
  TORCH_CHECK(caches.size() == steps.size(), "ApplyBatchedDecodeSteps: one step per cache");
  std::vector<kernels::EvictionEntry> entries;
  for (size_t i = 0; i < caches.size(); ++i) {
    if (steps[i]->rule != BatchedDecodeStep::Rule::kAppendOnly) {
      entries.push_back(Entry(*caches[i], *steps[i]));
    }
  }
  if (entries.empty()) return;
  const KvCacheShape& shape = caches[0]->shape();
  const int64_t bytes = static_cast<int64_t>(entries.size() * sizeof(kernels::EvictionEntry));
  auto host = at::empty({bytes}, at::TensorOptions().dtype(at::kByte));
  std::memcpy(host.data_ptr(), entries.data(), bytes);
  auto device = host.to(shape.device);
  const cudaError_t error = kernels::EvictOneToken(
      KernelDType(shape.dtype), static_cast<int32_t>(shape.head_dim),
      static_cast<int32_t>(shape.num_kv_heads), static_cast<int32_t>(shape.num_layers),
      static_cast<const kernels::EvictionEntry*>(device.data_ptr()),
      static_cast<int32_t>(entries.size()), at::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(error == cudaSuccess, "EvictOneToken kernel: ", cudaGetErrorString(error));
}

}  // namespace kvserve
