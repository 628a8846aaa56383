// Access control: every call must carry the metadata "authorization: Bearer <key>" with a key of
// the ApiKeyStore, or it ends at once with UNAUTHENTICATED. The standard services stay open:
// grpc.health.v1.Health (probes, load balancers) and server reflection (tools).
//
// Why an AuthMetadataProcessor rather than a server interceptor: gRPC runs the processor in the
// transport's auth filter, when the call's headers arrive and before the call is handed to any
// service, so a refused call never reaches GenerationService (no reactor, no tokenization, no
// engine request, no stream counted); a C++ server interceptor can only observe a call, not end it
// with a status of its own. It is also deny-by-default: an RPC added later is protected without a
// line of its own. The cost: gRPC runs processors only on secure credentials, so plaintext with
// keys uses gRPC's local credentials, which accept loopback peers only (transport_security.h).
//
// Threads: Process runs on gRPC's threads, inline (it does no I/O: a digest and a lookup).
#pragma once

#include <grpcpp/security/auth_metadata_processor.h>

#include <string_view>

#include "server/api_keys.h"

namespace kvserve {

class ServingMetrics;  // metrics/serving_metrics.h

class ApiKeyAuthenticator final : public grpc::AuthMetadataProcessor {
 public:
  // `keys` must outlive the server. `metrics` (may be null) counts refused Generate calls as
  // request failures with code UNAUTHENTICATED.
  ApiKeyAuthenticator(const ApiKeyStore* keys, ServingMetrics* metrics)
      : keys_(keys), metrics_(metrics) {}

  bool IsBlocking() const override { return false; }

  // OK for an open service or a valid key, which is then removed from the call's metadata (so that
  // no handler can see, log or echo it); UNAUTHENTICATED otherwise.
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

  // Whether the method of `path` ("/package.Service/Method") is served without a key.
  static bool IsOpenMethod(std::string_view path);
  // The key of an "authorization" metadata value "Bearer <key>" (scheme case-insensitive), or
  // empty if the value has another form.
  static std::string_view BearerKey(std::string_view authorization);

 private:
  const ApiKeyStore* const keys_;
  ServingMetrics* const metrics_;
};

}  // namespace kvserve
