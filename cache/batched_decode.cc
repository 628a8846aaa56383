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
  const KvCacheShape& shape = cache.shape();
  const int64_t capacity = cache.capacity(), heads = shape.num_kv_heads;
  const int64_t head_stride = capacity * shape.head_dim;
  kernels::EvictionEntry e;
  e.keys = cache.storage().data_ptr();
  e.values = static_cast<char*>(cache.storage().data_ptr()) +
             heads * head_stride * cache.storage().element_size();
  e.layer_stride = 2 * heads * head_stride;
  e.head_stride = head_stride;
  e.positions = cache.position_storage().data_ptr<int64_t>();
  e.positions_layer_stride = heads * capacity;
  e.positions_head_stride = capacity;
  e.length = static_cast<int32_t>(cache.length(0));
  if (step.rule == BatchedDecodeStep::Rule::kRingVictim) {
    e.rule = kernels::EvictionRule::kRingVictim;
    e.ring_victim = static_cast<int32_t>(step.ring_victim);
    return e;
  }
  TORCH_CHECK(step.scores.defined() && step.scores.is_contiguous() &&
                  step.scores.size(2) == capacity && cache.key_mass_storage().defined(),
              "batched decode maintenance: kLowestScore needs scores and the key mass");
  e.rule = kernels::EvictionRule::kLowestScore;
  e.evict = step.evict ? 1 : 0;
  e.scores = step.scores.data_ptr<float>();
  e.scores_layer_stride = heads * capacity;
  e.scores_head_stride = capacity;
  e.key_mass = cache.key_mass_storage().data_ptr<float>();
  e.mass_layer_stride = heads * capacity;
  e.mass_head_stride = capacity;
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
