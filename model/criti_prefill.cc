// CritiPrefill's selection and its reference attention, from the official code's algorithm as
// prefill_and_heads.md §1.2 states it, with §1.3's clamp of k and §1.8's chunking.
#include "model/criti_prefill.h"

#include <c10/util/Exception.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <utility>
#include <vector>

#ifdef KVSERVE_WITH_CUDA
#include "model/criti_prefill_cudnn.h"
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

// Block b may be read by segment s iff it holds a key and ends at or before the segment's start:
// first_held <= b < start_s / B. [profiled, 1] long: each segment's start_s / B.
at::Tensor StartBlocks(const ChunkLayout& l, const CritiPrefillChunk& chunk,
                       const CritiPrefillParams& params, const at::TensorOptions& long_options) {
  const int64_t per_segment = params.segment_size / params.block_size;
  return (at::arange(l.profiled, long_options) * per_segment +
          chunk.first_query / params.block_size)
      .unsqueeze(1);
}

// [profiled, blocks] bool: the blocks a segment may not read (§1.2 step 7).
at::Tensor UnreadableBlocks(const ChunkLayout& l, const at::Tensor& start_blocks) {
  auto block = at::arange(l.blocks, start_blocks.options()).unsqueeze(0);
  return (block < l.first_held) | (block >= start_blocks);
}

// Max and min are exact in any dtype: on CUDA they reduce the 16-bit tensors themselves (no float32
// copy, a third of the bytes), on the CPU a float32 copy (libtorch 1.13's CPU half kernels are
// incomplete). The caller converts the (small) result to float32.
at::Tensor SummaryInput(const at::Tensor& t) { return t.is_cuda() ? t : t.to(at::kFloat); }

// Element-wise min and max of each block's present keys, one pass over them (aminmax):
// float32 [kv_heads, blocks - first_held, d] each. A partly absent first block reduces only the
// keys it holds, apart from the whole blocks, so no padded copy of the keys is made.
std::pair<at::Tensor, at::Tensor> BlockSummaries(const at::Tensor& keys, const ChunkLayout& l,
                                                 int64_t block_size) {
  const int64_t kv_heads = keys.size(0), dim = keys.size(2);
  const int64_t absent = l.offset - l.first_held * block_size;  // keys missing from the first block
  const int64_t partial = absent == 0 ? 0 : block_size - absent;  // keys the first block holds
  const int64_t whole = l.blocks - l.first_held - (partial > 0 ? 1 : 0);
  at::Tensor low, high;
  if (whole > 0) {
    std::tie(low, high) = at::aminmax(SummaryInput(keys.narrow(1, partial, whole * block_size))
                                          .reshape({kv_heads, whole, block_size, dim}),
                                      2);
  }
  if (partial > 0) {
    at::Tensor first_low, first_high;
    std::tie(first_low, first_high) =
        at::aminmax(SummaryInput(keys.narrow(1, 0, partial)), 1, /*keepdim=*/true);
    low = whole > 0 ? at::cat({first_low, low}, 1) : first_low;
    high = whole > 0 ? at::cat({first_high, high}, 1) : first_high;
  }
  return {low.to(at::kFloat), high.to(at::kFloat)};
}

