#include "cache/kv_cache.h"

#include <c10/util/Exception.h>

namespace kvserve {

int64_t KvCacheShape::BytesPerToken() const {
  return 2 * num_layers * num_kv_heads * head_dim * static_cast<int64_t>(c10::elementSize(dtype));
}

KvCache::KvCache(const KvCacheShape& shape, int64_t capacity)
    : shape_(shape), capacity_(capacity), lengths_(shape.num_layers, 0) {
  TORCH_CHECK(capacity >= 1, "KV cache capacity must be >= 1, got ", capacity);
  const auto options = at::TensorOptions().dtype(shape.dtype).device(shape.device);
  storage_ =
      at::empty({shape.num_layers, 2, shape.num_kv_heads, capacity, shape.head_dim}, options);
  positions_ =
      at::empty({shape.num_layers, shape.num_kv_heads, capacity}, options.dtype(at::kLong));
}

KvCache::Layout KvCache::layout() const {
  const int64_t head_stride = capacity_ * shape_.head_dim;
  char* keys = static_cast<char*>(storage_.data_ptr());
  return {keys,
          keys + shape_.num_kv_heads * head_stride * storage_.element_size(),
          2 * shape_.num_kv_heads * head_stride,
          head_stride,
          positions_.data_ptr<int64_t>(),
          shape_.num_kv_heads * capacity_};
}

at::Tensor KvCache::keys(int64_t layer) const {
  return storage_[layer][0].narrow(1, 0, lengths_[layer]);
}

at::Tensor KvCache::values(int64_t layer) const {
  return storage_[layer][1].narrow(1, 0, lengths_[layer]);
}

at::Tensor KvCache::positions(int64_t layer) const {
  return positions_[layer].narrow(1, 0, lengths_[layer]);
}

void KvCache::EnsureKeyMass(int64_t group) {
  if (key_mass_.defined() && logit_scratch_.size(1) >= group) return;
  const auto options = at::TensorOptions().dtype(at::kFloat).device(shape_.device);
  key_mass_ = at::zeros({shape_.num_layers, shape_.num_kv_heads, capacity_}, options);
  logit_scratch_ = at::empty({shape_.num_kv_heads, group, capacity_}, options);
}

void KvCache::Append(int64_t layer, const at::Tensor& keys, const at::Tensor& values) {
  const int64_t n = keys.size(1);
  const int64_t start = lengths_[layer];
  TORCH_CHECK(start + n <= capacity_, "KV cache overflow in layer ", layer, ": ", start, " + ", n,
              " > capacity ", capacity_);
  storage_[layer][0].narrow(1, start, n).copy_(keys);
  storage_[layer][1].narrow(1, start, n).copy_(values);
  auto new_positions = at::arange(tokens_seen_, tokens_seen_ + n, positions_.options());
  positions_[layer].narrow(1, start, n).copy_(new_positions.unsqueeze(0).expand({-1, n}));
  lengths_[layer] = start + n;
}

void KvCache::MarkAppended(int64_t n) {
  for (int64_t& length : lengths_) {
    TORCH_CHECK(length + n <= capacity_, "KV cache overflow: ", length, " + ", n, " > capacity ",
                capacity_);
    length += n;
  }
}

void KvCache::Shrink(int64_t n) {
  for (int64_t& length : lengths_) {
    TORCH_CHECK(length >= n, "KV cache shrink by ", n, " below empty (", length, " held)");
    length -= n;
  }
}

void KvCache::Keep(int64_t layer, const at::Tensor& slots) {
  const int64_t kept = slots.size(1);
  const auto index = slots.to(storage_.device(), at::kLong);
  const auto key_index = index.unsqueeze(-1).expand({-1, -1, shape_.head_dim});
  // Gather into fresh tensors first: the source and destination slots overlap.
  auto kept_keys = keys(layer).gather(1, key_index);
  auto kept_values = values(layer).gather(1, key_index);
  auto kept_positions = positions(layer).gather(1, index);
  Replace(layer, kept_keys, kept_values, kept_positions);
  TORCH_CHECK(lengths_[layer] == kept);
}

void KvCache::Replace(int64_t layer, const at::Tensor& keys, const at::Tensor& values,
                      const at::Tensor& positions) {
  const int64_t k = keys.size(1);
  TORCH_CHECK(k <= capacity_, "KV cache replace of ", k, " tokens > capacity ", capacity_);
  storage_[layer][0].narrow(1, 0, k).copy_(keys);
  storage_[layer][1].narrow(1, 0, k).copy_(values);
  positions_[layer].narrow(1, 0, k).copy_(positions);
  lengths_[layer] = k;
}

}  // namespace kvserve
