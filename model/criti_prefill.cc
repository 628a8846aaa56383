// CritiPrefill's selection and its reference attention, from the official code's algorithm as
// prefill_and_heads.md §1.2 states it, with §1.3's clamp of k and §1.8's chunking.
#include "model/criti_prefill.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>

#ifdef KVSERVE_WITH_CUDA
#include "model/cuda_ops.h"
#endif

namespace kvserve {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A chunk's geometry in the key numbering of criti_prefill.h.
struct ChunkLayout {
  int64_t n = 0, m = 0;
  int64_t offset = 0;      // position of key 0: first_query - (m - n)
  int64_t segments = 0;    // ceil(n / S)
  int64_t profiled = 0;    // segments but the prompt's final one
  int64_t blocks = 0;      // blocks of positions [0, first_query + profiled·S)
  int64_t first_held = 0;  // the first block holding a key: offset / B
};

ChunkLayout Layout(const CritiPrefillChunk& chunk, int64_t n, int64_t m,
                   const CritiPrefillParams& params) {
  const int64_t s = params.segment_size, b = params.block_size;
  TORCH_CHECK(chunk.first_query % s == 0, "CritiPrefill: the chunk starts at ", chunk.first_query,
              ", not a multiple of the segment size ", s);
  TORCH_CHECK(m >= n && chunk.first_query >= m - n, "CritiPrefill: ", m, " keys for ", n,
              " queries starting at position ", chunk.first_query);
  ChunkLayout l;
  l.n = n;
  l.m = m;
  l.offset = chunk.first_query - (m - n);
  l.segments = CeilDiv(n, s);
  const bool ends_prompt = chunk.first_query + l.segments * s >= chunk.prompt_tokens;
  l.profiled = l.segments - (ends_prompt ? 1 : 0);
  l.blocks = (chunk.first_query + l.profiled * s) / b;
  l.first_held = l.offset / b;
  return l;
}

// [profiled, blocks] bool: block b may be read by segment s (it holds a key and ends before it).
at::Tensor ReadableBlocks(const ChunkLayout& l, const CritiPrefillChunk& chunk,
                          const CritiPrefillParams& params, const at::TensorOptions& options) {
  auto block = at::arange(l.blocks, options.dtype(at::kLong));
  auto start =
      chunk.first_query + at::arange(l.profiled, options.dtype(at::kLong)) * params.segment_size;
  return (block.unsqueeze(0) >= l.first_held) &
         ((block.unsqueeze(0) + 1) * params.block_size <= start.unsqueeze(1));
}

// Max and min are exact in any dtype: on CUDA they reduce the 16-bit tensors themselves (no float32
// copy, a third of the bytes), on the CPU a float32 copy (libtorch 1.13's CPU half kernels are
// incomplete). The caller converts the (small) result to float32.
at::Tensor SummaryInput(const at::Tensor& t) { return t.is_cuda() ? t : t.to(at::kFloat); }

// Element-wise max or min of each block's present keys: [kv_heads, blocks - first_held, d],
// float32.
at::Tensor BlockSummary(const at::Tensor& keys, const ChunkLayout& l, int64_t block_size,
                        bool max) {
  const int64_t kv_heads = keys.size(0), dim = keys.size(2);
  const int64_t pad = l.offset - l.first_held * block_size;  // absent keys of the first block
  auto present = SummaryInput(keys.narrow(1, 0, l.blocks * block_size - l.offset));
  const float fill = max ? -INFINITY : INFINITY;
  auto padded =
      (pad == 0 ? present
                : at::cat({at::full({kv_heads, pad, dim}, fill, present.options()), present}, 1))
          .reshape({kv_heads, l.blocks - l.first_held, block_size, dim});
  return (max ? padded.amax(2) : padded.amin(2)).to(at::kFloat);
}

}  // namespace

bool IsDenseSegment(int64_t start, int64_t prompt_tokens, const CritiPrefillParams& params) {
  return start < params.dense_prefix_tokens || start + params.segment_size >= prompt_tokens;
}

bool HasSparseSegments(const CritiPrefillChunk& chunk, int64_t n, int64_t layer,
                       const CritiPrefillParams& params) {
  const int64_t s = params.segment_size, end = chunk.first_query + n;
  if (layer < params.dense_layers || chunk.first_query % s != 0) return false;
  if (end % s != 0 && end != chunk.prompt_tokens) return false;
  for (int64_t start = chunk.first_query; start < end; start += s) {
    if (!IsDenseSegment(start, chunk.prompt_tokens, params)) return true;
  }
  return false;
}

const at::Tensor& CritiPrefillFusion::Fuse(const at::Tensor& probabilities, bool restart) {
  if (restart || !fused_.defined() || !fused_.sizes().equals(probabilities.sizes())) {
    fused_ = probabilities;
  } else {
    constexpr double w = CritiPrefillParams::kFusionWeight;
    fused_ = w * fused_ + (1 - w) * probabilities;
  }
  return fused_;
}

