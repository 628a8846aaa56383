// Memory of the device the model runs on, for sizing the KV pool from a fraction of it.
#pragma once

#include <ATen/ATen.h>
#include <absl/status/statusor.h>

#include <cstdint>

namespace kvserve {

struct DeviceMemory {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};

// Free and total bytes of a CUDA device. UNIMPLEMENTED for the CPU or in a build without CUDA.
absl::StatusOr<DeviceMemory> QueryDeviceMemory(at::Device device);

}  // namespace kvserve
