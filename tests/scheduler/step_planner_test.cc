#include "scheduler/step_planner.h"

#include <gtest/gtest.h>

namespace kvserve {
namespace {

TEST(StepPlannerTest, DecodesFirstThenPrefillsInOrderWithinTheTokenBudget) {
  // Two decoding requests, then prompts of 100, 30 and 50 tokens left.
  const std::vector<PlanCandidate> candidates = {
      {100, 1000}, {0, 1}, {30, 1000}, {0, 1}, {50, 1000}};
  const auto plan = PlanStep(candidates, {/*max_batch_tokens=*/64, /*prefill_chunk=*/40});
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan[0].candidate, 1u);
  EXPECT_TRUE(plan[0].decode);
  EXPECT_EQ(plan[1].candidate, 3u);
  EXPECT_TRUE(plan[1].decode);
  EXPECT_EQ(plan[2].candidate, 0u);  // chunk capped at prefill_chunk
  EXPECT_EQ(plan[2].tokens, 40);
  EXPECT_EQ(plan[3].candidate, 2u);  // what is left of the budget: 64 - 2 - 40
  EXPECT_EQ(plan[3].tokens, 22);
}

TEST(StepPlannerTest, RespectsThePolicyCapOnStepTokens) {
  const std::vector<PlanCandidate> candidates = {{100, 12}};
  const auto plan = PlanStep(candidates, {4096, 512});
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].tokens, 12);
}

TEST(StepPlannerTest, PlansNothingForNoCandidates) {
  EXPECT_TRUE(PlanStep({}, {4096, 512}).empty());
}

}  // namespace
}  // namespace kvserve
