// gRPC client helpers for the end-to-end tests: every call has a deadline.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "kvserve/v1/generation.grpc.pb.h"

namespace kvserve::testing {

// What one Generate stream gave.
struct StreamResult {
  grpc::Status status;
  std::vector<int32_t> token_ids;
  std::string text;
  int messages = 0;
  bool ids_echoed = true;  // every message carried the request's id
  v1::GenerateResponse::FinishReason finish_reason =
      v1::GenerateResponse::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
};

// A channel of its own connection (not shared with other channels to the same address), plaintext
// unless `credentials` say otherwise.
inline std::shared_ptr<grpc::Channel> NewChannel(
    const std::string& address,
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials()) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, credentials, args);
}

inline std::unique_ptr<v1::Generation::Stub> NewGenerationStub(const std::string& address) {
  return v1::Generation::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

inline void SetTimeout(grpc::ClientContext& context, std::chrono::milliseconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
}

// The metadata of kvserve's access control (--api-keys-file); none when `api_key` is empty.
inline void SetApiKey(grpc::ClientContext& context, const std::string& api_key) {
  if (!api_key.empty()) context.AddMetadata("authorization", "Bearer " + api_key);
}

// Runs one stream to its end. `on_message` (optional) sees each message as it arrives. REQUIRES:
// `context` has a deadline.
inline StreamResult ReadStream(
    v1::Generation::Stub& stub, grpc::ClientContext& context, const v1::GenerateRequest& request,
    const std::function<void(const v1::GenerateResponse&)>& on_message = nullptr) {
  StreamResult result;
  auto reader = stub.Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    ++result.messages;
    if (!request.request_id().empty() && response.request_id() != request.request_id()) {
      result.ids_echoed = false;
    }
    result.token_ids.insert(result.token_ids.end(), response.token_ids().begin(),
                            response.token_ids().end());
    result.text += response.text();
    if (response.finish_reason() != v1::GenerateResponse::FINISH_REASON_UNSPECIFIED) {
      result.finish_reason = response.finish_reason();
      result.usage = response.usage();
    }
    if (on_message) on_message(response);
  }
  result.status = reader->Finish();
  return result;
}

// One stream with a fresh context, `timeout` and, when not empty, `api_key`.
inline StreamResult Generate(v1::Generation::Stub& stub, const v1::GenerateRequest& request,
                             std::chrono::milliseconds timeout = std::chrono::seconds(60),
                             const std::string& api_key = "") {
  grpc::ClientContext context;
  SetTimeout(context, timeout);
  SetApiKey(context, api_key);
  return ReadStream(stub, context, request);
}

// A greedy request for `ids` that ignores EOS.
inline v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& ids, int32_t max_new_tokens) {
  v1::GenerateRequest request;
  for (int32_t id : ids) request.add_prompt_ids(id);
  request.mutable_sampling()->set_max_new_tokens(max_new_tokens);
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_ignore_eos(true);
  return request;
}

// The health service's answer for the whole server ("" service), with a 2 s deadline.
inline grpc::health::v1::HealthCheckResponse::ServingStatus HealthStatus(
    std::shared_ptr<grpc::Channel> channel) {
  auto stub = grpc::health::v1::Health::NewStub(std::move(channel));
  grpc::ClientContext context;
  SetTimeout(context, std::chrono::seconds(2));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  if (!stub->Check(&context, request, &response).ok()) {
    return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  }
  return response.status();
}

// The same, on a plaintext channel to `address`.
inline grpc::health::v1::HealthCheckResponse::ServingStatus HealthStatus(
    const std::string& address) {
  return HealthStatus(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

}  // namespace kvserve::testing
