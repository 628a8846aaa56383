// The kvserve.v1.Generation service on gRPC's callback API. Generate runs one GenerateReactor per
// call; Tokenize and GetModelInfo answer inline (no engine work). Thread-safe; the engine and the
// tokenizer must outlive the service and every call it started.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "kvserve/v1/generation.grpc.pb.h"
#include "scheduler/engine.h"
#include "server/generate_reactor.h"
#include "server/stream_counter.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {

class GenerationService final : public v1::Generation::CallbackService {
 public:
  // `metrics` (may be null) counts the calls refused before reaching the engine. Every Generate
  // call ends with DEADLINE_EXCEEDED after `max_request_time` (zero: no limit) or at the client's
  // deadline, whichever comes first.
  GenerationService(Engine* engine, const Tokenizer* tokenizer, ServingMetrics* metrics = nullptr,
                    std::chrono::steady_clock::duration max_request_time = {});

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

  // Generate streams not yet done; shutdown waits on it.
  StreamCounter& streams() { return streams_; }

 private:
  StreamCounter streams_;
  GenerationBackend backend_;
  v1::ModelInfo model_info_;
};

}  // namespace kvserve
