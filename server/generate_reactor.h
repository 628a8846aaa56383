// One Generate call: a small state machine on gRPC's callback API (house style: gRPC's
// route_guide_callback_server). The constructor validates, tokenizes and submits; the engine's sink
// (engine thread) only queues events; Pump turns queued events into one message at a time (tokens
// coalesce while a write is in flight), OnWriteDone drives the next one, OnCancel cancels the
// engine request, OnDone deletes the reactor. No call blocks a gRPC thread or the engine thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "kvserve/v1/generation.pb.h"
#include "scheduler/engine.h"
#include "server/request_conversion.h"
#include "server/stop_string_scanner.h"
#include "server/stream_counter.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {

class ServingMetrics;  // metrics/serving_metrics.h

// What every Generate call needs; owned by the service, outlives every reactor.
struct GenerationBackend {
  Engine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;  // null: prompt_ids only, no text
  RequestLimits limits;
  StreamCounter* streams = nullptr;
  // Counts the calls refused before the engine accepted them (the engine counts the rest). Null:
  // no metrics.
  ServingMetrics* metrics = nullptr;
  // A call's longest run, from its arrival; zero: no limit but the client's deadline.
  std::chrono::steady_clock::duration max_request_time{};
};

class GenerateReactor : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  // Starts the call; on a bad request it finishes at once with the error.
  GenerateReactor(const GenerationBackend& backend, grpc::CallbackServerContext* context,
                  const v1::GenerateRequest* request);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // Validates, tokenizes and submits to the engine.
  absl::Status Start(const v1::GenerateRequest& request);
  // Engine thread: queues the event and starts a write if none is in flight.
  void OnEvent(TokenEvent event);
  // Whoever holds `busy_` owns out_, detokenizer_, scanner_ and the finish state.
  void Pump();
  // Turns events into out_; returns whether out_ holds anything to send.
  bool Build(std::deque<TokenEvent>& events);
  void AddToken(int32_t id);
  void Finalize(const TokenEvent& event);
  void Close(const grpc::Status& status);

  const GenerationBackend backend_;
  grpc::CallbackServerContext* const context_;
  std::string request_id_;

  std::mutex mutex_;
  std::deque<TokenEvent> events_;          // guarded by mutex_
  std::shared_ptr<RequestHandle> handle_;  // guarded by mutex_
  bool cancelled_ = false;                 // guarded by mutex_: OnCancel ran or the client left
  bool stop_wanted_ = false;               // guarded by mutex_: a stop string was found
  bool busy_ = false;                      // guarded by mutex_: a pump or a write owns the state

  // Owned by the holder of busy_.
  v1::GenerateResponse out_;
  std::unique_ptr<IncrementalDetokenizer> detokenizer_;
  std::unique_ptr<StopStringScanner> scanner_;
  bool stopped_ = false;  // a stop string was found; later tokens are dropped
  bool broken_ = false;   // a write failed: the client is gone, nothing more is sent
  int64_t sent_tokens_ = 0;
  std::optional<grpc::Status> finish_after_write_;
};

}  // namespace kvserve
