// KvCache's storage as kernels see it: Layout's pointers and strides against the tensor views, and
// the lengths a kernel's append and eviction leave behind (MarkAppended, Shrink).
#include "cache/kv_cache.h"

#include <gtest/gtest.h>

namespace kvserve {
namespace {

TEST(KvCacheTest, LayoutAddressesEveryLayerHeadAndSlot) {
  const KvCacheShape shape{3, 2, 4, at::kBFloat16, at::kCPU};
  KvCache cache(shape, 5);
  auto keys = at::randn({2, 5, 4}).to(at::kBFloat16),
       values = at::randn({2, 5, 4}).to(at::kBFloat16);
  for (int64_t layer = 0; layer < 3; ++layer) cache.Append(layer, keys + layer, values - layer);
  const KvCache::Layout l = cache.layout();
  const auto* k = static_cast<const at::BFloat16*>(l.keys);
  const auto* v = static_cast<const at::BFloat16*>(l.values);
  for (int64_t layer = 0; layer < 3; ++layer) {
    for (int64_t head = 0; head < 2; ++head) {
      for (int64_t slot = 0; slot < 5; ++slot) {
        const int64_t at = layer * l.layer_stride + head * l.head_stride + slot * 4 + 3;
        EXPECT_EQ(static_cast<float>(k[at]), cache.keys(layer)[head][slot][3].item<float>());
        EXPECT_EQ(static_cast<float>(v[at]), cache.values(layer)[head][slot][3].item<float>());
        EXPECT_EQ(l.positions[layer * l.positions_layer_stride + head * 5 + slot], slot);
      }
    }
  }
}

TEST(KvCacheTest, KernelAppendsAndEvictionsMoveEveryLayersLength) {
  KvCache cache({2, 1, 4, at::kFloat, at::kCPU}, 3);
  cache.MarkAppended(2);
  EXPECT_EQ(cache.length(0), 2);
  EXPECT_EQ(cache.length(1), 2);
  cache.Shrink(1);
  EXPECT_EQ(cache.length(1), 1);
  EXPECT_THROW(cache.MarkAppended(3), c10::Error);  // past the capacity
  EXPECT_THROW(cache.Shrink(2), c10::Error);        // below empty
}

}  // namespace
}  // namespace kvserve