at::Tensor BlockProbabilities(const at::Tensor& queries, const at::Tensor& keys,
                              const CritiPrefillChunk& chunk, const CritiPrefillParams& params) {
  const int64_t heads = queries.size(1), dim = queries.size(2), kv_heads = keys.size(0);
  const ChunkLayout l = Layout(chunk, queries.size(0), keys.size(1), params);
  const auto options = keys.options().dtype(at::kFloat);
  constexpr float kLowest = std::numeric_limits<float>::lowest();  // §1.2 step 7: not -inf
  auto scores = at::full({kv_heads, l.profiled, l.blocks}, kLowest, options);
  if (l.profiled > 0 && l.blocks > l.first_held) {
    // Step 4-5: q̄ = (max + min) / 2 over each segment's queries; score = max(q̄·k̂max, q̄·k̂min).
    auto q = SummaryInput(queries.narrow(0, 0, l.profiled * params.segment_size))
                 .reshape({l.profiled, params.segment_size, heads, dim});
    auto q_mid = ((q.amax(1).to(at::kFloat) + q.amin(1).to(at::kFloat)) * 0.5)
                     .permute({1, 0, 2})
                     .reshape({kv_heads, heads / kv_heads, l.profiled, dim});
    auto k_max = BlockSummary(keys, l, params.block_size, true).unsqueeze(1).transpose(-1, -2);
    auto k_min = BlockSummary(keys, l, params.block_size, false).unsqueeze(1).transpose(-1, -2);
    // Step 6: averaged over the query heads of a KV head, before the softmax.
    auto held = at::maximum(at::matmul(q_mid, k_max), at::matmul(q_mid, k_min)).mean(1);
    scores.narrow(2, l.first_held, l.blocks - l.first_held).copy_(held);
  }
  // Step 7-8: blocks a segment may not read get the lowest finite value; softmax in float32.
  scores.masked_fill_(ReadableBlocks(l, chunk, params, options).logical_not().unsqueeze(0),
                      kLowest);
  return at::softmax(scores, -1);
}

SegmentBlocks SelectSegmentBlocks(const at::Tensor& queries, const at::Tensor& keys,
                                  const CritiPrefillChunk& chunk, int64_t layer,
                                  const CritiPrefillParams& params, CritiPrefillFusion& fusion) {
  TORCH_CHECK(layer >= params.dense_layers, "CritiPrefill: layer ", layer, " is dense");
  const int64_t kv_heads = keys.size(0), s = params.segment_size, b = params.block_size;
  const ChunkLayout l = Layout(chunk, queries.size(0), keys.size(1), params);
  const bool restart = layer == params.dense_layers || !params.layer_fusion;
  const at::Tensor& fused = fusion.Fuse(BlockProbabilities(queries, keys, chunk, params), restart);

  SegmentBlocks out{chunk.first_query, s, b, at::Tensor(), at::Tensor()};
  std::vector<uint8_t> dense(l.segments);
  std::vector<int64_t> kept(l.profiled, 0);  // blocks each profiled segment lists
  for (int64_t i = 0; i < l.segments; ++i) {
    const int64_t start = chunk.first_query + i * s;
    dense[i] = IsDenseSegment(start, chunk.prompt_tokens, params);
    if (i < l.profiled && !dense[i]) {
      kept[i] = std::min(params.kept_blocks, std::max<int64_t>(0, start / b - l.first_held));
    }
  }
  const auto long_options = keys.options().dtype(at::kLong);
  out.dense = at::tensor(std::vector<int64_t>(dense.begin(), dense.end()), at::kLong)
                  .to(keys.device())
                  .to(at::kBool);
  const int64_t width = kept.empty() ? 0 : *std::max_element(kept.begin(), kept.end());
  auto blocks = at::full({kv_heads, l.segments, width}, -1, long_options);
  if (width > 0) {
    // Step 10 with the always-read blocks first: rank = 2 for them (above any probability), the
    // fused probability for the others, -1 where unreadable; stable descending order breaks ties
    // by ascending block id.
    auto readable = ReadableBlocks(l, chunk, params, long_options);
    auto block = at::arange(l.blocks, long_options).unsqueeze(0);
    auto start_block =
        (chunk.first_query + at::arange(l.profiled, long_options) * s).unsqueeze(1) / b;
    auto forced =
        readable & ((block < params.first_blocks) | (block >= start_block - params.local_blocks));
    auto rank = fused.masked_fill(forced.unsqueeze(0), 2.0)
                    .masked_fill(readable.logical_not().unsqueeze(0), -1.0);
    auto order = std::get<1>(at::sort(rank, /*stable=*/true, /*dim=*/-1, /*descending=*/true));
    auto top = order.narrow(-1, 0, width);
    auto slot = at::arange(width, long_options).unsqueeze(0);
    auto valid = slot < at::tensor(kept, at::kLong).to(keys.device()).unsqueeze(1);
    constexpr int64_t kPadding = std::numeric_limits<int64_t>::max();
    auto sorted = std::get<0>(at::sort(top.masked_fill(valid.logical_not().unsqueeze(0), kPadding),
                                       /*dim=*/-1));
    blocks.narrow(1, 0, l.profiled).copy_(sorted.masked_fill(sorted == kPadding, -1));
  }
  out.blocks = blocks.to(at::kInt);
  return out;
}

