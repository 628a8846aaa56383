// GetModelInfo's answer: the engine's ModelInfo with every cache policy of the API, its parameters
// (from the API's params messages), their types and default rules.
#pragma once

#include "kvserve/v1/generation.pb.h"
#include "scheduler/engine.h"

namespace kvserve {

// Parameter descriptions and defaults come from the engine's PolicyDescription where it has them,
// else from policies.md §0.5 item 19 (the defaults for a request's budget).
v1::ModelInfo ToProtoModelInfo(const ModelInfo& info);

}  // namespace kvserve
