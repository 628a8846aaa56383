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

TEST(StepPlannerTest, AlignedChunksEndOnMultiplesWhereTheyCan) {
  // Prompts of 1000 tokens cut every 64 (CritiPrefill's segments): 0 done, 100 done (after an
  // unaligned piece), capped at 40 by its policy, and the tail of one at 960.
  const std::vector<PlanCandidate> candidates = {
      {1000, 1000, 64, 0}, {900, 1000, 64, 100}, {1000, 40, 64, 0}, {40, 1000, 64, 960}};
  const auto plan = PlanStep(candidates, {4096, 200});
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan[0].tokens, 192);  // 200 rounded down to 3 segments
  EXPECT_EQ(plan[1].tokens, 156);  // 100 + 200 rounded down to 256
  EXPECT_EQ(plan[2].tokens, 40);   // no multiple of 64 within reach: progress unaligned
  EXPECT_EQ(plan[3].tokens, 40);   // finishes the prompt: no rounding
}

TEST(StepPlannerTest, PlansNothingForNoCandidates) {
  EXPECT_TRUE(PlanStep({}, {4096, 512}).empty());
}

}  // namespace
}  // namespace kvserve
