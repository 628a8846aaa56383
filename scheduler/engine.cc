// The engine thread: admit → plan → execute (one model call) → commit (sample, emit, finish).
#include "scheduler/engine.h"

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "cache/kv_pool.h"
#include "cache/policy_factory.h"
#include "model/criti_prefill_attention.h"
#include "model/device_memory.h"
#include "model/llama_model.h"
#include "scheduler/engine_metrics.h"
#include "scheduler/sampler.h"
#include "scheduler/step_planner.h"
#include "scheduler/timed_policy.h"

namespace kvserve {
namespace {

using Clock = std::chrono::steady_clock;

double MillisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::vector<PrefillModeDescription> DescribePrefillModes() {
  return {{PrefillMode::kDense, true, "dense causal attention over the whole prompt", {}},
          {PrefillMode::kCritiPrefill, true,
           "segment-wise sparse prefill attention: each query segment reads the key blocks its "
           "criticality scores rank highest (CritiPrefill); decode stays dense",
           DescribeCritiPrefillParams()}};
}

}  // namespace

// A request from Submit to its final event. Created on the submitting thread without tensors; its
// cache is allocated on the engine thread at admission.
struct EngineRequest {
  GenerationRequest request;
  TokenSink sink;
  std::shared_ptr<RequestHandle> handle;
  std::unique_ptr<TimedCachePolicy> policy;
  std::string policy_name;  // the metrics' policy label
  int64_t reserved_bytes = 0;
  uint64_t sequence = 0;  // arrival order, for stable priority ordering
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<Sampler> sampler;
  // CRITIPREFILL requests only (made at Submit; it holds no tensor until the first sparse layer).
  std::unique_ptr<CritiPrefillSequence> critiprefill;
  int64_t prefilled = 0;
  std::vector<int32_t> generated;
  RequestTimes times;
};

class Engine::Impl {
 public:
  Impl(const EngineConfig& config, std::unique_ptr<LlamaModel> model, int64_t pool_bytes)
      : config_(config), model_(std::move(model)), pool_(pool_bytes), metrics_(config.metrics) {
    const ModelConfig& c = model_->config();
    info_ = {c.name,
             DtypeName(model_->options().dtype),
             model_->options().device.str(),
             c.vocab_size,
             c.hidden_size,
             c.num_layers,
             c.num_heads,
             c.num_kv_heads,
             c.head_dim,
             c.max_position_embeddings,
             c.bos_token_id,
             c.eos_token_ids,
             pool_bytes,
             model_->cache_shape().BytesPerToken(),
             config.max_new_tokens_limit,
             DescribeCachePolicies(),
             DescribePrefillModes()};
    metrics_.State(stats());
    thread_ = std::thread([this] { Run(); });
  }