// §1.2 steps 4-8 given the chunk's unreadable blocks.
at::Tensor Probabilities(const at::Tensor& queries, const at::Tensor& keys, const ChunkLayout& l,
                         const CritiPrefillParams& params, const at::Tensor& unreadable) {
  const int64_t heads = queries.size(1), dim = queries.size(2), kv_heads = keys.size(0);
  const auto options = keys.options().dtype(at::kFloat);
  constexpr float kLowest = std::numeric_limits<float>::lowest();  // §1.2 step 7: not -inf
  if (l.profiled == 0 || l.blocks <= l.first_held) {               // no segment may read any block
    return at::softmax(at::full({kv_heads, l.profiled, l.blocks}, kLowest, options), -1);
  }
  // Step 4-5: q̄ = (max + min) / 2 over each segment's queries; score = max(q̄·k̂max, q̄·k̂min).
  at::Tensor q_min, q_max;
  std::tie(q_min, q_max) =
      at::aminmax(SummaryInput(queries.narrow(0, 0, l.profiled * params.segment_size))
                      .reshape({l.profiled, params.segment_size, heads, dim}),
                  1);
  // [kv_heads, G·profiled, dim]: the group's heads stacked, so each score is one batched GEMM
  // against the block summaries as they lie (a broadcast matmul would copy them first).
  const int64_t group = heads / kv_heads;
  auto q_mid = ((q_max.to(at::kFloat) + q_min.to(at::kFloat)) * 0.5)
                   .permute({1, 0, 2})
                   .reshape({kv_heads, group * l.profiled, dim});
  const auto [k_min, k_max] = BlockSummaries(keys, l, params.block_size);
  // Step 6: averaged over the query heads of a KV head, before the softmax.
  auto held =
      at::maximum(at::bmm(q_mid, k_max.transpose(1, 2)), at::bmm(q_mid, k_min.transpose(1, 2)))
          .view({kv_heads, group, l.profiled, -1})
          .mean(1);
  // Step 7-8: blocks a segment may not read get the lowest finite value; softmax in float32.
  auto scores = l.first_held == 0 ? held : at::constant_pad_nd(held, {l.first_held, 0}, kLowest);
  scores.masked_fill_(unreadable, kLowest);
  return at::softmax(scores, -1);
}

// Whether at::topk picks the same set as a stable descending sort's first k. On CUDA (torch 2's
// sbtopk and mbtopk gather kernels) every value above the k-th is taken and the values equal to it
// in ascending index order, i.e. ties go to the lower block as step 10 wants; rows of a few very
// long slices go through an unstable sort instead (should_use_sort: at most 10 slices of 100,000),
// and the CPU kernel promises no order among ties; so do ROCm's (warp-atomic compaction).
bool TopKBreaksTiesByIndex(const at::Tensor& rank) {
#if defined(USE_ROCM)
  return false;
#else
  const int64_t slice = rank.size(-1), slices = slice == 0 ? 0 : rank.numel() / slice;
  return TORCH_VERSION_MAJOR >= 2 && rank.is_cuda() && !(slices <= 10 && slice >= 100000);
#endif
}

}  // namespace

// What a chunk's selection derives from its geometry alone, on the keys' device.
struct CritiPrefillFusion::ChunkTables {
  // The geometry they describe.
  CritiPrefillChunk chunk;
  int64_t n = 0, m = 0;
  CritiPrefillParams params;
  at::Device device = at::kCPU;

  at::Tensor unreadable;  // bool [profiled, blocks]: §1.2 step 7
  // Step 10's rank of a block is its fused probability where `ranked` (a block a sparse segment may
  // read, not one it always reads), else `fixed`: 2 (above any probability) for an always-read one,
  // -1 for one its segment does not list.
  at::Tensor ranked;  // bool [profiled, blocks]
  at::Tensor fixed;   // float [profiled, blocks]
  at::Tensor dense;   // bool [segments]
  // Per segment: IsDenseSegment, and min(kept_blocks, blocks it may read) (0 if dense).
  std::vector<uint8_t> host_dense;
  std::vector<int64_t> host_listed;
  int64_t width = 0;  // the most blocks a segment lists

  bool Describe(const CritiPrefillChunk& c, int64_t queries, int64_t keys,
                const CritiPrefillParams& p, const at::Device& d) const {
    return c.first_query == chunk.first_query && c.prompt_tokens == chunk.prompt_tokens &&
           queries == n && keys == m && p == params && d == device;
  }
};

CritiPrefillFusion::CritiPrefillFusion() = default;
CritiPrefillFusion::~CritiPrefillFusion() = default;
CritiPrefillFusion::CritiPrefillFusion(CritiPrefillFusion&&) noexcept = default;
CritiPrefillFusion& CritiPrefillFusion::operator=(CritiPrefillFusion&&) noexcept = default;

