// CritiPrefill's block-sparse attention (model/criti_prefill.h's SegmentBlocks) as a few calls of
// cuDNN's flash attention through libtorch 2. The chunk's segments are cut into runs that read
// alike (dense; or sparse, listing the same number of blocks, of the same length); each run is one
// batched call over the keys before its segments (a dense run's whole prefix, a sparse segment's
// listed blocks gathered into one tensor) with no mask, one over the segments' own keys, causal,
// and a merge of the two by their log-sum-exps (kernels/attention_merge.h). On the H200 this runs
// a 32K prompt's sparse layer at 421 TFLOP/s of kept work against the mma.sync kernel's 227
// (kernels/prefill_attention.h), which stays for the inputs this path does not take. CUDA builds
// only.
#pragma once

#include <ATen/ATen.h>

#include "model/criti_prefill.h"

namespace kvserve::cuda {

// Whether CritiPrefillAttendCudnn takes these inputs: libtorch 2, cuDNN enabled on a device of
// compute capability 8 or more; 16-bit queries [n, heads, dim], keys and values [kv_heads, m, dim]
// of that dtype with dim 64 or 128, rows contiguous and a head stride of whole blocks; every block
// a segment may list whole (the first held key starts a block); the selection's host copies
// (host_dense, host_listed) filled.
bool CritiPrefillCudnnTakes(const at::Tensor& queries, const at::Tensor& keys,
                            const at::Tensor& values, const SegmentBlocks& blocks);

// CritiPrefillAttendReference's contract, without key mass.
// REQUIRES: CritiPrefillCudnnTakes(queries, keys, values, blocks).
at::Tensor CritiPrefillAttendCudnn(const at::Tensor& queries, const at::Tensor& keys,
                                   const at::Tensor& values, const SegmentBlocks& blocks);

}  // namespace kvserve::cuda