  ~Impl() {
    CancelAll(absl::UnavailableError("the engine is shutting down"));
    {
      std::lock_guard lock(mutex_);
      exiting_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  const ModelInfo& info() const { return info_; }

  EngineStats stats() const {
    std::lock_guard lock(mutex_);
    return StatsLocked();
  }

  absl::StatusOr<std::shared_ptr<RequestHandle>> Submit(GenerationRequest request, TokenSink sink) {
    auto prepared = Prepare(std::move(request));
    if (!prepared.ok()) return prepared.status();
    auto entry = std::move(*prepared);
    entry->sink = std::move(sink);
    auto handle = entry->handle;
    {
      std::lock_guard lock(mutex_);
      if (!accepting_) return absl::UnavailableError("the server is draining");
      if (static_cast<int32_t>(waiting_.size()) >= config_.max_queue) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the waiting queue is full (", config_.max_queue, " requests)"));
      }
      entry->sequence = next_sequence_++;
      waiting_.push_back(std::move(entry));
    }
    wake_.notify_all();
    return handle;
  }

  void StopAccepting() {
    std::lock_guard lock(mutex_);
    accepting_ = false;
  }

  void CancelAll(const absl::Status& status) {
    std::unique_lock lock(mutex_);
    cancel_all_ = status;
    wake_.notify_all();
    idle_.wait(lock, [&] { return waiting_.empty() && running_count_ == 0; });
    cancel_all_.reset();
  }

 private:
  // REQUIRES: mutex_ held.
  EngineStats StatsLocked() const {
    return {static_cast<int64_t>(running_count_), static_cast<int64_t>(waiting_.size()),
            pool_.reserved_bytes(), pool_.capacity_bytes()};
  }

  // Everything Submit can check without the engine thread.
  absl::StatusOr<std::unique_ptr<EngineRequest>> Prepare(GenerationRequest request) {
    const int64_t prompt = static_cast<int64_t>(request.prompt_ids.size());
    if (prompt == 0) return absl::InvalidArgumentError("prompt must not be empty");
    for (int64_t i = 0; i < prompt; ++i) {
      const int32_t id = request.prompt_ids[i];
      if (id < 0 || id >= info_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("prompt_ids[", i, "] = ", id,
                                                       " is outside the vocabulary [0, ",
                                                       info_.vocab_size, ")"));
      }
    }
    if (auto s = ValidateSamplingParams(request.sampling, config_.max_new_tokens_limit); !s.ok()) {
      return s;
    }
    auto critiprefill = MakeCritiPrefill(request.prefill, prompt);
    if (!critiprefill.ok()) return critiprefill.status();
    const int64_t max_new = request.sampling.max_new_tokens;
    if (request.cache.kind == CachePolicyKind::kFull && prompt + max_new > info_.context_length) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt (", prompt, " tokens) + sampling.max_new_tokens (", max_new,
                       ") exceeds the model's context of ", info_.context_length,
                       " tokens under cache.policy FULL"));
    }
    auto policy = MakeCachePolicy(request.cache, {prompt, max_new});
    if (!policy.ok()) return policy.status();
    auto entry = std::make_unique<EngineRequest>();
    entry->reserved_bytes =
        (*policy)->ReservedTokens(config_.prefill_chunk) * info_.kv_bytes_per_token;
    if (entry->reserved_bytes > pool_.capacity_bytes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the request needs ", entry->reserved_bytes,
                       " bytes of KV cache, more than the whole pool (", pool_.capacity_bytes(),
                       " bytes): lower sampling.max_new_tokens or the prompt"));
    }
    entry->policy = std::make_unique<TimedCachePolicy>(std::move(*policy));
    entry->policy_name = CachePolicyName(request.cache.kind);
    entry->critiprefill = std::move(*critiprefill);
    entry->times.arrival = request.arrival;
    entry->handle = std::make_shared<RequestHandle>();
    entry->request = std::move(request);
    return entry;
  }

  // The request's CritiPrefill state, or null under DENSE. INVALID_ARGUMENT naming the field.
  absl::StatusOr<std::unique_ptr<CritiPrefillSequence>> MakeCritiPrefill(const PrefillSpec& spec,
                                                                         int64_t prompt) const {
    if (spec.mode == PrefillMode::kDense) {
      if (spec.params.empty()) return nullptr;
      return absl::InvalidArgumentError("prefill.critiprefill is set but prefill.mode is DENSE");
    }
    auto params = ResolveCritiPrefillParams(spec.params, {info_.num_layers, config_.prefill_chunk});
    if (!params.ok()) return params.status();
    auto sequence = std::make_unique<CritiPrefillSequence>();
    sequence->params = *params;
    sequence->prompt_tokens = prompt;
    return sequence;
  }

  void Run() {
    while (true) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return exiting_ || !waiting_.empty() || !running_.empty(); });
        if (exiting_ && waiting_.empty() && running_.empty()) return;
        if (cancel_all_) EndAllLocked(*cancel_all_);
        Admit();
        running_count_ = running_.size();
      }
      EndRequestedOrExpired();
      if (!running_.empty()) Step();
      {
        std::lock_guard lock(mutex_);
        running_count_ = running_.size();
        metrics_.State(StatsLocked());
        if (waiting_.empty() && running_.empty()) idle_.notify_all();
      }
    }
  }

  // Moves waiting requests to running by priority while the pool and the batch have room.
  // REQUIRES: mutex_ held.
  void Admit() {
    while (!waiting_.empty() && static_cast<int32_t>(running_.size()) < config_.max_running) {
      auto best =
          std::min_element(waiting_.begin(), waiting_.end(), [](const auto& a, const auto& b) {
            if (a->request.priority != b->request.priority)
              return a->request.priority > b->request.priority;
            return a->sequence < b->sequence;
          });
      EngineRequest& r = **best;
      if (r.handle->requested_end() != FinishReason::kNone || Expired(r)) {
        running_.push_back(std::move(*best));  // ended at once by EndRequestedOrExpired
        waiting_.erase(best);
        continue;
      }
      if (!pool_.TryReserve(r.reserved_bytes)) break;  // head of line waits; no overtaking
      try {
        r.cache = std::make_unique<KvCache>(model_->cache_shape(),
                                            r.policy->Capacity(config_.prefill_chunk));
      } catch (const std::exception& e) {
        pool_.Release(r.reserved_bytes);
        r.reserved_bytes = 0;
        Finish(r, FinishReason::kNone, absl::ResourceExhaustedError(e.what()));
        waiting_.erase(best);
        continue;
      }
      const uint64_t seed = r.request.sampling.seed.value_or(std::random_device{}());
      r.sampler = std::make_unique<Sampler>(r.request.sampling, seed, r.request.prompt_ids);
      metrics_.Admitted(r.policy_name, r.times);
      running_.push_back(std::move(*best));
      waiting_.erase(best);
    }
  }

  static bool Expired(const EngineRequest& r) {
    return r.request.deadline && Clock::now() >= *r.request.deadline;
  }

  void EndRequestedOrExpired() {
    std::erase_if(running_, [&](const std::unique_ptr<EngineRequest>& r) {
      switch (r->handle->requested_end()) {
        case FinishReason::kCancelled:
          Finish(*r, FinishReason::kCancelled, absl::CancelledError("cancelled by the client"));
          return true;
        case FinishReason::kStop:
          Finish(*r, FinishReason::kStop, absl::OkStatus());
          return true;
        default:
          break;
      }
      if (Expired(*r)) {
        Finish(*r, FinishReason::kNone,
               absl::DeadlineExceededError("the request's deadline passed"));
        return true;
      }
      return false;
    });
  }

  // REQUIRES: mutex_ held.
  void EndAllLocked(const absl::Status& status) {
    for (auto& r : waiting_) Finish(*r, FinishReason::kNone, status);
    for (auto& r : running_) Finish(*r, FinishReason::kNone, status);
    waiting_.clear();
    running_.clear();
  }

  void Step() {
    StepRecord record;
    std::vector<PlanCandidate> candidates;
    for (const auto& r : running_) {
      const int64_t remaining = static_cast<int64_t>(r->request.prompt_ids.size()) - r->prefilled;
      const int64_t alignment = r->critiprefill ? r->critiprefill->params.segment_size : 1;
      candidates.push_back(
          {remaining, r->policy->MaxStepTokens(*r->cache, remaining), alignment, r->prefilled});
    }
    const auto plan = PlanStep(candidates, {config_.max_batch_tokens, config_.prefill_chunk});
    std::vector<SequenceInput> batch;
    for (const PlannedWork& work : plan) {
      EngineRequest& r = *running_[work.candidate];
      std::span<const int32_t> tokens =
          work.decode
              ? std::span<const int32_t>(&r.generated.back(), 1)
              : std::span<const int32_t>(r.request.prompt_ids).subspan(r.prefilled, work.tokens);
      batch.push_back({r.cache.get(), r.policy.get(), tokens, false,
                       work.decode ? nullptr : r.critiprefill.get()});
    }
    // Greedy rows need only the argmax, computed on the device; the others their logits here.
    std::vector<int64_t> sampled_rows;
    for (size_t row = 0; row < plan.size(); ++row) {
      if (!running_[plan[row].candidate]->sampler->greedy()) sampled_rows.push_back(row);
    }
    at::Tensor argmax, logits;
    try {
      auto device_logits = model_->Forward(batch);
      argmax = device_logits.argmax(-1).cpu();
      if (!sampled_rows.empty()) {
        auto rows = at::tensor(sampled_rows, at::TensorOptions().dtype(at::kLong))
                        .to(device_logits.device());
        logits = device_logits.index_select(0, rows).cpu().contiguous();
      }
    } catch (const std::exception& e) {
      spdlog::error("engine step of {} requests failed: {}", batch.size(), e.what());
      for (const PlannedWork& work : plan) {
        Finish(*running_[work.candidate], FinishReason::kNone,
               absl::InternalError(absl::StrCat("the model step failed: ", e.what())));
        running_[work.candidate].reset();
      }
      std::erase(running_, nullptr);
      return;
    }
    RecordWork(plan, record);
    const int64_t vocab = logits.defined() ? logits.size(1) : 0;
    size_t sampled = 0;  // index into sampled_rows / logits
    for (size_t row = 0; row < plan.size(); ++row) {
      EngineRequest& r = *running_[plan[row].candidate];
      const bool greedy = r.sampler->greedy();
      const size_t logits_row = greedy ? 0 : sampled++;
      if (!plan[row].decode) {
        r.prefilled += plan[row].tokens;
        if (r.prefilled < static_cast<int64_t>(r.request.prompt_ids.size())) continue;
        if (r.critiprefill) metrics_.PrefillAttentionSkipped(r.critiprefill->SkippedFraction());
      }
      const int32_t token = greedy
                                ? static_cast<int32_t>(argmax.data_ptr<int64_t>()[row])
                                : r.sampler->Sample({logits.data_ptr<float>() + logits_row * vocab,
                                                     static_cast<size_t>(vocab)});
      Emit(r, token);
    }
    std::erase(running_, nullptr);
    metrics_.Step(record);
  }

  // The step's batch, tokens and cache-maintenance time, taken before requests may finish.
  void RecordWork(const std::vector<PlannedWork>& plan, StepRecord& record) {
    for (const PlannedWork& work : plan) {
      const EngineRequest& r = *running_[work.candidate];
      ++record.batch_size;
      (work.decode ? record.decode_tokens : record.prefill_tokens) += work.tokens;
      record.AddPolicyUpdate(r.policy_name, r.policy->TakeUpdateSeconds());
    }
  }

  // Sends one new token and ends the request when it was its last.
  void Emit(EngineRequest& r, int32_t token) {
    r.generated.push_back(token);
    metrics_.TokenSent(r.policy_name, r.times);
    const SamplingParams& s = r.request.sampling;
    FinishReason reason = FinishReason::kNone;
    if (!s.ignore_eos &&
        std::count(info_.eos_token_ids.begin(), info_.eos_token_ids.end(), token)) {
      reason = FinishReason::kEos;
    } else if (std::count(s.stop_token_ids.begin(), s.stop_token_ids.end(), token)) {
      reason = FinishReason::kStop;
    } else if (static_cast<int32_t>(r.generated.size()) >= s.max_new_tokens) {
      reason = FinishReason::kLength;
    }
    if (reason == FinishReason::kNone) {
      r.sink(TokenEvent{{token}, false, FinishReason::kNone, absl::OkStatus(), {}});
      return;
    }
    Finish(r, reason, absl::OkStatus(), {token});
    for (auto& slot : running_) {
      if (slot.get() == &r) slot.reset();
    }
  }

  // Sends the final event and returns the request's KV memory to the pool.
  void Finish(EngineRequest& r, FinishReason reason, const absl::Status& status,
              std::vector<int32_t> last_tokens = {}) {
    TokenEvent event{std::move(last_tokens), true, reason, status, {}};
    event.usage.prompt_tokens = static_cast<int64_t>(r.request.prompt_ids.size());
    event.usage.completion_tokens = static_cast<int64_t>(r.generated.size());
    if (r.times.first_token) {
      event.usage.time_to_first_token_ms =
          std::chrono::duration<double, std::milli>(*r.times.first_token - r.request.arrival)
              .count();
    }
    const CacheStats& cache = r.policy->stats();
    event.usage.cache = {r.request.cache.kind, r.request.cache.budget_tokens, cache.peak_tokens,
                         cache.evicted_tokens, cache.compression_events};
    metrics_.Finished(r.policy_name, r.times, reason, status, event.usage,
                      r.cache ? r.cache->tokens_seen() : 0);
    r.cache.reset();
    if (r.sampler) pool_.Release(r.reserved_bytes);  // a sampler exists only once admitted
    spdlog::info("[{}] finished: reason {} status {} prompt {} completion {} in {:.1f} ms",
                 r.request.request_id, FinishReasonName(reason), status.ToString(),
                 event.usage.prompt_tokens, event.usage.completion_tokens,
                 MillisecondsSince(r.request.arrival));
    r.sink(std::move(event));
  }

  const EngineConfig config_;
  std::unique_ptr<LlamaModel> model_;
  KvPool pool_;
  EngineMetrics metrics_;
  ModelInfo info_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;                         // engine thread: work arrived or exit
  std::condition_variable idle_;                         // CancelAll: everything ended
  std::vector<std::unique_ptr<EngineRequest>> waiting_;  // guarded by mutex_
  bool accepting_ = true;                                // guarded by mutex_
  bool exiting_ = false;                                 // guarded by mutex_
  std::optional<absl::Status> cancel_all_;               // guarded by mutex_
  uint64_t next_sequence_ = 0;                           // guarded by mutex_
  size_t running_count_ = 0;                             // guarded by mutex_
  std::vector<std::unique_ptr<EngineRequest>> running_;  // engine thread only
  std::thread thread_;
};