namespace {

// Built with a few small device ops and no host-to-device copy, once per chunk.
CritiPrefillFusion::ChunkTables BuildChunkTables(const ChunkLayout& l,
                                                 const CritiPrefillChunk& chunk,
                                                 const CritiPrefillParams& params,
                                                 const at::Device& device) {
  const int64_t s = params.segment_size, b = params.block_size;
  CritiPrefillFusion::ChunkTables t;
  t.chunk = chunk;
  t.n = l.n;
  t.m = l.m;
  t.params = params;
  t.device = device;
  t.host_dense.resize(l.segments);
  t.host_listed.assign(l.segments, 0);
  for (int64_t i = 0; i < l.segments; ++i) {
    const int64_t start = chunk.first_query + i * s;
    t.host_dense[i] = IsDenseSegment(start, chunk.prompt_tokens, params);
    if (i < l.profiled && !t.host_dense[i]) {
      t.host_listed[i] =
          std::min(params.kept_blocks, std::max<int64_t>(0, start / b - l.first_held));
      t.width = std::max(t.width, t.host_listed[i]);
    }
  }
  const auto long_options = at::TensorOptions().dtype(at::kLong).device(device);
  auto segment_start = chunk.first_query + at::arange(l.segments, long_options) * s;
  t.dense = (segment_start < params.dense_prefix_tokens) |
            (segment_start + s >= chunk.prompt_tokens);  // IsDenseSegment
  auto start_blocks = StartBlocks(l, chunk, params, long_options);
  t.unreadable = UnreadableBlocks(l, start_blocks);
  auto listable =
      t.unreadable.logical_not() & t.dense.narrow(0, 0, l.profiled).logical_not().unsqueeze(1);
  auto block = at::arange(l.blocks, long_options).unsqueeze(0);
  auto forced =
      listable & ((block < params.first_blocks) | (block >= start_blocks - params.local_blocks));
  t.ranked = listable & forced.logical_not();
  t.fixed = at::full({l.profiled, l.blocks}, -1.0, long_options.dtype(at::kFloat))
                .masked_fill_(forced, 2.0);
  return t;
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
  const ChunkLayout l = Layout(chunk, queries.size(0), keys.size(1), params);
  const auto long_options = keys.options().dtype(at::kLong);
  return Probabilities(queries, keys, l, params,
                       UnreadableBlocks(l, StartBlocks(l, chunk, params, long_options)));
}

SegmentBlocks SelectSegmentBlocks(const at::Tensor& queries, const at::Tensor& keys,
                                  const CritiPrefillChunk& chunk, int64_t layer,
                                  const CritiPrefillParams& params, CritiPrefillFusion& fusion) {
  TORCH_CHECK(layer >= params.dense_layers, "CritiPrefill: layer ", layer, " is dense");
  const int64_t kv_heads = keys.size(0);
  const ChunkLayout l = Layout(chunk, queries.size(0), keys.size(1), params);
  std::unique_ptr<CritiPrefillFusion::ChunkTables>& cached = fusion.tables();
  if (!cached || !cached->Describe(chunk, l.n, l.m, params, keys.device())) {
    cached = std::make_unique<CritiPrefillFusion::ChunkTables>(
        BuildChunkTables(l, chunk, params, keys.device()));
  }
  const CritiPrefillFusion::ChunkTables& t = *cached;
  const bool restart = layer == params.dense_layers || !params.layer_fusion;
  const at::Tensor& fused =
      fusion.Fuse(Probabilities(queries, keys, l, params, t.unreadable), restart);

  SegmentBlocks out{chunk.first_query, params.segment_size, params.block_size, at::Tensor(),
                    t.dense,           t.host_dense,        t.host_listed};
  const auto int_options = keys.options().dtype(at::kInt);
  if (t.width == 0) {
    out.blocks = at::full({kv_heads, l.segments, 0}, -1, int_options);
    return out;
  }
  // Step 10: the `width` best ranked blocks of each (KV head, segment) by (rank descending, block
  // ascending). A segment lists min(kept_blocks, blocks it may read) of them; as a segment that
  // lists fewer than `width` has fewer than `width` blocks ranked >= 0, the listed ones are exactly
  // those ranked >= 0.
  auto rank = at::where(t.ranked, fused, t.fixed);
  at::Tensor top_rank, top_block;
  if (TopKBreaksTiesByIndex(rank)) {
    std::tie(top_rank, top_block) = at::topk(rank, t.width, -1, /*largest=*/true, /*sorted=*/false);
  } else {
    std::tie(top_rank, top_block) =
        at::sort(rank, /*stable=*/true, /*dim=*/-1, /*descending=*/true);
    top_rank = top_rank.narrow(-1, 0, t.width);
    top_block = top_block.narrow(-1, 0, t.width);
  }
  // Listed blocks ascending, the unlisted slots (sorted last) as -1.
  constexpr int32_t kUnlisted = std::numeric_limits<int32_t>::max();
  auto listed =
      std::get<0>(at::sort(top_block.to(at::kInt).masked_fill_(top_rank < 0, kUnlisted), -1));
  listed.masked_fill_(listed == kUnlisted, -1);
  out.blocks = l.segments == l.profiled
                   ? listed
                   : at::constant_pad_nd(listed, {0, 0, 0, l.segments - l.profiled}, -1);
  return out;
}

at::Tensor SegmentBlocksMask(const SegmentBlocks& sb, int64_t n, int64_t m) {
  const auto long_options = sb.blocks.options().dtype(at::kLong);
  const int64_t kv_heads = sb.blocks.size(0), segments = sb.blocks.size(1);
  const int64_t offset = FirstKeyPosition(sb, n, m);
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
  const int64_t kv_heads = sb.blocks.size(0), segments = sb.blocks.size(1);
  const int64_t s = sb.segment_size, b = sb.block_size;
  const int64_t held = m - n, offset = FirstKeyPosition(sb, n, m);
  // Keys the lists of each segment hold, summed over the KV heads. When the first held block is
  // whole every listed block holds B keys, and the host copies say it all without a device read.
  std::vector<int64_t> listed_keys(segments);
  std::vector<uint8_t> dense = sb.host_dense;
  const auto known = static_cast<size_t>(segments);
  if (offset % b == 0 && sb.host_dense.size() == known && sb.host_listed.size() == known) {
    for (int64_t i = 0; i < segments; ++i) listed_keys[i] = kv_heads * sb.host_listed[i] * b;
  } else {
    auto ids = sb.blocks.to(at::kCPU, at::kLong);
    auto present = ((ids + 1) * b - at::clamp_min(ids * b, offset)).masked_fill(ids < 0, 0);
    auto per_segment = present.sum(at::IntArrayRef{0, 2}).contiguous();
    std::copy_n(per_segment.data_ptr<int64_t>(), segments, listed_keys.begin());
    auto flags = sb.dense.to(at::kCPU, at::kByte).contiguous();
    dense.assign(flags.data_ptr<uint8_t>(), flags.data_ptr<uint8_t>() + segments);
  }
  AttendedKeys count;
  for (int64_t i = 0; i * s < n; ++i) {
    const int64_t first = i * s, len = std::min(s, n - first);
    const int64_t causal = CausalPairs(kv_heads, len, held + first + len);
    count.causal += causal;
    count.attended +=
        dense[i] != 0 ? causal : kv_heads * len * (len + 1) / 2 + len * listed_keys[i];
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
  // cuDNN where it takes the inputs, else the block-sparse tensor-core kernel (prefill_and_heads.md
  // §4.3); neither gives key mass, so policies that want it keep the reference. Key j of m sits at
  // position j + first_query - (m - n).
  if (key_mass == nullptr && cuda::CritiPrefillCudnnTakes(queries, keys, values, blocks)) {
    return cuda::CritiPrefillAttendCudnn(queries, keys, values, blocks);
  }
  if (key_mass == nullptr && cuda::PrefillKernelTakes(queries, keys, values, blocks.segment_size)) {
    const int64_t offset = FirstKeyPosition(blocks, queries.size(0), keys.size(1));
    return cuda::PrefillAttention(queries, keys, values, blocks.blocks, blocks.dense,
                                  blocks.segment_size, blocks.block_size, offset);
  }
#endif
  return CritiPrefillAttendReference(queries, keys, values, blocks, key_mass);
}

}  // namespace kvserve
