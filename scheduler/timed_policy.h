// A CachePolicy decorator that measures the time spent in Update, so the engine can report
// kvserve_cache_policy_update_seconds although the model (not the engine) calls Update, per layer,
// inside its forward pass. Host time: on CUDA it counts launches and any synchronisation the
// policy itself makes, not the kernels it queues.
//
// Forwards every virtual of CachePolicy; one added there must be forwarded here too (the test in
// tests/scheduler/timed_policy_test.cc checks the current ones).
#pragma once

#include <memory>

#include "cache/cache_policy.h"

namespace kvserve {

class TimedCachePolicy final : public CachePolicy {
 public:
  explicit TimedCachePolicy(std::unique_ptr<CachePolicy> inner) : inner_(std::move(inner)) {}

  PositionMode position_mode() const override { return inner_->position_mode(); }
  bool wants_key_mass() const override { return inner_->wants_key_mass(); }
  int64_t Capacity(int64_t max_step_tokens) const override {
    return inner_->Capacity(max_step_tokens);
  }
  int64_t ReservedTokens(int64_t max_step_tokens) const override {
    return inner_->ReservedTokens(max_step_tokens);
  }
  int64_t MaxStepTokens(const KvCache& cache, int64_t wanted) const override {
    return inner_->MaxStepTokens(cache, wanted);
  }
  // Runs the inner Update, adds its duration, and mirrors the inner policy's stats.
  void Update(KvCache& cache, const LayerStep& step) override;
  RingLayout ring_layout(int64_t layer) const override { return inner_->ring_layout(layer); }
  std::optional<BatchedDecodeStep> PlanBatchedDecode(const KvCache& cache) override {
    return inner_->PlanBatchedDecode(cache);
  }
  // Like Update: timed, stats mirrored.
  void CommitBatchedDecode(KvCache& cache, const BatchedDecodeStep& step) override;

  // Seconds spent in Update since the last call, and resets them.
  double TakeUpdateSeconds();

 private:
  // Runs f, adds its duration, and mirrors the inner policy's stats.
  template <typename F>
  void Timed(F&& f);

  std::unique_ptr<CachePolicy> inner_;
  double update_seconds_ = 0;
};

}  // namespace kvserve
