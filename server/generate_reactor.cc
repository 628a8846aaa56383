#include "server/generate_reactor.h"

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <utility>

#include "metrics/serving_metrics.h"
#include "server/status_mapping.h"

namespace kvserve {
namespace {

// "kvs-<start time in hex>-<n>": unique within a process and unlikely to repeat across restarts.
std::string NewRequestId() {
  static const uint64_t start = static_cast<uint64_t>(
      std::chrono::system_clock::now().time_since_epoch() / std::chrono::milliseconds(1));
  static std::atomic<uint64_t> next{0};
  return absl::StrCat("kvs-", absl::Hex(start), "-", next.fetch_add(1));
}

v1::GenerateResponse::FinishReason ToProtoFinishReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return v1::GenerateResponse::LENGTH;
    case FinishReason::kStop:
      return v1::GenerateResponse::STOP;
    case FinishReason::kEos:
      return v1::GenerateResponse::EOS;
    case FinishReason::kCancelled:
      return v1::GenerateResponse::CANCELLED;
    case FinishReason::kNone:
      break;
  }
  return v1::GenerateResponse::FINISH_REASON_UNSPECIFIED;
}

// The earlier of the client's deadline (on the engine's clock) and `max_request_time` from now
// (zero: none); none when neither is set.
std::optional<std::chrono::steady_clock::time_point> EngineDeadline(
    const grpc::CallbackServerContext& context,
    std::chrono::steady_clock::duration max_request_time) {
  const auto now = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (max_request_time > std::chrono::steady_clock::duration::zero()) {
    deadline = now + max_request_time;
  }
  const auto client = context.deadline();
  if (client >= std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    return deadline;
  }
  const auto client_on_engine_clock =
      now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                client - std::chrono::system_clock::now());
  if (!deadline || client_on_engine_clock < *deadline) deadline = client_on_engine_clock;
  return deadline;
}

}  // namespace

GenerateReactor::GenerateReactor(const GenerationBackend& backend,
                                 grpc::CallbackServerContext* context,
                                 const v1::GenerateRequest* request)
    : backend_(backend), context_(context), request_id_(request->request_id()) {
  backend_.streams->Add();
  if (request_id_.empty()) request_id_ = NewRequestId();
  const absl::Status status = Start(*request);
  if (!status.ok()) {
    // Refused before the engine saw it: this is the request's only info line.
    spdlog::info("[{}] refused: {}", request_id_, status.ToString());
    if (backend_.metrics != nullptr) backend_.metrics->OnRequestRejected(status.code());
    Finish(ToGrpcStatus(status));
  }
}

absl::Status GenerateReactor::Start(const v1::GenerateRequest& request) {
  if (auto s = ValidateGenerateRequest(request, backend_.limits); !s.ok()) return s;
  if (backend_.tokenizer == nullptr && request.prompt_ids_size() == 0) {
    return absl::InvalidArgumentError(
        "prompt needs a tokenizer and this server has none: send "
        "prompt_ids (or start kvserve with --tokenizer)");
  }
  std::vector<int32_t> ids =
      request.prompt_ids_size() > 0
          ? std::vector<int32_t>(request.prompt_ids().begin(), request.prompt_ids().end())
          : backend_.tokenizer->Encode(request.prompt(), /*add_bos=*/true);
  if (auto s = ValidatePromptIds(ids, request, backend_.limits); !s.ok()) return s;

  GenerationRequest engine_request = ToGenerationRequest(request, std::move(ids));
  engine_request.request_id = request_id_;
  engine_request.deadline = EngineDeadline(*context_, backend_.max_request_time);
  if (backend_.tokenizer != nullptr) {
    detokenizer_ = std::make_unique<IncrementalDetokenizer>(*backend_.tokenizer);
  }
  scanner_ = std::make_unique<StopStringScanner>(
      std::vector<std::string>(request.sampling().stop().begin(), request.sampling().stop().end()));
  spdlog::debug("[{}] submitting: {} prompt tokens, max_new_tokens {}, policy {}", request_id_,
                engine_request.prompt_ids.size(), engine_request.sampling.max_new_tokens,
                CachePolicyName(engine_request.cache.kind));

  auto handle = backend_.engine->Submit(std::move(engine_request),
                                        [this](TokenEvent event) { OnEvent(std::move(event)); });
  if (!handle.ok()) return handle.status();
  // Events may already have arrived; a cancel or stop asked for meanwhile is passed on now.
  std::shared_ptr<RequestHandle> h = *handle;
  bool cancel = false;
  bool stop = false;
  {
    std::lock_guard lock(mutex_);
    handle_ = h;
    cancel = cancelled_;
    stop = stop_wanted_;
  }
  if (cancel) h->Cancel();
  if (stop) h->Stop();
  return absl::OkStatus();
}

