// SelectSegmentBlocks (model/criti_prefill.h) against a direct reading of prefill_and_heads.md §1.2
// steps 3-11 written as loops over heads, segments and blocks: the same block ids in the same
// order, the same dense flags and the same fused matrix, on random inputs of several geometries
// (chunks at an offset, compressed prefixes with a partly absent first block, short final segments,
// chunks that do not end the prompt, always-read blocks, several layers with and without fusion).
// Queries and keys are small integers so that every score is exact in float32 whatever the order of
// the sums: the two sides then see bit-identical scores, and ties (frequent with integers, and
// probabilities that underflow to 0 with the larger ones) must break the same way.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "model/criti_prefill.h"

namespace kvserve {
namespace {

struct Geometry {
  int64_t heads, kv_heads;
  int64_t held;         // keys before the chunk's own
  int64_t first_query;  // stream position of the chunk's first query
  int64_t n;            // queries
  int64_t prompt;       // T
};

// §1.2 steps 3-8 for one layer: [kv_heads, profiled, blocks] probabilities.
at::Tensor SpecProbabilities(const at::Tensor& q, const at::Tensor& k, const Geometry& g,
                             const CritiPrefillParams& p) {
  const int64_t S = p.segment_size, B = p.block_size, dim = q.size(2);
  const int64_t offset = g.first_query - g.held, group = g.heads / g.kv_heads;
  const int64_t segments = (g.n + S - 1) / S;
  const int64_t profiled = segments - (g.first_query + segments * S >= g.prompt ? 1 : 0);
  const int64_t blocks = (g.first_query + profiled * S) / B;
  auto qa = q.accessor<float, 3>();  // [n, heads, dim]
  auto ka = k.accessor<float, 3>();  // [kv_heads, m, dim]
  auto scores =
      at::full({g.kv_heads, profiled, blocks}, std::numeric_limits<float>::lowest(), at::kFloat);
  auto sa = scores.accessor<float, 3>();
  for (int64_t h = 0; h < g.kv_heads; ++h) {
    for (int64_t s = 0; s < profiled; ++s) {
      const int64_t start = g.first_query + s * S;
      for (int64_t b = 0; b < blocks; ++b) {
        // Step 7: the block ends at or before the segment's start and holds a key.
        if ((b + 1) * B > start || (b + 1) * B <= offset) continue;
        std::vector<float> kmax(dim, -INFINITY), kmin(dim, INFINITY);
        for (int64_t pos = std::max(b * B, offset); pos < (b + 1) * B; ++pos) {
          for (int64_t d = 0; d < dim; ++d) {
            kmax[d] = std::max(kmax[d], ka[h][pos - offset][d]);
            kmin[d] = std::min(kmin[d], ka[h][pos - offset][d]);
          }
        }
        float sum = 0;
        for (int64_t j = h * group; j < (h + 1) * group; ++j) {  // step 6: the group's heads
          float hi = 0, lo = 0;
          for (int64_t d = 0; d < dim; ++d) {
            float qmax = -INFINITY, qmin = INFINITY;
            for (int64_t i = s * S; i < (s + 1) * S; ++i) {
              qmax = std::max(qmax, qa[i][j][d]);
              qmin = std::min(qmin, qa[i][j][d]);
            }
            const float mid = (qmax + qmin) / 2;
            hi += mid * kmax[d];
            lo += mid * kmin[d];
          }
          sum += std::max(hi, lo);  // step 5
        }
        sa[h][s][b] = sum / static_cast<float>(group);
      }
    }
  }
  return at::softmax(scores, -1);  // step 8
}

struct SpecSelection {
  at::Tensor blocks;  // int32 [kv_heads, segments, width], -1 padded
  at::Tensor dense;   // bool [segments]
};

// Steps 10-11 on the fused matrix F: per (KV head, sparse segment) the always-read blocks, then the
// others by F descending and block ascending, min(kept_blocks, readable) of them, ascending.
SpecSelection SpecSelect(const at::Tensor& fused, const Geometry& g, const CritiPrefillParams& p) {
  const int64_t S = p.segment_size, B = p.block_size, offset = g.first_query - g.held;
  const int64_t segments = (g.n + S - 1) / S, profiled = fused.size(1), blocks = fused.size(2);
  auto fa = fused.accessor<float, 3>();
  std::vector<std::vector<std::vector<int32_t>>> lists(g.kv_heads,
                                                       std::vector<std::vector<int32_t>>(segments));
  std::vector<uint8_t> dense(segments);
  size_t width = 0;
  for (int64_t s = 0; s < segments; ++s) {
    const int64_t start = g.first_query + s * S;
    dense[s] = start < p.dense_prefix_tokens || start + S >= g.prompt;
    if (dense[s] || s >= profiled) continue;
    for (int64_t h = 0; h < g.kv_heads; ++h) {
      std::vector<int64_t> forced, others;
      for (int64_t b = 0; b < blocks; ++b) {
        if ((b + 1) * B > start || (b + 1) * B <= offset) continue;
        const bool always = b < p.first_blocks || b >= start / B - p.local_blocks;
        (always ? forced : others).push_back(b);
      }
      std::stable_sort(others.begin(), others.end(),
                       [&](int64_t a, int64_t b) { return fa[h][s][a] > fa[h][s][b]; });
      forced.insert(forced.end(), others.begin(), others.end());
      const auto keep = std::min<size_t>(p.kept_blocks, forced.size());
      std::vector<int32_t>& list = lists[h][s];
      list.assign(forced.begin(), forced.begin() + keep);
      std::sort(list.begin(), list.end());
      width = std::max(width, list.size());
    }
  }
  SpecSelection out;
  out.blocks = at::full({g.kv_heads, segments, static_cast<int64_t>(width)}, -1, at::kInt);
  auto ba = out.blocks.accessor<int32_t, 3>();
  for (int64_t h = 0; h < g.kv_heads; ++h) {
    for (int64_t s = 0; s < segments; ++s) {
      for (size_t i = 0; i < lists[h][s].size(); ++i) ba[h][s][i] = lists[h][s][i];
    }
  }
  out.dense = at::tensor(std::vector<int64_t>(dense.begin(), dense.end())).to(at::kBool);
  return out;
}

// Integers in [-scale, scale].
at::Tensor SmallIntegers(at::IntArrayRef sizes, int64_t scale) {
  return at::randint(-scale, scale + 1, sizes, at::kFloat);
}

TEST(CritiPrefillSpecTest, SelectionMatchesADirectReadingOfTheSpec) {
  at::manual_seed(11);
  const std::vector<Geometry> geometries = {
      {4, 2, 0, 0, 100, 100},    // one shot, the final segment short
      {4, 4, 32, 32, 32, 100},   // a chunk that does not end the prompt
      {8, 2, 48, 48, 37, 85},    // a chunk ending the prompt on a short segment
      {4, 1, 10, 64, 32, 128},   // compressed: 10 held keys, a partly absent first block
      {8, 2, 9, 48, 64, 200},    // compressed, chunk not ending the prompt
      {4, 2, 0, 32, 48, 80},     // nothing held before the chunk
      {4, 2, 100, 112, 48, 400}  // a long prefix, many blocks
  };
  int cases = 0;
  for (const Geometry& g : geometries) {
    for (int variant = 0; variant < 6; ++variant) {
      CritiPrefillParams p{.segment_size = 16, .block_size = variant % 2 == 0 ? 4 : 8};
      p.kept_blocks = 1 + (variant * 3 + g.n) % 6;
      p.dense_prefix_tokens = 16 * (variant % 3);
      p.first_blocks = variant == 2 ? 1 : 0;
      p.local_blocks = variant == 3 ? std::min<int64_t>(2, p.kept_blocks) : 0;
      p.dense_layers = variant == 4 ? 2 : 1;
      p.layer_fusion = variant != 5;
      const int64_t scale = variant % 2 == 0 ? 2 : 6;  // many ties; many probabilities of 0
      CritiPrefillFusion fusion, cuda_fusion;
      at::Tensor fused;
      for (int64_t layer = p.dense_layers; layer < p.dense_layers + 3; ++layer) {
        auto q = SmallIntegers({g.n, g.heads, 8}, scale);
        auto k = SmallIntegers({g.kv_heads, g.held + g.n, 8}, scale);
        const CritiPrefillChunk chunk{g.first_query, g.prompt};
        const SegmentBlocks got = SelectSegmentBlocks(q, k, chunk, layer, p, fusion);
        auto probabilities = SpecProbabilities(q, k, g, p);
        const bool restart = layer == p.dense_layers || !p.layer_fusion;
        fused = restart ? probabilities : 0.25 * fused + 0.75 * probabilities;
        const SpecSelection want = SpecSelect(fused, g, p);
        const std::string where = "geometry at " + std::to_string(g.first_query) + " with " +
                                  std::to_string(g.held) + " held, variant " +
                                  std::to_string(variant) + ", layer " + std::to_string(layer);
        ASSERT_TRUE(at::equal(fusion.fused(), fused)) << where;
        ASSERT_EQ(got.blocks.scalar_type(), at::kInt) << where;
        ASSERT_EQ(got.blocks.sizes(), want.blocks.sizes()) << where;
        EXPECT_TRUE(at::equal(got.blocks, want.blocks))
            << where << "\n got " << got.blocks << "\n want " << want.blocks;
        EXPECT_TRUE(at::equal(got.dense, want.dense)) << where;
        if (at::hasCUDA()) {  // the CUDA path (torch 2's top-k there) picks the same blocks
          const SegmentBlocks on_cuda =
              SelectSegmentBlocks(q.cuda(), k.cuda(), chunk, layer, p, cuda_fusion);
          EXPECT_TRUE(at::equal(on_cuda.blocks.cpu(), want.blocks))
              << where << " on CUDA\n got " << on_cuda.blocks << "\n want " << want.blocks;
          EXPECT_TRUE(at::equal(on_cuda.dense.cpu(), want.dense)) << where << " on CUDA";
        }
        const int64_t m = g.held + g.n;
        const AttendedKeys count = CountAttendedKeys(got, g.n, m);
        EXPECT_EQ(count.attended, SegmentBlocksMask(got, g.n, m).sum().item<int64_t>()) << where;
        EXPECT_EQ(count.causal, CausalPairs(g.kv_heads, g.n, m)) << where;
        SegmentBlocks device_only = got;  // counted from the tensors alone
        device_only.host_dense.clear();
        device_only.host_listed.clear();
        EXPECT_EQ(CountAttendedKeys(device_only, g.n, m).attended, count.attended) << where;
        ++cases;
      }
    }
  }
  EXPECT_EQ(cases, 7 * 6 * 3);
}

}  // namespace
}  // namespace kvserve
