// libFuzzer target: any bytes, parsed as a GenerateRequest the way gRPC would hand one to the
// server, go through the server's checks (ValidateGenerateRequest, ValidatePromptIds) and, when
// they pass, the conversion to the engine's GenerationRequest. Besides what ASan and UBSan catch,
// every request the checks let through must convert to one that keeps the API's documented
// limits; a violation aborts with the broken rule (a finding).
#include <absl/strings/match.h>
#include <google/protobuf/descriptor.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kvserve/v1/generation.pb.h"
#include "model/criti_prefill_params.h"
#include "server/request_conversion.h"

namespace kvserve {
namespace {

// stories260K's limits, with the server's --max-new-tokens-limit at 300.
constexpr RequestLimits kLimits = {512, 512, 300};

void Require(bool holds, const char* rule) {
  if (holds) return;
  std::fprintf(stderr, "request_fuzzer: a validated request broke: %s\n", rule);
  std::abort();
}

// What the server's tokenizer would give for a text prompt, without the tokenizer: BOS and one id
// per byte, inside the vocabulary (the ids' values do not matter to the checks, their count does).
std::vector<int32_t> PromptIds(const v1::GenerateRequest& request) {
  if (request.prompt_ids_size() > 0)
    return {request.prompt_ids().begin(), request.prompt_ids().end()};
  std::vector<int32_t> ids = {1};
  for (unsigned char c : request.prompt()) ids.push_back(3 + c);
  return ids;
}

// The params message the request set for its cache policy, or null.
const google::protobuf::Message* CacheParams(const v1::CacheConfig& cache) {
  if (cache.params_case() == v1::CacheConfig::PARAMS_NOT_SET) return nullptr;
  const auto* field = cache.GetDescriptor()->FindFieldByNumber(cache.params_case());
  return &cache.GetReflection()->GetMessage(cache, field);
}

void CheckConverted(const v1::GenerateRequest& request, const GenerationRequest& r) {
  const SamplingParams& s = r.sampling;
  Require(s.max_new_tokens >= 1 && s.max_new_tokens <= kLimits.max_new_tokens_limit,
          "max_new_tokens in [1, limit]");
  Require(std::isfinite(s.temperature) && s.temperature >= 0, "temperature finite and >= 0");
  Require(s.top_k >= 0, "top_k >= 0");
  Require(s.top_p > 0 && s.top_p <= 1, "top_p in (0, 1]");
  Require(s.min_p >= 0 && s.min_p <= 1, "min_p in [0, 1]");
  Require(std::isfinite(s.repetition_penalty) && s.repetition_penalty > 0,
          "repetition_penalty finite and > 0");
  for (int32_t id : s.stop_token_ids)
    Require(id >= 0 && id < kLimits.vocab_size, "stop id in vocab");
  Require(!r.prompt_ids.empty(), "a prompt");
  for (int32_t id : r.prompt_ids) Require(id >= 0 && id < kLimits.vocab_size, "prompt id in vocab");
  Require(r.priority >= 0, "priority >= 0");

  Require(r.cache.kind == ToCachePolicyKind(request.cache().policy()), "the policy kept");
  if (r.cache.kind == CachePolicyKind::kFull) {
    Require(r.cache.budget_tokens == 0 && r.cache.params.empty(), "FULL has no budget or params");
    Require(static_cast<int64_t>(r.prompt_ids.size()) + s.max_new_tokens <= kLimits.context_length,
            "FULL fits the context");
  } else {
    Require(r.cache.budget_tokens >= 1 && r.cache.budget_tokens <= kLimits.context_length,
            "budget in [1, context]");
    Require(ToProtoCachePolicy(r.cache.kind) == request.cache().policy(), "policy round trip");
  }
  // Every parameter is a field of the request's params message, with a value in its range.
  const google::protobuf::Message* params = CacheParams(request.cache());
  for (const auto& [name, value] : r.cache.params) {
    Require(params != nullptr && params->GetDescriptor()->FindFieldByName(name) != nullptr,
            "a parameter of the policy's own message");
    Require(std::isfinite(value) && value >= 0 && value <= kLimits.context_length,
            "a parameter in [0, context]");
  }
  if (r.prefill.mode == PrefillMode::kDense) {
    Require(r.prefill.params.empty(), "no CritiPrefill parameters under DENSE");
  }
  // CritiPrefill's parameters are the engine's to check (their limits are the model's and the
  // engine's): its resolution refuses them naming the field, or gives parameters that hold.
  for (const auto& [name, value] : r.prefill.params) {
    Require(std::isfinite(value), "a finite CritiPrefill parameter");
  }
  if (r.prefill.mode == PrefillMode::kCritiPrefill) {
    auto resolved = ResolveCritiPrefillParams(r.prefill.params, {5, 512});
    if (!resolved.ok()) {
      Require(resolved.status().code() == absl::StatusCode::kInvalidArgument &&
                  absl::StartsWith(resolved.status().message(), "prefill.critiprefill."),
              "CritiPrefill refusals INVALID_ARGUMENT naming the field");
    } else {
      const CritiPrefillParams& p = *resolved;
      Require(p.segment_size >= 1 && p.segment_size <= 512 && p.block_size >= 1 &&
                  p.segment_size % p.block_size == 0 && p.kept_blocks >= 1 && p.first_blocks >= 0 &&
                  p.local_blocks >= 0 && p.first_blocks + p.local_blocks <= p.kept_blocks &&
                  p.dense_prefix_tokens % p.segment_size == 0 && p.dense_layers >= 0 &&
                  p.dense_layers <= 5,
              "resolved CritiPrefill parameters hold");
    }
  }
}

}  // namespace
}  // namespace kvserve

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvserve;
  v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return -1;  // gRPC would refuse it
  const absl::Status valid = ValidateGenerateRequest(request, kLimits);
  if (!valid.ok()) {
    Require(valid.code() == absl::StatusCode::kInvalidArgument && !valid.message().empty(),
            "refusals are INVALID_ARGUMENT with a message");
    return 0;
  }
  std::vector<int32_t> ids = PromptIds(request);
  const absl::Status prompt = ValidatePromptIds(ids, request, kLimits);
  if (!prompt.ok()) {
    Require(prompt.code() == absl::StatusCode::kInvalidArgument,
            "prompt refusals INVALID_ARGUMENT");
    return 0;
  }
  CheckConverted(request, ToGenerationRequest(request, std::move(ids)));
  return 0;
}
