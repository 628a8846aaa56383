// The element types the kernels read and write. Plain C++: callers outside CUDA (the adapters in
// model/ and cache/) name a type without including CUDA's headers.
#pragma once

namespace kvserve::kernels {

enum class DType { kFloat32, kFloat16, kBFloat16 };

}  // namespace kvserve::kernels