// The pool: kv_cache_bytes, or on CUDA when that is 0, what gpu_memory_fraction of the device
// leaves after what is already in use (the weights, loaded first), as vLLM's
// --gpu-memory-utilization.
static absl::StatusOr<int64_t> KvPoolBytes(const EngineConfig& config, at::Device device) {
  if (config.kv_cache_bytes > 0) return config.kv_cache_bytes;
  auto memory = QueryDeviceMemory(device);
  if (!memory.ok()) return memory.status();
  const int64_t used = memory->total_bytes - memory->free_bytes;
  const auto pool = static_cast<int64_t>(config.gpu_memory_fraction * memory->total_bytes) - used;
  if (pool <= 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "gpu_memory_fraction ", config.gpu_memory_fraction, " leaves no room for the KV pool: ",
        used >> 20, " MiB of ", memory->total_bytes >> 20, " MiB are in use"));
  }
  return pool;
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineConfig& config) {
  auto dtype = ParseDtype(config.dtype);
  if (!dtype.ok()) return dtype.status();
  auto device = ParseDevice(config.device);
  if (!device.ok()) return device.status();
  if (config.max_queue < 1 || config.max_running < 1 || config.prefill_chunk < 1 ||
      config.max_batch_tokens < config.max_running || config.max_new_tokens_limit < 1) {
    return absl::InvalidArgumentError(
        "engine limits must be >= 1, and max_batch_tokens >= max_running");
  }
  if (config.kv_cache_bytes < 0 || (config.kv_cache_bytes == 0 && !device->is_cuda())) {
    return absl::InvalidArgumentError("the KV pool size (kv_cache_bytes) must be > 0");
  }
  ModelOptions model_options{*dtype, *device, 0};
  model_options.cuda_graphs = config.cuda_graphs;
  model_options.max_decode_batch = config.max_running;
  auto model = LlamaModel::Load(config.model, model_options);
  if (!model.ok()) return model.status();
  auto pool_bytes = KvPoolBytes(config, *device);
  if (!pool_bytes.ok()) return pool_bytes.status();
  spdlog::info("loaded {} ({} layers, {} heads, {} KV heads) as {} on {}; KV pool {} MiB",
               (*model)->config().name, (*model)->config().num_layers, (*model)->config().num_heads,
               (*model)->config().num_kv_heads, config.dtype, config.device, *pool_bytes >> 20);
  return std::unique_ptr<Engine>(
      new Engine(std::make_unique<Impl>(config, std::move(*model), *pool_bytes)));
}

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kNone:
      break;
  }
  return "none";
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;
const ModelInfo& Engine::model_info() const { return impl_->info(); }
EngineStats Engine::stats() const { return impl_->stats(); }
absl::StatusOr<std::shared_ptr<RequestHandle>> Engine::Submit(GenerationRequest request,
                                                              TokenSink sink) {
  return impl_->Submit(std::move(request), std::move(sink));
}
void Engine::StopAccepting() { impl_->StopAccepting(); }
void Engine::CancelAll(const absl::Status& status) { impl_->CancelAll(status); }

}  // namespace kvserve
