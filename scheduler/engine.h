// The engine: one thread that owns the model and runs every admitted request on one device,
// continuously batched (ARCHITECTURE.md). This header is torch-free: the server speaks to the
// engine in plain C++ only.
//
// Threads: Submit, RequestHandle, StopAccepting, CancelAll, model_info and stats may be called from
// any thread. Sinks are called on the engine thread, one event at a time per request, and must
// return quickly without blocking.
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cache/cache_spec.h"

namespace kvserve {

class ServingMetrics;  // metrics/serving_metrics.h

struct SamplingParams {
  int32_t max_new_tokens = 16;
  float temperature = 0.0f;         // 0: greedy (the lowest id among equal maxima)
  int32_t top_k = 0;                // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off
  float repetition_penalty = 1.0f;  // 1: off; as Hugging Face, over prompt and output tokens
  std::optional<uint64_t> seed;     // unset: a random seed
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
};

enum class PrefillMode { kDense, kCritiPrefill };

// How the prompt is prefilled. kCritiPrefill: segment-wise sparse prefill attention
// (prefill_and_heads.md §1; model/criti_prefill_params.h lists the parameters, their defaults and
// their checks). Decode is dense either way, and every prompt token's K/V enters the cache, which
// the cache policy keeps as under DENSE.
struct PrefillSpec {
  PrefillMode mode = PrefillMode::kDense;
  // By name ("segment_size", ...; booleans as 0/1); missing ones take the spec's defaults. Only
  // with kCritiPrefill.
  std::map<std::string, double> params;
};

// A prefill mode, for GetModelInfo.
struct PrefillModeDescription {
  PrefillMode mode = PrefillMode::kDense;
  bool served = false;
  std::string summary;
  std::vector<PolicyParameter> parameters;
};

enum class FinishReason { kNone, kLength, kStop, kEos, kCancelled };

// "length", "stop", "eos", "cancelled", or "none".
const char* FinishReasonName(FinishReason reason);

struct CacheUsage {
  CachePolicyKind policy = CachePolicyKind::kFull;
  int64_t budget_tokens = 0;
  int64_t peak_tokens = 0;
  int64_t evicted_tokens = 0;
  int64_t compression_events = 0;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double time_to_first_token_ms = 0;
  CacheUsage cache;
};

struct GenerationRequest {
  std::string request_id;
  std::vector<int32_t> prompt_ids;  // BOS included when the model wants it
  SamplingParams sampling;
  CacheSpec cache;
  PrefillSpec prefill;
  int32_t priority = 0;  // higher is admitted first; equal priorities in arrival order
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();
};

// One event of a request's stream. The last one has finished = true and the usage; its status is
// OK when finish_reason is LENGTH, STOP or EOS, and says why otherwise (CANCELLED,
// DEADLINE_EXCEEDED, UNAVAILABLE when the engine stops, INTERNAL when the step failed).
struct TokenEvent {
  std::vector<int32_t> token_ids;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  absl::Status status;
  Usage usage;
};

using TokenSink = std::function<void(TokenEvent)>;

// The submitter's hold on a request. Thread-safe.
class RequestHandle {
 public:
  // Ends the request at the engine's next step: finish_reason CANCELLED, status CANCELLED. Its KV
  // memory is returned at once.
  void Cancel() { Request(FinishReason::kCancelled); }
  // Ends the request normally with finish_reason STOP (the server found a stop string). Tokens
  // generated after the call are not sent.
  void Stop() { Request(FinishReason::kStop); }
  // The end asked for, kNone while none was.
  FinishReason requested_end() const { return requested_end_.load(); }

 private:
  void Request(FinishReason reason) {
    FinishReason none = FinishReason::kNone;
    requested_end_.compare_exchange_strong(none, reason);
  }
  std::atomic<FinishReason> requested_end_{FinishReason::kNone};
};

struct EngineConfig {
  std::string model;  // a Hugging Face folder or dummy:NAME
  std::string dtype = "float32";
  std::string device = "cpu";
  // KV pool size: bytes, or (CUDA, when kv_cache_bytes is 0) a fraction of the free device memory.
  int64_t kv_cache_bytes = 1LL << 30;
  double gpu_memory_fraction = 0.9;
  int32_t max_queue = 1024;   // waiting requests; more are refused RESOURCE_EXHAUSTED
  int32_t max_running = 256;  // requests in one step
  // Most prompt tokens of one request per step; CritiPrefill requests' chunks end on their
  // segment boundaries where they can, and their segment_size must not exceed it.
  int32_t prefill_chunk = 512;
  int32_t max_batch_tokens = 4096;      // most tokens (prefill + decode) per step
  int32_t max_new_tokens_limit = 4096;  // the largest max_new_tokens accepted
  // CUDA: replay decode steps from CUDA graphs (one per batch-size bucket); false launches the same
  // kernels eagerly.
  bool cuda_graphs = true;
  // Where the engine records its metrics (admissions, tokens, latencies, steps, queue and pool,
  // cache policies, and the end of every request Submit accepted; not Submit's own errors, which
  // the caller records). nullptr: none. Not owned; must outlive the engine.
  ServingMetrics* metrics = nullptr;
};

struct ModelInfo {
  std::string name;
  std::string dtype;
  std::string device;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t context_length = 0;  // max_position_embeddings: the limit of a FULL request
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
  int64_t kv_pool_bytes = 0;
  int64_t kv_bytes_per_token = 0;
  int32_t max_new_tokens_limit = 0;
  std::vector<PolicyDescription> cache_policies;
  std::vector<PrefillModeDescription> prefill_modes;  // DENSE first
};

struct EngineStats {
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t kv_pool_reserved_bytes = 0;
  int64_t kv_pool_capacity_bytes = 0;
};

class Engine {
 public:
  // Loads the model, sizes the KV pool and starts the engine thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineConfig& config);
  // Ends every request still in flight with UNAVAILABLE and joins the engine thread.
  ~Engine();

  const ModelInfo& model_info() const;
  EngineStats stats() const;

  // Checks the request against the model and the engine's limits and queues it. Errors:
  // INVALID_ARGUMENT naming the field (ids outside the vocabulary, prompt too long for the context
  // under FULL, max_new_tokens out of range, a bad cache spec, a reservation larger than the whole
  // KV pool, a bad prefill spec: "prefill.critiprefill.<name> ..."); UNIMPLEMENTED naming a cache
  // policy or prefill mode not served; RESOURCE_EXHAUSTED
  // when the queue is full; UNAVAILABLE after StopAccepting. On error the sink is never called;
  // on success it gets every event of the request, the last with finished = true.
  absl::StatusOr<std::shared_ptr<RequestHandle>> Submit(GenerationRequest request, TokenSink sink);

  // From now on Submit answers UNAVAILABLE; queued and running requests go on.
  void StopAccepting();
  // Ends every queued and running request with `status` and returns once their sinks have had the
  // final event.
  void CancelAll(const absl::Status& status);

 private:
  class Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvserve
