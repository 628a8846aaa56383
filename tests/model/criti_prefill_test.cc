// CritiPrefill's selection and reference attention (model/criti_prefill.h): the worked example of
// prefill_and_heads.md §1.7 (configs A and B, two layers, with and without fusion), the invariants
// of §1.7's checklist on random inputs, the oracle against a per-query loop, chunked against
// one-shot selection, and the key numbering under a compressed cache.
#include "model/criti_prefill.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/attention_backend.h"

namespace kvserve {
namespace {

// Rows of 2-d token vectors (x0, y0, x1, y1, ...) as [rows, 1 head, 2].
at::Tensor Tokens(std::vector<float> flat) {
  const auto rows = static_cast<int64_t>(flat.size() / 2);
  return at::tensor(flat).view({rows, 1, 2});
}

// §1.7's toy: T = 16, one head, d = 2, S = 4, τ = 4; rows 0..15 of each layer.
struct Toy {
  at::Tensor q1 = Tokens({1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 2, 1, 1, 0, 0, 1,
                          0, 1, 0, 2, 1, 2, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1});
  at::Tensor k1 = Tokens({1, 0, 2, 0, 1, 1, 0, 1, 0, 2, 0, 3, 1, 2, 0, 1,
                          1, 1, 1, 0, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0})
                      .transpose(0, 1);
  at::Tensor q2 = Tokens({1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                          1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1});
  at::Tensor k2 = Tokens({1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, .5, .5, 0,
                          1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0})
                      .transpose(0, 1);
  static constexpr CritiPrefillChunk kChunk{0, 16};
};

CritiPrefillParams ToyParams(int64_t block, int64_t kept, bool fusion) {
  return {.segment_size = 4,
          .block_size = block,
          .kept_blocks = kept,
          .dense_prefix_tokens = 4,
          .dense_layers = 1,  // the toy's "layer 1" is the first sparse layer
          .layer_fusion = fusion};
}

// The listed block ids of (KV head 0, segment s).
std::vector<int32_t> Listed(const SegmentBlocks& b, int64_t s) {
  std::vector<int32_t> out;
  auto row = b.blocks[0][s].contiguous();
  for (int64_t i = 0; i < row.size(0); ++i) {
    if (row[i].item<int32_t>() >= 0) out.push_back(row[i].item<int32_t>());
  }
  return out;
}

void ExpectRow(const at::Tensor& matrix, int64_t segment, const std::vector<double>& expected) {
  auto row = matrix[0][segment];
  ASSERT_EQ(row.size(0), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(row[i].item<float>(), expected[i], 5e-5) << "segment " << segment << " block " << i;
  }
}

using Ids = std::vector<int32_t>;

TEST(CritiPrefillTest, WorkedExampleConfigA) {
  const Toy toy;
  const auto params = ToyParams(4, 1, true);
  ExpectRow(BlockProbabilities(toy.q1, toy.k1, Toy::kChunk, params), 2, {0.0759, 0.9241, 0});
  CritiPrefillFusion fusion;
  const SegmentBlocks l1 = SelectSegmentBlocks(toy.q1, toy.k1, Toy::kChunk, 1, params, fusion);
  EXPECT_EQ(l1.blocks.sizes(), (at::IntArrayRef{1, 4, 1}));
  EXPECT_EQ(l1.blocks.scalar_type(), at::kInt);
  EXPECT_TRUE(at::equal(l1.dense, at::tensor(std::vector<int64_t>{1, 0, 0, 1}).to(at::kBool)));
  EXPECT_EQ(Listed(l1, 0), Ids{});
  EXPECT_EQ(Listed(l1, 1), Ids{0});  // the only block before it
  EXPECT_EQ(Listed(l1, 2), Ids{1});  // tokens 4-7
  EXPECT_EQ(Listed(l1, 3), Ids{});

  ExpectRow(BlockProbabilities(toy.q2, toy.k2, Toy::kChunk, params), 2, {0.5622, 0.4378, 0});
  const SegmentBlocks l2 = SelectSegmentBlocks(toy.q2, toy.k2, Toy::kChunk, 2, params, fusion);
  ExpectRow(fusion.fused(), 2, {0.4406, 0.5594, 0});
  EXPECT_EQ(Listed(l2, 1), Ids{0});
  EXPECT_EQ(Listed(l2, 2), Ids{1});  // fused; without fusion block 0

  // Layer 2's mask: rows 0-7 dense causal, rows 8-11 see 4-7 and themselves, 12-15 dense.
  auto mask = SegmentBlocksMask(l2, 16, 16)[0];
  for (int64_t i = 0; i < 16; ++i) {
    for (int64_t j = 0; j < 16; ++j) {
      const bool skipped = i >= 8 && i < 12 && j < 4;
      EXPECT_EQ(mask[i][j].item<bool>(), j <= i && !skipped) << i << "," << j;
    }
  }

  CritiPrefillFusion plain;
  const auto unfused = ToyParams(4, 1, false);
  SelectSegmentBlocks(toy.q1, toy.k1, Toy::kChunk, 1, unfused, plain);
  EXPECT_EQ(Listed(SelectSegmentBlocks(toy.q2, toy.k2, Toy::kChunk, 2, unfused, plain), 2), Ids{0});
  ExpectRow(plain.fused(), 2, {0.5622, 0.4378, 0});
}

TEST(CritiPrefillTest, WorkedExampleConfigB) {
  const Toy toy;
  const auto params = ToyParams(2, 2, true);
  ExpectRow(BlockProbabilities(toy.q1, toy.k1, Toy::kChunk, params), 2,
            {0.0204, 0.0555, 0.6756, 0.2485, 0, 0});
  CritiPrefillFusion fusion;
  const SegmentBlocks l1 = SelectSegmentBlocks(toy.q1, toy.k1, Toy::kChunk, 1, params, fusion);
  EXPECT_EQ(Listed(l1, 1), (Ids{0, 1}));
  EXPECT_EQ(Listed(l1, 2), (Ids{2, 3}));  // tokens 4-7

  ExpectRow(BlockProbabilities(toy.q2, toy.k2, Toy::kChunk, params), 2,
            {0.3112, 0.3112, 0.1888, 0.1888, 0, 0});
  const SegmentBlocks l2 = SelectSegmentBlocks(toy.q2, toy.k2, Toy::kChunk, 2, params, fusion);
  ExpectRow(fusion.fused(), 1, {0.5306, 0.4694, 0, 0, 0, 0});
  ExpectRow(fusion.fused(), 2, {0.2385, 0.2473, 0.3105, 0.2037, 0, 0});
  EXPECT_EQ(Listed(l2, 1), (Ids{0, 1}));
  EXPECT_EQ(Listed(l2, 2), (Ids{1, 2}));  // tokens 2-5

  CritiPrefillFusion plain;
  const auto unfused = ToyParams(2, 2, false);
  SelectSegmentBlocks(toy.q1, toy.k1, Toy::kChunk, 1, unfused, plain);
  // A tie (0.3112 twice) goes to the lower block.
  EXPECT_EQ(Listed(SelectSegmentBlocks(toy.q2, toy.k2, Toy::kChunk, 2, unfused, plain), 2),
            (Ids{0, 1}));
}

TEST(CritiPrefillTest, AlwaysReadBlocksComeFirst) {
  const Toy toy;
  auto params = ToyParams(2, 2, true);
  params.first_blocks = 1;  // block 0, plus the best other one
  CritiPrefillFusion fusion;
  EXPECT_EQ(Listed(SelectSegmentBlocks(toy.q1, toy.k1, Toy::kChunk, 1, params, fusion), 2),
            (Ids{0, 2}));
  params.first_blocks = 0;
  params.local_blocks = 1;  // block 3 (tokens 6-7), plus the best other one
  EXPECT_EQ(Listed(SelectSegmentBlocks(toy.q1, toy.k1, Toy::kChunk, 1, params, fusion), 2),
            (Ids{2, 3}));
  params.kept_blocks = 1;  // the local block alone although block 2 scores higher
  EXPECT_EQ(Listed(SelectSegmentBlocks(toy.q1, toy.k1, Toy::kChunk, 1, params, fusion), 2),
            (Ids{3}));
}

TEST(CritiPrefillTest, DenseSegmentsAndSparseLayers) {
  CritiPrefillParams p;  // S 512, τ 4096
  EXPECT_TRUE(IsDenseSegment(3584, 100000, p));
  EXPECT_FALSE(IsDenseSegment(4096, 100000, p));
  EXPECT_TRUE(IsDenseSegment(99840, 100352, p));  // the final segment, full length
  EXPECT_FALSE(IsDenseSegment(99328, 100352, p));
  EXPECT_FALSE(HasSparseSegments({0, 8192}, 4096, 1, p));     // every segment before τ
  EXPECT_TRUE(HasSparseSegments({4096, 8192}, 1024, 1, p));   // 4096 sparse, 4608 not final
  EXPECT_FALSE(HasSparseSegments({4096, 8192}, 1024, 0, p));  // layer 0 is dense
  EXPECT_FALSE(HasSparseSegments({7680, 8192}, 512, 1, p));   // the final segment only
  EXPECT_FALSE(HasSparseSegments({4096, 8192}, 700, 1, p));   // not cut on a segment boundary
  EXPECT_FALSE(HasSparseSegments({4100, 8192}, 512, 1, p));   // starts inside a segment
  EXPECT_TRUE(HasSparseSegments({4096, 4700}, 604, 1, p));    // ends the prompt unaligned
}

// Attention of each query over exactly the keys `blocks` lets it read, one head at a time.
at::Tensor NaiveSparseAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const SegmentBlocks& blocks) {
  const int64_t n = q.size(0), heads = q.size(1), dim = q.size(2);
  const int64_t kv_heads = k.size(0), m = k.size(1), offset = blocks.first_query - (m - n);
  auto out = at::zeros_like(q);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = blocks.first_query + i, s = i / blocks.segment_size;
    const int64_t seg_start = blocks.first_query + s * blocks.segment_size;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / (heads / kv_heads);
      std::vector<int64_t> read;
      for (int64_t j = 0; j < m; ++j) {
        const int64_t pos = offset + j;
        bool ok = pos <= p && (blocks.dense[s].item<bool>() || pos >= seg_start);
        for (int64_t c = 0; !ok && c < blocks.blocks.size(2); ++c) {
          ok = blocks.blocks[g][s][c].item<int32_t>() == pos / blocks.block_size;
        }
        if (ok) read.push_back(j);
      }
      auto index = at::tensor(read, at::kLong);
      auto keys = k[g].index_select(0, index), values = v[g].index_select(0, index);
      auto weights = at::softmax(at::matmul(keys, q[i][h]) / std::sqrt(double(dim)), 0);
      out[i][h] = at::matmul(weights, values);
    }
  }
  return out;
}