void GenerateReactor::OnEvent(TokenEvent event) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
    if (busy_) return;  // the owner picks it up
    busy_ = true;
  }
  Pump();
}

void GenerateReactor::Pump() {
  while (true) {
    std::deque<TokenEvent> events;
    {
      std::lock_guard lock(mutex_);
      if (events_.empty()) {
        busy_ = false;
        return;  // nothing of `this` may be touched from here on
      }
      events.swap(events_);
    }
    const bool has_message = Build(events) && !broken_;
    if (has_message) {
      StartWrite(&out_);  // busy_ stays set until OnWriteDone
      return;
    }
    if (finish_after_write_) {
      Close(*finish_after_write_);
      return;
    }
  }
}

bool GenerateReactor::Build(std::deque<TokenEvent>& events) {
  out_.Clear();
  out_.set_request_id(request_id_);
  bool final_message = false;
  for (const TokenEvent& event : events) {
    for (int32_t id : event.token_ids) AddToken(id);
    if (event.finished) {
      Finalize(event);
      final_message = event.status.ok();
    }
  }
  return out_.token_ids_size() > 0 || !out_.text().empty() || final_message;
}

void GenerateReactor::AddToken(int32_t id) {
  if (stopped_) return;  // generated after the stop string; never sent
  out_.add_token_ids(id);
  ++sent_tokens_;
  StopStringScanner::Result piece = scanner_->Push(detokenizer_ ? detokenizer_->Push(id) : "");
  out_.mutable_text()->append(piece.text);
  if (!piece.stopped) return;
  stopped_ = true;
  std::shared_ptr<RequestHandle> handle;
  {
    std::lock_guard lock(mutex_);
    handle = handle_;
    stop_wanted_ = true;
  }
  if (handle) handle->Stop();
}

void GenerateReactor::Finalize(const TokenEvent& event) {
  if (!event.status.ok()) {
    finish_after_write_ = ToGrpcStatus(event.status);
    return;
  }
  if (!stopped_) {
    StopStringScanner::Result rest = scanner_->Push(detokenizer_ ? detokenizer_->Flush() : "");
    out_.mutable_text()->append(rest.text);
    stopped_ = rest.stopped;
    out_.mutable_text()->append(scanner_->Flush());
  }
  out_.set_finish_reason(stopped_ ? v1::GenerateResponse::STOP
                                  : ToProtoFinishReason(event.finish_reason));
  v1::Usage* usage = out_.mutable_usage();
  usage->set_prompt_tokens(event.usage.prompt_tokens);
  usage->set_completion_tokens(sent_tokens_);
  usage->set_time_to_first_token_ms(event.usage.time_to_first_token_ms);
  v1::CacheUsage* cache = usage->mutable_cache();
  cache->set_policy(ToProtoCachePolicy(event.usage.cache.policy));
  cache->set_budget_tokens(event.usage.cache.budget_tokens);
  cache->set_peak_tokens(event.usage.cache.peak_tokens);
  cache->set_evicted_tokens(event.usage.cache.evicted_tokens);
  cache->set_compression_events(event.usage.cache.compression_events);
  finish_after_write_ = grpc::Status::OK;
}

void GenerateReactor::OnWriteDone(bool ok) {
  if (!ok && !broken_) {
    // The client is gone: stop the engine request; its final event still ends the call.
    broken_ = true;
    std::shared_ptr<RequestHandle> handle;
    {
      std::lock_guard lock(mutex_);
      handle = handle_;
      cancelled_ = true;
    }
    if (handle) handle->Cancel();
  }
  if (finish_after_write_) {
    Close(*finish_after_write_);
    return;
  }
  Pump();
}

void GenerateReactor::OnCancel() {
  std::shared_ptr<RequestHandle> handle;
  {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
    handle = handle_;
  }
  if (handle) handle->Cancel();
}

void GenerateReactor::Close(const grpc::Status& status) {
  // The engine logged the request's info line; this one is detail.
  spdlog::debug("[{}] stream ended: code {} after {} tokens{}", request_id_,
                static_cast<int>(status.error_code()), sent_tokens_,
                status.ok() ? "" : absl::StrCat(": ", status.error_message()));
  Finish(status);
}

void GenerateReactor::OnDone() {
  StreamCounter* streams = backend_.streams;
  delete this;
  streams->Remove();
}

}  // namespace kvserve
