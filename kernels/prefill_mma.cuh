// What the two prefill kernels (prefill_attention.cu, prefill_attention_per_head.cu) share.
// Internal to kernels/.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/device_math.cuh"
#include "kernels/mma.cuh"
#include "kernels/prefill_attention.h"

namespace kvserve::kernels {

// The earlier kernel (prefill_attention_per_head.cu): one query head per block, one key tile in
// flight. Same contract as PrefillAttention; kept for comparison (PrefillAttentionArgs::per_head).
cudaError_t LaunchPrefillPerHead(const PrefillAttentionArgs& a, cudaStream_t stream);

}  // namespace kvserve::kernels
