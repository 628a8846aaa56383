// The CUDA kernels' name (kernels/dtype.h) for a tensor dtype, for the adapters in cache/ and
// model/. CUDA builds only.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "kernels/dtype.h"

namespace kvserve {

inline bool KernelsTakeDType(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16;
}

// float16 or bfloat16: what the tensor-core and vectorized 16-bit paths take.
inline bool Is16Bit(at::ScalarType dtype) { return dtype == at::kHalf || dtype == at::kBFloat16; }

// Throws for a dtype the kernels do not take.
inline kernels::DType KernelDType(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return kernels::DType::kFloat32;
    case at::kHalf:
      return kernels::DType::kFloat16;
    case at::kBFloat16:
      return kernels::DType::kBFloat16;
    default:
      TORCH_CHECK(false, "the CUDA kernels take float32, float16 or bfloat16, not ", dtype);
  }
}

}  // namespace kvserve
