#include "server/request_conversion.h"

#include <google/protobuf/descriptor.h>

#include <utility>

namespace kvserve {

int32_t MaxNewTokensOf(const v1::SamplingParams& sampling) {
  return sampling.has_max_new_tokens() ? sampling.max_new_tokens() : 16;
}

SamplingParams ToSamplingParams(const v1::SamplingParams& s) {
  SamplingParams p;
  p.max_new_tokens = MaxNewTokensOf(s);
  p.temperature = s.has_temperature() ? s.temperature() : 1.0f;
  p.top_k = s.top_k();
  p.top_p = s.has_top_p() ? s.top_p() : 1.0f;
  p.min_p = s.min_p();
  p.repetition_penalty = s.has_repetition_penalty() ? s.repetition_penalty() : 1.0f;
  if (s.has_seed()) p.seed = s.seed();
  p.stop_token_ids.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
  p.ignore_eos = s.ignore_eos();
  return p;
}

CachePolicyKind ToCachePolicyKind(v1::CacheConfig::CachePolicy policy) {
  switch (policy) {
    case v1::CacheConfig::STREAMING_LLM:
      return CachePolicyKind::kStreamingLlm;
    case v1::CacheConfig::H2O:
      return CachePolicyKind::kH2o;
    case v1::CacheConfig::SNAPKV:
      return CachePolicyKind::kSnapKv;
    case v1::CacheConfig::CASCADING:
      return CachePolicyKind::kCascading;
    case v1::CacheConfig::TREEKV:
      return CachePolicyKind::kTreeKv;
    case v1::CacheConfig::FREQKV:
      return CachePolicyKind::kFreqKv;
    default:
      return CachePolicyKind::kFull;  // FULL and UNSPECIFIED
  }
}

v1::CacheConfig::CachePolicy ToProtoCachePolicy(CachePolicyKind kind) {
  switch (kind) {
    case CachePolicyKind::kFull:
      return v1::CacheConfig::FULL;
    case CachePolicyKind::kStreamingLlm:
      return v1::CacheConfig::STREAMING_LLM;
    case CachePolicyKind::kH2o:
      return v1::CacheConfig::H2O;
    case CachePolicyKind::kSnapKv:
      return v1::CacheConfig::SNAPKV;
    case CachePolicyKind::kCascading:
      return v1::CacheConfig::CASCADING;
    case CachePolicyKind::kTreeKv:
      return v1::CacheConfig::TREEKV;
    case CachePolicyKind::kFreqKv:
      return v1::CacheConfig::FREQKV;
  }
  return v1::CacheConfig::CACHE_POLICY_UNSPECIFIED;
}

std::map<std::string, double> ParamsFromProto(const google::protobuf::Message& params) {
  using google::protobuf::FieldDescriptor;
  const auto* reflection = params.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(params, &fields);  // set optional fields, non-zero plain ones
  std::map<std::string, double> out;
  for (const FieldDescriptor* field : fields) {
    double value = 0;
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        value = reflection->GetInt32(params, field);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        value = static_cast<double>(reflection->GetInt64(params, field));
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        value = reflection->GetDouble(params, field);
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        value = reflection->GetFloat(params, field);
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        value = reflection->GetBool(params, field) ? 1 : 0;
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        value = reflection->GetEnumValue(params, field);
        break;
      default:
        continue;  // the params messages hold scalars only
    }
    out[field->name()] = value;
  }
  return out;
}

GenerationRequest ToGenerationRequest(const v1::GenerateRequest& request,
                                      std::vector<int32_t> prompt_ids) {
  GenerationRequest r;
  r.request_id = request.request_id();
  r.prompt_ids = std::move(prompt_ids);
  r.sampling = ToSamplingParams(request.sampling());
  const v1::CacheConfig& cache = request.cache();
  r.cache.kind = ToCachePolicyKind(cache.policy());
  r.cache.budget_tokens = cache.budget_tokens();
  if (cache.params_case() != v1::CacheConfig::PARAMS_NOT_SET) {
    const auto* field = cache.GetDescriptor()->FindFieldByNumber(cache.params_case());
    r.cache.params = ParamsFromProto(cache.GetReflection()->GetMessage(cache, field));
  }
  const v1::PrefillConfig& prefill = request.prefill();
  r.prefill.mode = prefill.mode() == v1::PrefillConfig::CRITIPREFILL ? PrefillMode::kCritiPrefill
                                                                     : PrefillMode::kDense;
  if (prefill.has_critiprefill()) r.prefill.params = ParamsFromProto(prefill.critiprefill());
  r.priority = request.priority();
  return r;
}

}  // namespace kvserve