struct RandomChunk {
  at::Tensor q, k, v;
  CritiPrefillChunk chunk;
};

// n queries from `first_query` after `held` cached keys, prompt of `prompt` tokens.
RandomChunk MakeChunk(int64_t heads, int64_t kv_heads, int64_t held, int64_t first_query, int64_t n,
                      int64_t prompt) {
  return {at::randn({n, heads, 8}),
          at::randn({kv_heads, held + n, 8}),
          at::randn({kv_heads, held + n, 8}),
          {first_query, prompt}};
}

CritiPrefillParams SmallParams() {
  return {.segment_size = 16, .block_size = 4, .kept_blocks = 3, .dense_prefix_tokens = 16};
}

TEST(CritiPrefillTest, ReferenceMatchesAPerQueryLoopWithKeyMass) {
  at::manual_seed(1);
  const auto params = SmallParams();
  for (const auto& [heads, kv_heads] : {std::pair<int64_t, int64_t>{4, 4}, {8, 2}, {4, 1}}) {
    const RandomChunk c = MakeChunk(heads, kv_heads, 32, 32, 40, 72);  // segments 32, 48, 64
    CritiPrefillFusion fusion;
    const SegmentBlocks blocks = SelectSegmentBlocks(c.q, c.k, c.chunk, 1, params, fusion);
    at::Tensor mass;
    auto out = CritiPrefillAttendReference(c.q, c.k, c.v, blocks, &mass);
    EXPECT_TRUE(at::allclose(out, NaiveSparseAttention(c.q, c.k, c.v, blocks), 1e-5, 1e-5));
    // Each query spreads a mass of 1 over what it read, and nothing lands on unread keys.
    EXPECT_TRUE(at::allclose(mass.sum(1), at::full({kv_heads}, 40.0 * heads / kv_heads)));
    auto read = SegmentBlocksMask(blocks, 40, 72).any(1);
    EXPECT_EQ(mass.masked_select(read.logical_not()).abs().sum().item<float>(), 0);
    EXPECT_TRUE(at::equal(CritiPrefillAttend(c.q, c.k, c.v, blocks), out));
  }
}

