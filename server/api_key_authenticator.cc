#include "server/api_key_authenticator.h"

#include <absl/strings/match.h>
#include <spdlog/spdlog.h>

#include <iterator>
#include <string>

#include "metrics/serving_metrics.h"

namespace kvserve {
namespace {

constexpr std::string_view kAuthorization = "authorization";
constexpr std::string_view kGeneratePath = "/kvserve.v1.Generation/Generate";

std::string_view View(grpc::string_ref s) { return {s.data(), s.size()}; }

}  // namespace

bool ApiKeyAuthenticator::IsOpenMethod(std::string_view path) {
  return path.starts_with("/grpc.health.v1.Health/") ||
         path.starts_with("/grpc.reflection.v1alpha.ServerReflection/") ||
         path.starts_with("/grpc.reflection.v1.ServerReflection/");
}

std::string_view ApiKeyAuthenticator::BearerKey(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(absl::string_view(authorization.data(), kScheme.size()),
                              absl::string_view(kScheme.data(), kScheme.size()))) {
    return {};
  }
  std::string_view key = authorization.substr(kScheme.size());
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  return key;
}

grpc::Status ApiKeyAuthenticator::Process(const InputMetadata& auth_metadata, grpc::AuthContext*,
                                          OutputMetadata* consumed_auth_metadata, OutputMetadata*) {
  std::string_view path;
  if (auto it = auth_metadata.find(":path"); it != auth_metadata.end()) path = View(it->second);
  if (IsOpenMethod(path)) return grpc::Status::OK;

  const auto [first, last] =
      auth_metadata.equal_range(grpc::string_ref(kAuthorization.data(), kAuthorization.size()));
  // Exactly one authorization value: with several, which one a proxy checked is anyone's guess.
  std::string_view key;
  if (first != last && std::next(first) == last) key = BearerKey(View(first->second));
  if (!key.empty() && keys_->Accepts(key)) {
    consumed_auth_metadata->emplace(std::string(kAuthorization), std::string(View(first->second)));
    return grpc::Status::OK;
  }
  // Never the key itself, nor the header's value.
  spdlog::debug("refused {}: {} API key", path, first == last ? "no" : "an invalid");
  if (metrics_ != nullptr && path == kGeneratePath) {
    metrics_->OnRequestRejected(absl::StatusCode::kUnauthenticated);
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "a valid API key is required: send the metadata "
                      "\"authorization: Bearer <key>\"");
}

}  // namespace kvserve
