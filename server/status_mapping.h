// The one place where the engine's absl::Status becomes a gRPC status.
#pragma once

#include <absl/status/status.h>
#include <grpcpp/support/status.h>

namespace kvserve {

// Same code (absl and gRPC share the canonical codes) and message; OK stays OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace kvserve
