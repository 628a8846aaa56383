// What the two split kernels of DecodeAttention share (decode_attention.cu on CUDA cores for any
// dtype, decode_attention_mma.cu on tensor cores for 16-bit types): the block shape, the tiles
// and their pipeline, how a sequence's cache is split, slot ranks, and the partial result each
// split leaves for MergeSplitsKernel. Internal to kernels/.
#pragma once

#include <cfloat>
#include <cstdint>
#include <type_traits>

#include "kernels/decode_step.h"
#include "kernels/device_math.cuh"

namespace kvserve::kernels {

constexpr int kSplitThreads = 128;
constexpr int kSplitWarps = kSplitThreads / 32;
// A split reads at least this many keys: below it, the merge and the pipeline's start cost more
// than the parallelism buys.
constexpr int kMinKeysPerSplit = 128;
constexpr int kTileBytes = 8192;
constexpr int kStages = 3;
// Per stage of the CUDA-core kernel: a key tile, a value tile and the keys' cos/sin rows, each
// kTileBytes.
constexpr int kSplitSharedBytes = kStages * 3 * kTileBytes;

__host__ __device__ __forceinline__ int NumSplits(int length, int max_splits) {
  const int wanted = (length + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
  return wanted < 1 ? 1 : (wanted < max_splits ? wanted : max_splits);
}

// The keys [begin, end) split `split` of sequence b reads in `layer`; false when it has none.
__device__ __forceinline__ bool SplitRange(const DecodeShape& shape, const DecodeSequence& s,
                                           const int32_t* lengths, int32_t layer,
                                           const DecodeWorkspace& workspace, int split, int b,
                                           int& begin, int& end, int& length) {
  length = s.keys == nullptr ? 0 : lengths[static_cast<int64_t>(layer) * shape.batch + b];
  const int splits = NumSplits(length, workspace.max_splits);
  if (length == 0 || split >= splits) return false;
  const int chunk = (length + splits - 1) / splits;
  begin = split * chunk;
  end = min(length, begin + chunk);
  return true;
}

// Of a split's slots before `end`, those before RotatedEnd have their keys turned at attention:
// every one for IN-CACHE keys, the sinks for keys stored rotated (none when sink_slots is 0).
__device__ __forceinline__ int RotatedEnd(const DecodeSequence& s, int end) {
  return s.keys_rotated ? s.sink_slots : end;
}

// The table row a slot's stored key is turned by at attention: its rank for IN-CACHE keys; for
// keys stored rotated, the sinks' shift, and 0 (cos 1, sin 0: the key as stored) for the rest.
__device__ __forceinline__ int SlotRank(int slot, const DecodeSequence& s) {
  if (s.keys_rotated) return slot < s.sink_slots ? s.sink_shift : 0;
  if (s.slot_ranks != nullptr) return s.slot_ranks[slot];
  if (slot >= s.ring_begin && slot < s.ring_begin + s.ring_size) {
    int offset = (slot - s.ring_head) % s.ring_size;
    if (offset < 0) offset += s.ring_size;
    return s.ring_begin + offset;
  }
  return slot;
}

// Copies tile `t` of a split's keys [begin + t * keys per tile, ...) and their values (and, with
// StageRope, for keys turned at attention, each key's row of the cos/sin table) into stage t %
// kStages of `shared`, whose stages hold 3 tiles with StageRope and 2 without; rows past `end` read
// zeros. `target(row, chunk)` is the element offset of 16-byte chunk `chunk` of tile row `row` in a
// key or value tile (the tensor-core kernel swizzles them); the table rows stay in order.
template <typename T, int D, bool StageRope, typename Target>
__device__ __forceinline__ void LoadTile(T* shared, int t, int begin, int end, const T* key_base,
                                         const T* value_base, const T* rope_table,
                                         const DecodeSequence& s, bool rotate, Target target) {
  constexpr int E = kVecElems<T>, kChunks = D / E;
  constexpr int kKeys = kTileBytes / (D * static_cast<int>(sizeof(T)));
  constexpr int kTileElems = kTileBytes / static_cast<int>(sizeof(T));
  constexpr int kStageTiles = StageRope ? 3 : 2;
  T* keys = shared + (t % kStages) * kStageTiles * kTileElems;
  T* values = keys + kTileElems;
  T* rope = values + kTileElems;
  for (int c = threadIdx.x; c < kKeys * kChunks; c += kSplitThreads) {
    const int row = c / kChunks, chunk = c % kChunks, key = begin + t * kKeys + row;
    const bool valid = key < end;
    const int64_t source = static_cast<int64_t>(valid ? key : begin) * D + chunk * E;
    const int at = target(row, chunk);
    CopyAsync16(keys + at, key_base + source, valid);
    CopyAsync16(values + at, value_base + source, valid);
    if (StageRope && rotate) {
      const int64_t rank = valid ? SlotRank(key, s) : 0;
      CopyAsync16(rope + row * D + chunk * E, rope_table + rank * D + chunk * E, valid);
    }
  }
}

// A sequence whose attention one split computes alone, with no key mass to write: its split
// kernel writes the output itself, and MergeSplitsKernel leaves it alone.
__host__ __device__ __forceinline__ bool SplitWritesOutput(int length, const DecodeSequence& s,
                                                           int max_splits) {
  return NumSplits(length, max_splits) == 1 && s.key_mass == nullptr;
}

// The output rows [G][D] of KV head `kv_head`'s query heads in sequence b of `out` [batch,
// num_heads, D].
template <int D, int G, typename T>
__device__ __forceinline__ T* HeadGroupRows(T* out, const DecodeShape& shape, int b, int kv_head) {
  return out + (static_cast<int64_t>(b) * shape.num_heads + kv_head * G) * D;
}

// Merges the warps' online-softmax states (warp_m, warp_l [kSplitWarps][G], warp_acc
// [kSplitWarps][G][D], in shared memory) into the split's partial output and (max, sum), or,
// where the split writes the output itself (SplitWritesOutput), into the KV head's rows of `out`.
// Every thread of the block calls it after a barrier.
template <typename T, int D, int G>
__device__ __forceinline__ void WriteSplitPartial(const float* warp_m, const float* warp_l,
                                                  const float* warp_acc, const DecodeShape& shape,
                                                  const DecodeWorkspace& workspace, int b,
                                                  int kv_head, int split, const DecodeSequence& s,
                                                  int length, T* out) {
  T* out_row = SplitWritesOutput(length, s, workspace.max_splits)
                   ? HeadGroupRows<D, G>(out, shape, b, kv_head)
                   : nullptr;
  for (int i = threadIdx.x; i < G * D; i += kSplitThreads) {
    const int g = i / D, dim = i % D;
    float m_all = -INFINITY;
    for (int w = 0; w < kSplitWarps; ++w) m_all = fmaxf(m_all, warp_m[w * G + g]);
    float out = 0, sum = 0;
    for (int w = 0; w < kSplitWarps; ++w) {
      const float f = warp_m[w * G + g] == -INFINITY ? 0.f : exp2f(warp_m[w * G + g] - m_all);
      out += warp_acc[(w * G + g) * D + dim] * f;
      sum += warp_l[w * G + g] * f;
    }
    if (out_row != nullptr) {
      out_row[i] = FromFloat<T>(out / sum);
      continue;
    }
    const int64_t index =
        ((static_cast<int64_t>(b) * shape.kv_heads + kv_head) * G + g) * workspace.max_splits +
        split;
    workspace.partial_out[index * D + dim] = out;
    if (dim == 0) {
      workspace.partial_stats[index * 2] = m_all;
      workspace.partial_stats[index * 2 + 1] = sum;
    }
  }
}

// Calls launch(std::integral_constant<int, G>{}) for a group size G the kernels are built for.
template <typename F>
cudaError_t DispatchGroup(int32_t group, F&& launch) {
  switch (group) {
    case 1:
      return launch(std::integral_constant<int, 1>{});
    case 2:
      return launch(std::integral_constant<int, 2>{});
    case 4:
      return launch(std::integral_constant<int, 4>{});
    case 8:
      return launch(std::integral_constant<int, 8>{});
  }
  return cudaErrorInvalidValue;
}

// The tensor-core split kernel (decode_attention_mma.cu) for bf16/f16, head dims 64 and 128,
// groups up to 8: false when it does not take the shape. Same contract as the CUDA-core one.
bool MmaSplitTakes(DType dtype, int32_t head_dim, int32_t group);
cudaError_t LaunchMmaSplit(const DecodeShape& shape, const DecodeSequence* sequences,
                           const int32_t* lengths, int32_t layer, const void* queries, void* out,
                           const void* rope_table, const DecodeWorkspace& workspace,
                           cudaStream_t stream);

}  // namespace kvserve::kernels
