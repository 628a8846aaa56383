// The checks of request_conversion.h: one function per part of the request, each error naming the
// field as a client would write it ("sampling.top_p", "cache.h2o.heavy_tokens").
#include <absl/strings/str_cat.h>
#include <google/protobuf/descriptor.h>

#include <cmath>
#include <string>

#include "server/request_conversion.h"

namespace kvserve {
namespace {

constexpr int kMaxRequestIdBytes = 128;
constexpr int kMaxStopStrings = 16;
constexpr int kMaxStopStringBytes = 256;
constexpr int kMaxStopTokenIds = 64;

absl::Status Bad(const std::string& message) { return absl::InvalidArgumentError(message); }

absl::Status ValidateInput(const v1::GenerateRequest& r) {
  if (!r.prompt().empty() && r.prompt_ids_size() > 0) {
    return Bad("prompt and prompt_ids are both set; set exactly one");
  }
  if (r.prompt().empty() && r.prompt_ids_size() == 0) {
    return Bad("prompt must not be empty (set prompt or prompt_ids)");
  }
  if (r.request_id().size() > kMaxRequestIdBytes) {
    return Bad(absl::StrCat("request_id must be at most ", kMaxRequestIdBytes, " bytes, got ",
                            r.request_id().size()));
  }
  for (char c : r.request_id()) {
    if (c < 0x21 || c > 0x7e) return Bad("request_id must be printable ASCII without spaces");
  }
  if (r.priority() < 0) return Bad(absl::StrCat("priority must be >= 0, got ", r.priority()));
  return absl::OkStatus();
}

absl::Status ValidateSampling(const v1::SamplingParams& s, const RequestLimits& limits) {
  const int32_t max_new = MaxNewTokensOf(s);
  if (max_new < 1 || max_new > limits.max_new_tokens_limit) {
    return Bad(absl::StrCat("sampling.max_new_tokens must be in [1, ", limits.max_new_tokens_limit,
                            "], got ", max_new));
  }
  if (s.has_temperature() && !(std::isfinite(s.temperature()) && s.temperature() >= 0)) {
    return Bad(
        absl::StrCat("sampling.temperature must be a finite number >= 0, got ", s.temperature()));
  }
  if (s.top_k() < 0) return Bad(absl::StrCat("sampling.top_k must be >= 0, got ", s.top_k()));
  if (s.has_top_p() && !(s.top_p() > 0 && s.top_p() <= 1)) {
    return Bad(absl::StrCat("sampling.top_p must be in (0, 1], got ", s.top_p()));
  }
  if (!(s.min_p() >= 0 && s.min_p() <= 1)) {
    return Bad(absl::StrCat("sampling.min_p must be in [0, 1], got ", s.min_p()));
  }
  if (s.has_repetition_penalty() &&
      !(std::isfinite(s.repetition_penalty()) && s.repetition_penalty() > 0)) {
    return Bad(absl::StrCat("sampling.repetition_penalty must be a finite number > 0, got ",
                            s.repetition_penalty()));
  }
  if (s.stop_size() > kMaxStopStrings) {
    return Bad(absl::StrCat("sampling.stop must hold at most ", kMaxStopStrings, " strings, got ",
                            s.stop_size()));
  }
  for (int i = 0; i < s.stop_size(); ++i) {
    const size_t n = s.stop(i).size();
    if (n < 1 || n > kMaxStopStringBytes) {
      return Bad(absl::StrCat("sampling.stop[", i, "] must be 1 to ", kMaxStopStringBytes,
                              " bytes long, got ", n));
    }
  }
  if (s.stop_token_ids_size() > kMaxStopTokenIds) {
    return Bad(absl::StrCat("sampling.stop_token_ids must hold at most ", kMaxStopTokenIds,
                            " ids, got ", s.stop_token_ids_size()));
  }
  for (int i = 0; i < s.stop_token_ids_size(); ++i) {
    const int32_t id = s.stop_token_ids(i);
    if (id < 0 || id >= limits.vocab_size) {
      return Bad(absl::StrCat("sampling.stop_token_ids[", i, "] = ", id,
                              " is outside the vocabulary [0, ", limits.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

// Generic checks of a cache policy's params message by reflection: integers in [0, context],
// doubles in [0, 1], enums one of their named values. `path` is its field path.
absl::Status ValidateParams(const google::protobuf::Message& params, const std::string& path,
                            const RequestLimits& limits) {
  using google::protobuf::FieldDescriptor;
  const auto* reflection = params.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(params, &fields);
  for (const FieldDescriptor* field : fields) {
    const std::string name = absl::StrCat(path, ".", field->name());
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT64: {
        const int64_t v = reflection->GetInt64(params, field);
        if (v < 0 || v > limits.context_length) {
          return Bad(absl::StrCat(name, " must be in [0, ", limits.context_length, "], got ", v));
        }
        break;
      }
      case FieldDescriptor::CPPTYPE_DOUBLE: {
        const double v = reflection->GetDouble(params, field);
        if (!(v >= 0 && v <= 1)) return Bad(absl::StrCat(name, " must be in [0, 1], got ", v));
        break;
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        const int v = reflection->GetEnumValue(params, field);
        if (field->enum_type()->FindValueByNumber(v) == nullptr) {
          return Bad(absl::StrCat(name, " has no value ", v));
        }
        break;
      }
      default:
        break;  // booleans need no check
    }
  }
  return absl::OkStatus();
}

// The params case that belongs to each compressed policy.
v1::CacheConfig::ParamsCase ParamsCaseOf(v1::CacheConfig::CachePolicy policy) {
  switch (policy) {
    case v1::CacheConfig::STREAMING_LLM:
      return v1::CacheConfig::kStreamingLlm;
    case v1::CacheConfig::H2O:
      return v1::CacheConfig::kH2O;
    case v1::CacheConfig::SNAPKV:
      return v1::CacheConfig::kSnapkv;
    case v1::CacheConfig::CASCADING:
      return v1::CacheConfig::kCascading;
    case v1::CacheConfig::TREEKV:
      return v1::CacheConfig::kTreekv;
    case v1::CacheConfig::FREQKV:
      return v1::CacheConfig::kFreqkv;
    default:
      return v1::CacheConfig::PARAMS_NOT_SET;
  }
}

absl::Status ValidateCache(const v1::CacheConfig& c, const RequestLimits& limits) {
  if (!v1::CacheConfig::CachePolicy_IsValid(c.policy())) {
    return Bad(absl::StrCat("cache.policy has no value ", static_cast<int>(c.policy())));
  }
  const CachePolicyKind kind = ToCachePolicyKind(c.policy());
  const std::string policy_name = CachePolicyName(kind);
  if (kind == CachePolicyKind::kFull) {
    if (c.budget_tokens() != 0) {
      return Bad(absl::StrCat("cache.budget_tokens must be 0 under cache.policy FULL, got ",
                              c.budget_tokens()));
    }
  } else if (c.budget_tokens() < 1 || c.budget_tokens() > limits.context_length) {
    return Bad(absl::StrCat("cache.budget_tokens must be in [1, ", limits.context_length,
                            "] under cache.policy ", policy_name, ", got ", c.budget_tokens()));
  }
  if (c.params_case() == v1::CacheConfig::PARAMS_NOT_SET) return absl::OkStatus();
  const auto* field = c.GetDescriptor()->FindFieldByNumber(static_cast<int>(c.params_case()));
  if (c.params_case() != ParamsCaseOf(c.policy())) {
    return Bad(absl::StrCat("cache.", field->name(), " is set but cache.policy is ", policy_name));
  }
  return ValidateParams(c.GetReflection()->GetMessage(c, field),
                        absl::StrCat("cache.", field->name()), limits);
}

absl::Status ValidatePrefill(const v1::PrefillConfig& p) {
  if (!v1::PrefillConfig::PrefillMode_IsValid(p.mode())) {
    return Bad(absl::StrCat("prefill.mode has no value ", static_cast<int>(p.mode())));
  }
  if (!p.has_critiprefill()) return absl::OkStatus();
  if (p.mode() != v1::PrefillConfig::CRITIPREFILL) {
    return Bad(absl::StrCat("prefill.critiprefill is set but prefill.mode is ",
                            v1::PrefillConfig::PrefillMode_Name(p.mode())));
  }
  // CritiPrefill's parameters are checked where their limits are known, by the engine at Submit
  // (model/criti_prefill_params.h, the same INVALID_ARGUMENT naming the field): they are not the
  // context's (dense_prefix_tokens may exceed it under a compressed policy; its default 4096 does
  // on small models).
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateGenerateRequest(const v1::GenerateRequest& request,
                                     const RequestLimits& limits) {
  if (auto s = ValidateInput(request); !s.ok()) return s;
  if (auto s = ValidateSampling(request.sampling(), limits); !s.ok()) return s;
  if (auto s = ValidateCache(request.cache(), limits); !s.ok()) return s;
  return ValidatePrefill(request.prefill());
}

absl::Status ValidatePromptIds(std::span<const int32_t> ids, const v1::GenerateRequest& request,
                               const RequestLimits& limits) {
  if (ids.empty()) return Bad("prompt must not be empty: it has no tokens");
  const char* field = request.prompt_ids_size() > 0 ? "prompt_ids" : "prompt ids";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= limits.vocab_size) {
      return Bad(absl::StrCat(field, "[", i, "] = ", ids[i], " is outside the vocabulary [0, ",
                              limits.vocab_size, ")"));
    }
  }
  const int64_t prompt = static_cast<int64_t>(ids.size());
  const int64_t max_new = MaxNewTokensOf(request.sampling());
  if (ToCachePolicyKind(request.cache().policy()) == CachePolicyKind::kFull &&
      prompt + max_new > limits.context_length) {
    return Bad(absl::StrCat("prompt (", prompt, " tokens) + sampling.max_new_tokens (", max_new,
                            ") exceeds the model's context of ", limits.context_length,
                            " tokens under cache.policy FULL"));
  }
  return absl::OkStatus();
}

}  // namespace kvserve
