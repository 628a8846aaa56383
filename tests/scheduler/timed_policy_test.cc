#include "scheduler/timed_policy.h"

#include <gtest/gtest.h>

#include <thread>

namespace kvserve {
namespace {

// Answers every question with a value of its own, so forwarding is visible.
class MarkedPolicy : public CachePolicy {
 public:
  PositionMode position_mode() const override { return PositionMode::kInCache; }
  bool wants_key_mass() const override { return true; }
  int64_t Capacity(int64_t max_step_tokens) const override { return 100 + max_step_tokens; }
  int64_t ReservedTokens(int64_t max_step_tokens) const override { return 200 + max_step_tokens; }
  int64_t MaxStepTokens(const KvCache&, int64_t wanted) const override { return wanted / 2; }
  void Update(KvCache&, const LayerStep&) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    stats_.evicted_tokens += 3;
    stats_.peak_tokens = 7;
    stats_.compression_events += 1;
  }
  RingLayout ring_layout(int64_t layer) const override { return {1, 2, 3 + layer, {}}; }
  std::optional<BatchedDecodeStep> PlanBatchedDecode(const KvCache&) override {
    BatchedDecodeStep step;
    step.rule = BatchedDecodeStep::Rule::kRingVictim;
    step.ring_victim = 5;
    return step;
  }
  void CommitBatchedDecode(KvCache&, const BatchedDecodeStep& step) override {
    stats_.evicted_tokens += step.ring_victim;
  }
};

TEST(TimedCachePolicyTest, ForwardsEveryVirtualAndTimesUpdate) {
  TimedCachePolicy policy(std::make_unique<MarkedPolicy>());
  KvCache cache({1, 1, 2}, 4);
  EXPECT_EQ(policy.position_mode(), PositionMode::kInCache);
  EXPECT_TRUE(policy.wants_key_mass());
  EXPECT_EQ(policy.Capacity(8), 108);
  EXPECT_EQ(policy.ReservedTokens(8), 208);
  EXPECT_EQ(policy.MaxStepTokens(cache, 8), 4);
  EXPECT_EQ(policy.TakeUpdateSeconds(), 0);

  policy.Update(cache, {});
  policy.Update(cache, {});
  EXPECT_EQ(policy.stats().evicted_tokens, 6);
  EXPECT_EQ(policy.stats().peak_tokens, 7);
  EXPECT_EQ(policy.stats().compression_events, 2);
  const double seconds = policy.TakeUpdateSeconds();
  EXPECT_GE(seconds, 0.004);
  EXPECT_LT(seconds, 1.0);
  EXPECT_EQ(policy.TakeUpdateSeconds(), 0);

  EXPECT_EQ(policy.ring_layout(4).head, 7);
  auto plan = policy.PlanBatchedDecode(cache);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->ring_victim, 5);
  policy.CommitBatchedDecode(cache, *plan);
  EXPECT_EQ(policy.stats().evicted_tokens, 11);
}

}  // namespace
}  // namespace kvserve