TEST(CritiPrefillTest, SelectionInvariantsOnRandomInputs) {
  at::manual_seed(2);
  for (int trial = 0; trial < 20; ++trial) {
    CritiPrefillParams p = SmallParams();
    p.block_size = trial % 2 == 0 ? 4 : 8;
    p.kept_blocks = 1 + trial % 5;
    p.dense_prefix_tokens = 16 * (trial % 3);
    p.first_blocks = trial % 3 == 0 ? 1 : 0;
    const int64_t first = 16 * (trial % 4), n = 16 * (1 + trial % 3) + (trial % 2) * 5;
    const RandomChunk c = MakeChunk(4, 2, first, first, n, first + n);
    CritiPrefillFusion fusion;
    SegmentBlocks blocks;
    for (int64_t layer = 1; layer <= 3; ++layer) {
      blocks = SelectSegmentBlocks(c.q, c.k, c.chunk, layer, p, fusion);
    }
    // Fused rows are distributions.
    const at::Tensor& fused = fusion.fused();
    if (fused.size(1) > 0) {
      EXPECT_TRUE(at::allclose(fused.sum(-1), at::ones({2, fused.size(1)}), 1e-5, 1e-5));
    }
    const int64_t r = p.segment_size / p.block_size;
    for (int64_t s = 0; s < blocks.blocks.size(1); ++s) {
      const int64_t start = first + s * p.segment_size, allowed = start / p.block_size;
      const bool dense = blocks.dense[s].item<bool>();
      EXPECT_EQ(dense, IsDenseSegment(start, first + n, p));
      for (int64_t h = 0; h < 2; ++h) {
        std::vector<int32_t> ids;
        for (int64_t i = 0; i < blocks.blocks.size(2); ++i) {
          const int32_t id = blocks.blocks[h][s][i].item<int32_t>();
          if (id < 0) {  // padding only at the end
            for (int64_t j = i; j < blocks.blocks.size(2); ++j)
              EXPECT_EQ(blocks.blocks[h][s][j].item<int32_t>(), -1);
            break;
          }
          EXPECT_LT(id, (start / p.segment_size) * r);  // ends at or before the segment's start
          if (!ids.empty()) {
            EXPECT_LT(ids.back(), id);  // ascending, no repeats
          }
          ids.push_back(id);
        }
        const int64_t expected = dense ? 0 : std::min(p.kept_blocks, allowed);
        EXPECT_EQ(static_cast<int64_t>(ids.size()), expected) << "segment " << s;
        if (!dense && p.first_blocks == 1 && allowed > 0) {
          EXPECT_EQ(ids.front(), 0);
        }
      }
    }
    const AttendedKeys count = CountAttendedKeys(blocks, n, first + n);
    EXPECT_EQ(count.attended, SegmentBlocksMask(blocks, n, first + n).sum().item<int64_t>());
    EXPECT_EQ(count.causal, 2 * (n * first + n * (n + 1) / 2));
  }
}

