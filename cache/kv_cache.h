// One request's KV cache: for each layer, keys and values [kv_heads, capacity, head_dim] in the
// model's dtype, and the original stream position of every slot [kv_heads, capacity]. All layers
// live in one tensor [layers, 2 (keys, values), kv_heads, capacity, head_dim], so a kernel reaches
// any layer of any request from one base pointer and fixed strides.
//
// The cache is written by the model (Append, or a kernel followed by MarkAppended) and trimmed by
// the request's CachePolicy (Keep, Replace, or a kernel followed by Shrink). All heads of a layer
// hold the same number of tokens; which tokens they hold may differ per head.
// Not thread-safe: only the engine thread touches it.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace kvserve {

struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;

  // Bytes one cached token takes over all layers (keys and values).
  int64_t BytesPerToken() const;
};

class KvCache {
 public:
  // Allocates room for `capacity` tokens per (layer, KV head). REQUIRES: capacity >= 1.
  KvCache(const KvCacheShape& shape, int64_t capacity);

  const KvCacheShape& shape() const { return shape_; }
  int64_t capacity() const { return capacity_; }
  // Tokens held in `layer` (the same for every head of the layer).
  int64_t length(int64_t layer) const { return lengths_[layer]; }
  // Tokens of the stream seen so far: the original position the next token will have.
  int64_t tokens_seen() const { return tokens_seen_; }

  // Views of the first length(layer) slots: [kv_heads, length, head_dim] and [kv_heads, length].
  at::Tensor keys(int64_t layer) const;
  at::Tensor values(int64_t layer) const;
  at::Tensor positions(int64_t layer) const;

  // The whole storage, for kernels: [layers, 2, kv_heads, capacity, head_dim] and positions
  // [layers, kv_heads, capacity] int64.
  const at::Tensor& storage() const { return storage_; }

  // Where a kernel finds element (layer, head, slot, dim): keys + layer * layer_stride +
  // head * head_stride + slot * head_dim + dim (elements of the dtype), likewise values; the
  // slot's position at positions + layer * positions_layer_stride + head * capacity + slot. Plain
  // numbers, no tensor made: the decode step asks for it per request.
  struct Layout {
    void* keys = nullptr;
    void* values = nullptr;
    int64_t layer_stride = 0;
    int64_t head_stride = 0;
    int64_t* positions = nullptr;
    int64_t positions_layer_stride = 0;
  };
  Layout layout() const;
  const at::Tensor& position_storage() const { return positions_; }

  // Per-step attention statistics a device kernel writes for the request's policy: the key mass
  // [layers, kv_heads, capacity] float32 and the raw scores between the attention kernels
  // [kv_heads, group, capacity] float32. Allocated by the first EnsureKeyMass.
  void EnsureKeyMass(int64_t group);
  const at::Tensor& key_mass_storage() const { return key_mass_; }
  const at::Tensor& logit_scratch() const { return logit_scratch_; }

  // Writes new tokens' keys and values [kv_heads, n, head_dim] after the held ones; their positions
  // are tokens_seen() + 0..n-1. REQUIRES: length(layer) + n <= capacity().
  void Append(int64_t layer, const at::Tensor& keys, const at::Tensor& values);
  // Records that a kernel appended n tokens to every layer (their keys, values and positions).
  void MarkAppended(int64_t n);
  // Ends a step of n tokens: advances tokens_seen() by n. Called once per step after every layer.
  void Advance(int64_t n) { tokens_seen_ += n; }

  // Keeps, per head, the slots `slots` [kv_heads, k] (int64, indices into the held slots) in that
  // order and drops the rest; length becomes k. Slot order is the order the policy gives.
  void Keep(int64_t layer, const at::Tensor& slots);
  // Overwrites the held slots of `layer` with new contents of the same head count, e.g. merged
  // tokens: keys/values [kv_heads, k, head_dim], positions [kv_heads, k]. REQUIRES: k <= capacity.
  void Replace(int64_t layer, const at::Tensor& keys, const at::Tensor& values,
               const at::Tensor& positions);
  // Records that a kernel emptied the last n held slots of every layer (moving what they held
  // into evicted tokens' slots).
  void Shrink(int64_t n);

 private:
  KvCacheShape shape_;
  int64_t capacity_;
  int64_t tokens_seen_ = 0;
  std::vector<int64_t> lengths_;
  at::Tensor storage_;    // [layers, 2, kv_heads, capacity, head_dim]
  at::Tensor positions_;  // [layers, kv_heads, capacity] int64
  at::Tensor key_mass_;
  at::Tensor logit_scratch_;
};

}  // namespace kvserve
