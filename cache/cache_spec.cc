#include "cache/cache_spec.h"

namespace kvserve {

std::string CachePolicyName(CachePolicyKind kind) {
  switch (kind) {
    case CachePolicyKind::kFull:
      return "FULL";
    case CachePolicyKind::kStreamingLlm:
      return "STREAMING_LLM";
    case CachePolicyKind::kH2o:
      return "H2O";
    case CachePolicyKind::kSnapKv:
      return "SNAPKV";
    case CachePolicyKind::kCascading:
      return "CASCADING";
    case CachePolicyKind::kTreeKv:
      return "TREEKV";
    case CachePolicyKind::kFreqKv:
      return "FREQKV";
  }
  return "UNKNOWN";
}

std::optional<CachePolicyKind> CachePolicyKindNamed(std::string_view name) {
  for (auto kind : {CachePolicyKind::kFull, CachePolicyKind::kStreamingLlm, CachePolicyKind::kH2o,
                    CachePolicyKind::kSnapKv, CachePolicyKind::kCascading, CachePolicyKind::kTreeKv,
                    CachePolicyKind::kFreqKv}) {
    if (CachePolicyName(kind) == name) return kind;
  }
  return std::nullopt;
}

}  // namespace kvserve