at::Tensor SegmentBlocksMask(const SegmentBlocks& sb, int64_t n, int64_t m) {
  const auto long_options = sb.blocks.options().dtype(at::kLong);
  const int64_t kv_heads = sb.blocks.size(0), segments = sb.blocks.size(1);
  const int64_t offset = sb.first_query - (m - n);
  auto query_pos = sb.first_query + at::arange(n, long_options);
  auto segment = at::arange(n, long_options).div(sb.segment_size, "floor");
  auto key_pos = offset + at::arange(m, long_options);
  auto causal = key_pos.unsqueeze(0) <= query_pos.unsqueeze(1);  // [n, m]
  auto own =
      causal & (key_pos.unsqueeze(0) >= (sb.first_query + segment * sb.segment_size).unsqueeze(1));
  // listed[h, s, block]: one column past the last block takes the -1 padding.
  const int64_t columns = (offset + m - 1) / sb.block_size + 1;
  auto ids = sb.blocks.to(at::kLong);
  ids = ids.masked_fill(ids < 0, columns);
  auto listed = at::zeros({kv_heads, segments, columns + 1}, long_options)
                    .scatter_(2, ids, 1)
                    .narrow(2, 0, columns)
                    .to(at::kBool);
  auto per_query = listed.index_select(2, key_pos.div(sb.block_size, "floor"))
                       .index_select(1, segment);  // [kv_heads, n, m]
  auto dense = sb.dense.to(at::kBool).index_select(0, segment).view({1, n, 1});
  return at::where(dense, causal.unsqueeze(0), own.unsqueeze(0) | per_query) & causal;
}

int64_t CausalPairs(int64_t kv_heads, int64_t n, int64_t m) {
  // Query j of the n sees m - n + j + 1 keys.
  return kv_heads * (n * (m - n) + n * (n + 1) / 2);
}

AttendedKeys CountAttendedKeys(const SegmentBlocks& sb, int64_t n, int64_t m) {
  const int64_t kv_heads = sb.blocks.size(0), s = sb.segment_size, b = sb.block_size;
  const int64_t held = m - n, offset = sb.first_query - held;
  // Keys each listed block holds, summed per segment over heads and lists.
  auto ids = sb.blocks.to(at::kCPU, at::kLong);
  auto present = ((ids + 1) * b - at::clamp_min(ids * b, offset)).masked_fill(ids < 0, 0);
  auto per_segment = present.sum(at::IntArrayRef{0, 2});
  auto dense = sb.dense.to(at::kCPU, at::kLong);
  AttendedKeys count;
  for (int64_t i = 0; i * s < n; ++i) {
    const int64_t first = i * s, len = std::min(s, n - first);
    const int64_t causal = CausalPairs(kv_heads, len, held + first + len);
    count.causal += causal;
    count.attended += dense[i].item<int64_t>() != 0
                          ? causal
                          : kv_heads * len * (len + 1) / 2 + len * per_segment[i].item<int64_t>();
  }
  return count;
}

at::Tensor CritiPrefillAttendReference(const at::Tensor& queries, const at::Tensor& keys,
                                       const at::Tensor& values, const SegmentBlocks& blocks,
                                       at::Tensor* key_mass) {
  const int64_t n = queries.size(0), heads = queries.size(1), dim = queries.size(2);
  const int64_t kv_heads = keys.size(0), m = keys.size(1);
  auto mask = SegmentBlocksMask(blocks, n, m).unsqueeze(1);  // [kv_heads, 1, n, m]
  auto q = queries.to(at::kFloat).view({n, kv_heads, heads / kv_heads, dim}).permute({1, 2, 0, 3});
  auto k = keys.to(at::kFloat).unsqueeze(1);
  auto v = values.to(at::kFloat).unsqueeze(1);
  auto scores = at::matmul(q, k.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(dim)));
  auto probs = at::softmax(scores.masked_fill(mask.logical_not(), -INFINITY), -1);
  if (key_mass != nullptr) *key_mass = probs.sum({1, 2});
  return at::matmul(probs, v)
      .permute({2, 0, 1, 3})
      .reshape({n, heads, dim})
      .to(queries.scalar_type());
}

at::Tensor CritiPrefillAttend(const at::Tensor& queries, const at::Tensor& keys,
                              const at::Tensor& values, const SegmentBlocks& blocks,
                              at::Tensor* key_mass) {
#ifdef KVSERVE_WITH_CUDA
  // The block-sparse tensor-core kernel (prefill_and_heads.md §4.3); it gives no key mass, so
  // policies that want it keep the reference. Key j of m sits at position j + first_query - (m -
  // n).
  if (key_mass == nullptr && cuda::PrefillKernelTakes(queries, keys, values, blocks.segment_size)) {
    const int64_t offset = blocks.first_query - (keys.size(1) - queries.size(0));
    return cuda::PrefillAttention(queries, keys, values, blocks.blocks, blocks.dense,
                                  blocks.segment_size, blocks.block_size, offset);
  }
#endif
  return CritiPrefillAttendReference(queries, keys, values, blocks, key_mass);
}

}  // namespace kvserve
