#include "model/device_memory.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>

#ifdef KVSERVE_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kvserve {

absl::StatusOr<DeviceMemory> QueryDeviceMemory(at::Device device) {
  if (!device.is_cuda()) {
    return absl::UnimplementedError("device memory can be queried for CUDA devices only");
  }
#ifdef KVSERVE_WITH_CUDA
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device.index() < 0 ? 0 : device.index());
  size_t free_bytes = 0, total_bytes = 0;
  const cudaError_t error = cudaMemGetInfo(&free_bytes, &total_bytes);
  cudaSetDevice(previous);
  if (error != cudaSuccess) {
    return absl::InternalError(absl::StrCat("cudaMemGetInfo: ", cudaGetErrorString(error)));
  }
  return DeviceMemory{static_cast<int64_t>(free_bytes), static_cast<int64_t>(total_bytes)};
#else
  return absl::UnimplementedError("this build has no CUDA");
#endif
}

}  // namespace kvserve
