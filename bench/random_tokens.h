// Random prompts for the engine benchmarks: dummy models have no tokenizer, and the ids' values do
// not matter to the timings, only their count.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace kvserve::bench {

// n ids drawn from [3, vocab): clear of the usual BOS/EOS ids (1, 2), so no prompt ends early.
inline std::vector<int32_t> RandomTokens(std::mt19937& rng, int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(3 + rng() % (vocab - 3));
  return ids;
}

}  // namespace kvserve::bench
