// Reads ../shared/models/stories260K/golden.json: Hugging Face transformers' greedy outputs.
#pragma once

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tests/test_support.h"

namespace kvserve::testing {

struct GoldenCase {
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> greedy_ids;
  std::string text;
  double greedy_mean_nll = 0;
  std::vector<std::pair<int32_t, float>> top5;  // (id, logit) after the prompt
};

inline std::vector<GoldenCase> LoadGoldenCases() {
  std::ifstream in(Stories260kDir() + "/golden.json");
  auto golden = nlohmann::json::parse(in);
  std::vector<GoldenCase> cases;
  for (const auto& c : golden.at("cases")) {
    GoldenCase g{c.at("prompt"), c.at("prompt_ids"),      c.at("greedy_ids"),
                 c.at("text"),   c.at("greedy_mean_nll"), {}};
    for (const auto& pair : c.at("last_prompt_logits_top5")) {
      g.top5.emplace_back(pair.at(0).get<int32_t>(), pair.at(1).get<float>());
    }
    cases.push_back(std::move(g));
  }
  return cases;
}

}  // namespace kvserve::testing