TEST(CritiPrefillTest, KeepingEveryEarlierBlockIsDenseCausalAttention) {
  at::manual_seed(3);
  CritiPrefillParams p = SmallParams();
  p.kept_blocks = 1000;
  p.dense_prefix_tokens = 0;  // every segment but the final one sparse
  const RandomChunk c = MakeChunk(8, 2, 48, 48, 64, 128);
  CritiPrefillFusion fusion;
  const SegmentBlocks blocks = SelectSegmentBlocks(c.q, c.k, c.chunk, 1, p, fusion);
  EXPECT_FALSE(blocks.dense[0].item<bool>());
  at::Tensor mass;
  auto sparse = CritiPrefillAttendReference(c.q, c.k, c.v, blocks, &mass);
  auto dense = MakeReferenceAttention()->Attend(std::vector<AttentionInput>{{c.q, c.k, c.v, true}});
  EXPECT_TRUE(at::allclose(sparse, dense[0].out, 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(mass, dense[0].key_mass, 1e-5, 1e-5));
  const AttendedKeys count = CountAttendedKeys(blocks, 64, 112);
  EXPECT_EQ(count.attended, count.causal);
}

TEST(CritiPrefillTest, ChunksAlignedToSegmentsSelectAsOneShot) {
  at::manual_seed(4);
  const CritiPrefillParams p = SmallParams();
  const int64_t prompt = 100;  // segments 0..6, the last (96..99) final and short
  const RandomChunk all = MakeChunk(4, 2, 0, 0, prompt, prompt);
  auto layer2_q = at::randn_like(all.q), layer2_k = at::randn_like(all.k);
  CritiPrefillFusion one_shot;
  SelectSegmentBlocks(all.q, all.k, all.chunk, 1, p, one_shot);
  const SegmentBlocks whole = SelectSegmentBlocks(layer2_q, layer2_k, all.chunk, 2, p, one_shot);
  auto whole_out = CritiPrefillAttendReference(layer2_q, layer2_k, all.v, whole);
  CritiPrefillFusion chunked;  // one object for every chunk, as the engine keeps it
  for (int64_t first : {0, 32, 64, 96}) {
    const int64_t n = std::min<int64_t>(32, prompt - first), m = first + n;
    const CritiPrefillChunk chunk{first, prompt};
    SelectSegmentBlocks(all.q.narrow(0, first, n), all.k.narrow(1, 0, m), chunk, 1, p, chunked);
    const SegmentBlocks part = SelectSegmentBlocks(layer2_q.narrow(0, first, n),
                                                   layer2_k.narrow(1, 0, m), chunk, 2, p, chunked);
    const int64_t segments = part.blocks.size(1), first_segment = first / p.segment_size;
    EXPECT_TRUE(at::equal(part.dense, whole.dense.narrow(0, first_segment, segments)));
    const int64_t width = part.blocks.size(2);
    auto expected = whole.blocks.narrow(1, first_segment, segments);
    EXPECT_TRUE(at::equal(part.blocks, expected.narrow(2, 0, width))) << "chunk at " << first;
    if (width < expected.size(2)) {
      EXPECT_TRUE((expected.narrow(2, width, expected.size(2) - width) == -1).all().item<bool>());
    }
    // The fused rows agree on the blocks the chunk knows (the others are 0 in both); segment 0,
    // with no block before it, has a uniform row over however many blocks there are.
    const int64_t skip = first == 0 ? 1 : 0;
    auto fused = chunked.fused().narrow(1, skip, chunked.fused().size(1) - skip);
    auto whole_rows = one_shot.fused().narrow(1, first_segment + skip, fused.size(1));
    EXPECT_TRUE(at::allclose(fused, whole_rows.narrow(2, 0, fused.size(2)), 1e-6, 1e-7));
    auto out = CritiPrefillAttendReference(layer2_q.narrow(0, first, n), layer2_k.narrow(1, 0, m),
                                           all.v.narrow(1, 0, m), part);
    EXPECT_TRUE(at::allclose(out, whole_out.narrow(0, first, n), 1e-5, 1e-6));
  }
}

TEST(CritiPrefillTest, CompressedCacheNumbersHeldKeysBackFromTheChunk) {
  at::manual_seed(5);
  CritiPrefillParams p = SmallParams();
  p.dense_prefix_tokens = 0;
  p.kept_blocks = 100;
  // 10 held keys (positions 54..63 in the numbering) before a chunk at 64 of a 128-token prompt:
  // block 13 holds 2 keys, blocks below it none.
  const RandomChunk c = MakeChunk(4, 2, 10, 64, 32, 128);
  CritiPrefillFusion fusion;
  const SegmentBlocks blocks = SelectSegmentBlocks(c.q, c.k, c.chunk, 1, p, fusion);
  // Segment 64 reads blocks 13..15 (its earlier blocks that hold keys), segment 80 13..19.
  EXPECT_EQ(Listed(blocks, 0), (Ids{13, 14, 15}));
  EXPECT_EQ(Listed(blocks, 1), (Ids{13, 14, 15, 16, 17, 18, 19}));
  auto probabilities = BlockProbabilities(c.q, c.k, c.chunk, p);
  EXPECT_EQ(probabilities.narrow(2, 0, 13).abs().sum().item<float>(), 0);
  // All of it read: dense attention over the held keys and the chunk.
  auto dense = MakeReferenceAttention()->Attend(std::vector<AttentionInput>{{c.q, c.k, c.v}});
  EXPECT_TRUE(
      at::allclose(CritiPrefillAttendReference(c.q, c.k, c.v, blocks), dense[0].out, 1e-6, 1e-6));
  const AttendedKeys count = CountAttendedKeys(blocks, 32, 42);
  EXPECT_EQ(count.attended, count.causal);
  EXPECT_EQ(count.causal, SegmentBlocksMask(blocks, 32, 42).sum().item<int64_t>());
}

}  // namespace
}  // namespace kvserve
