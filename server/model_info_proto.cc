#include "server/model_info_proto.h"

#include <google/protobuf/descriptor.h>

#include <map>
#include <span>
#include <string>
#include <utility>

#include "server/request_conversion.h"

namespace kvserve {
namespace {

struct ParameterDoc {
  const char* description;
  const char* default_rule;
};

// policies.md §0.5 item 19, keyed by "policy field.parameter"; used until the cache factory
// describes a policy's parameters itself.
const std::map<std::string, ParameterDoc>& FallbackDocs() {
  static const auto* docs = new std::map<std::string, ParameterDoc>{
      {"streaming_llm.sink_tokens", {"first tokens always kept (attention sinks)", "4"}},
      {"streaming_llm.window_tokens", {"most recent tokens kept", "budget_tokens - sink_tokens"}},
      {"h2o.heavy_tokens",
       {"tokens kept for their accumulated attention", "budget_tokens - recent_tokens"}},
      {"h2o.recent_tokens", {"most recent tokens kept", "floor(budget_tokens / 2)"}},
      {"snapkv.window_tokens",
       {"observation window at the end of the prompt", "min(32, floor(budget_tokens / 2))"}},
      {"snapkv.kernel_size", {"pooling kernel over the window's attention", "5"}},
      {"snapkv.pooling", {"pooling of the window's attention", "AVG"}},
      {"cascading.sink_tokens",
       {"first tokens always kept",
        "S0 + ((budget_tokens - S0) mod num_cascades), S0 = 64 if budget_tokens >= 1024 else 4"}},
      {"cascading.num_cascades", {"sub-caches, each keeping about one token in 2^i", "4"}},
      {"cascading.cascade_tokens",
       {"slots per sub-cache", "(budget_tokens - sink_tokens) / num_cascades"}},
      {"cascading.ema_decay", {"decay of the attention-score moving average", "0.9999999"}},
      {"cascading.head_reduction", {"reduction of scores over a KV head's query heads", "MAX"}},
      {"treekv.sink_tokens", {"first tokens always kept", "4"}},
      {"treekv.recent_tokens", {"most recent tokens kept", "floor((budget_tokens - 4) / 2)"}},
      {"treekv.tree_tokens",
       {"tokens kept by the tree-structured eviction",
        "budget_tokens - sink_tokens - recent_tokens"}},
      {"treekv.prefill_block", {"prompt tokens per block of the prefill eviction", "32"}},
      {"freqkv.cache_tokens", {"cache size that triggers a compression", "budget_tokens"}},
      {"freqkv.sink_tokens", {"first tokens never compressed", "4"}},
      {"freqkv.recent_tokens", {"most recent tokens never compressed", "0"}},
      {"freqkv.ratio_numerator", {"kept fraction of the compressed span, numerator", "1"}},
      {"freqkv.ratio_denominator", {"kept fraction of the compressed span, denominator", "2"}},
  };
  return *docs;
}

std::string TypeName(const google::protobuf::FieldDescriptor& field) {
  if (field.enum_type() != nullptr) return "enum " + field.enum_type()->name();
  return field.cpp_type_name();
}

// The API's params field of a policy in CacheConfig, or null (FULL has none).
const google::protobuf::FieldDescriptor* ParamsField(CachePolicyKind kind) {
  const char* name = nullptr;
  switch (kind) {
    case CachePolicyKind::kStreamingLlm:
      name = "streaming_llm";
      break;
    case CachePolicyKind::kH2o:
      name = "h2o";
      break;
    case CachePolicyKind::kSnapKv:
      name = "snapkv";
      break;
    case CachePolicyKind::kCascading:
      name = "cascading";
      break;
    case CachePolicyKind::kTreeKv:
      name = "treekv";
      break;
    case CachePolicyKind::kFreqKv:
      name = "freqkv";
      break;
    case CachePolicyKind::kFull:
      return nullptr;
  }
  return v1::CacheConfig::descriptor()->FindFieldByName(name);
}

// One entry per field of the params message `params`, described by the engine's `described` where
// it names the field, else by FallbackDocs()'s "<fallback_prefix>.<field>".
void AddParameters(const google::protobuf::Descriptor& params,
                   std::span<const PolicyParameter> described, const std::string& fallback_prefix,
                   google::protobuf::RepeatedPtrField<v1::PolicyParameter>& out) {
  for (int i = 0; i < params.field_count(); ++i) {
    const auto* param = params.field(i);
    v1::PolicyParameter* p = out.Add();
    p->set_name(param->name());
    p->set_type(TypeName(*param));
    const PolicyParameter* match = nullptr;
    for (const PolicyParameter& candidate : described) {
      if (candidate.name == param->name()) match = &candidate;
    }
    if (match != nullptr) {
      p->set_description(match->description);
      p->set_default_rule(match->default_rule);
    } else if (auto it = FallbackDocs().find(fallback_prefix + "." + param->name());
               it != FallbackDocs().end()) {
      p->set_description(it->second.description);
      p->set_default_rule(it->second.default_rule);
    }
  }
}

v1::CachePolicyInfo DescribePolicy(CachePolicyKind kind, const PolicyDescription* engine) {
  v1::CachePolicyInfo out;
  out.set_policy(ToProtoCachePolicy(kind));
  out.set_served(engine != nullptr && engine->served);
  out.set_summary(engine != nullptr ? engine->summary : "not served by this engine");
  const auto* field = ParamsField(kind);
  if (field == nullptr) return out;
  AddParameters(*field->message_type(),
                engine != nullptr ? std::span<const PolicyParameter>(engine->parameters)
                                  : std::span<const PolicyParameter>(),
                field->name(), *out.mutable_parameters());
  return out;
}

v1::PrefillModeInfo DescribePrefillMode(const PrefillModeDescription& mode) {
  v1::PrefillModeInfo out;
  out.set_mode(mode.mode == PrefillMode::kCritiPrefill ? v1::PrefillConfig::CRITIPREFILL
                                                       : v1::PrefillConfig::DENSE);
  out.set_served(mode.served);
  out.set_summary(mode.summary);
  if (mode.mode == PrefillMode::kCritiPrefill) {
    AddParameters(*v1::CritiPrefillParams::descriptor(), mode.parameters, "critiprefill",
                  *out.mutable_parameters());
  }
  return out;
}

}  // namespace

v1::ModelInfo ToProtoModelInfo(const ModelInfo& info) {
  v1::ModelInfo out;
  out.set_name(info.name);
  out.set_dtype(info.dtype);
  out.set_device(info.device);
  out.set_vocab_size(info.vocab_size);
  out.set_hidden_size(info.hidden_size);
  out.set_num_layers(info.num_layers);
  out.set_num_heads(info.num_heads);
  out.set_num_kv_heads(info.num_kv_heads);
  out.set_head_dim(info.head_dim);
  out.set_context_length(info.context_length);
  out.set_bos_token_id(info.bos_token_id);
  for (int32_t id : info.eos_token_ids) out.add_eos_token_ids(id);
  out.set_kv_pool_bytes(info.kv_pool_bytes);
  out.set_kv_bytes_per_token(info.kv_bytes_per_token);
  out.set_max_new_tokens_limit(info.max_new_tokens_limit);
  for (CachePolicyKind kind :
       {CachePolicyKind::kFull, CachePolicyKind::kStreamingLlm, CachePolicyKind::kH2o,
        CachePolicyKind::kSnapKv, CachePolicyKind::kCascading, CachePolicyKind::kTreeKv,
        CachePolicyKind::kFreqKv}) {
    const PolicyDescription* engine = nullptr;
    for (const PolicyDescription& d : info.cache_policies) {
      if (d.kind == kind) engine = &d;
    }
    *out.add_cache_policies() = DescribePolicy(kind, engine);
  }
  for (const PrefillModeDescription& mode : info.prefill_modes) {
    *out.add_prefill_modes() = DescribePrefillMode(mode);
  }
  return out;
}

}  // namespace kvserve
