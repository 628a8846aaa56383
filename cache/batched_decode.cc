#include "cache/batched_decode.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cache/kernel_dtype.h"
#include "kernels/decode_maintenance.h"

namespace kvserve {
namespace {

// The cache's storage; scores, counts and key mass are [layers, kv_heads, capacity], laid out as
// the positions.
kernels::CacheRows Rows(KvCache& cache) {
  const KvCache::Layout layout = cache.layout();
  kernels::CacheRows c;
  c.keys = layout.keys;
  c.values = layout.values;
  c.layer_stride = layout.layer_stride;
  c.head_stride = layout.head_stride;
  c.positions = layout.positions;
  c.slot_layer_stride = layout.positions_layer_stride;
  c.slot_head_stride = cache.capacity();
  c.length = static_cast<int32_t>(cache.length(0));
  return c;
}

kernels::EvictionEntry Entry(KvCache& cache, const BatchedDecodeStep& step) {
  kernels::EvictionEntry e;
  e.cache = Rows(cache);
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
  e.key_mass = mass.data_ptr<float>();
  e.min_recent_position = step.min_recent_position;
  return e;
}

kernels::ChainEntry Chain(KvCache& cache, const BatchedDecodeStep& step) {
  const at::Tensor& mass = cache.key_mass_storage();
  const int64_t chain = static_cast<int64_t>(step.chain.size());
  TORCH_CHECK(step.scores.defined() && step.scores.is_contiguous() &&
                  step.scores.size(2) == cache.capacity() && mass.defined() &&
                  chain <= kernels::kMaxChain,
              "batched decode maintenance: kSlotChain needs scores, the key mass and a chain of at "
              "most ",
              kernels::kMaxChain, " slots");
  kernels::ChainEntry e;
  e.cache = Rows(cache);
  e.scores = step.scores.data_ptr<float>();
  e.counts = step.counts.defined() ? step.counts.data_ptr<float>() : nullptr;
  e.key_mass = mass.data_ptr<float>();
  e.score_decay = step.score_decay;
  // The key mass is the group sum, or the group max when the attention was asked for it.
  e.mass_scale = step.reduction == BatchedDecodeStep::GroupReduction::kMean
                     ? 1.0f / static_cast<float>(cache.logit_scratch().size(1))
                     : 1.0f;
  e.chain_length = static_cast<int32_t>(chain);
  e.last_hop = static_cast<kernels::LastHop>(step.last_hop);
  e.left = step.left;
  e.right = step.right;
  std::copy(step.chain.begin(), step.chain.end(), e.chain);
  return e;
}

// One asynchronous host-to-device copy of `entries`: from pinned memory, so the host does not wait
// for the model step still running on the stream (the caching host allocator keeps the buffer
// until the copy is done; the device buffer is reused only by the stream's later work).
template <typename Entry>
at::Tensor ToDevice(const std::vector<Entry>& entries, at::Device device) {
  const int64_t bytes = static_cast<int64_t>(entries.size() * sizeof(Entry));
  auto host = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  std::memcpy(host.data_ptr(), entries.data(), bytes);
  return host.to(device, /*non_blocking=*/true);
}

}  // namespace

void ApplyBatchedDecodeSteps(std::span<KvCache* const> caches,
                             std::span<const BatchedDecodeStep* const> steps) {
  TORCH_CHECK(caches.size() == steps.size(), "ApplyBatchedDecodeSteps: one step per cache");
  std::vector<kernels::EvictionEntry> evictions;
  std::vector<kernels::ChainEntry> chains;
  for (size_t i = 0; i < caches.size(); ++i) {
    switch (steps[i]->rule) {
      case BatchedDecodeStep::Rule::kAppendOnly:
        break;
      case BatchedDecodeStep::Rule::kSlotChain:
        chains.push_back(Chain(*caches[i], *steps[i]));
        break;
      default:
        evictions.push_back(Entry(*caches[i], *steps[i]));
    }
  }
  if (evictions.empty() && chains.empty()) return;
  const KvCacheShape& shape = caches[0]->shape();
  const auto dtype = KernelDType(shape.dtype);
  const auto head_dim = static_cast<int32_t>(shape.head_dim);
  const auto kv_heads = static_cast<int32_t>(shape.num_kv_heads);
  const auto layers = static_cast<int32_t>(shape.num_layers);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  if (!evictions.empty()) {
    auto device = ToDevice(evictions, shape.device);
    const cudaError_t error =
        kernels::EvictOneToken(dtype, head_dim, kv_heads, layers,
                               static_cast<const kernels::EvictionEntry*>(device.data_ptr()),
                               static_cast<int32_t>(evictions.size()), stream);
    TORCH_CHECK(error == cudaSuccess, "EvictOneToken kernel: ", cudaGetErrorString(error));
  }
  if (!chains.empty()) {
    auto device = ToDevice(chains, shape.device);
    const cudaError_t error =
        kernels::MoveAlongChains(dtype, head_dim, kv_heads, layers,
                                 static_cast<const kernels::ChainEntry*>(device.data_ptr()),
                                 static_cast<int32_t>(chains.size()), stream);
    TORCH_CHECK(error == cudaSuccess, "MoveAlongChains kernel: ", cudaGetErrorString(error));
  }
}

}  // namespace kvserve
