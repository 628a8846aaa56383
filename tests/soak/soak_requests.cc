#include "tests/soak/soak_requests.h"

#include <algorithm>
#include <cmath>

namespace kvserve::soak {

const char* ActionName(Action action) {
  switch (action) {
    case Action::kComplete:
      return "complete";
    case Action::kCancelEarly:
      return "cancel_early";
    case Action::kCancelMidStream:
      return "cancel_mid_stream";
    case Action::kDeadline:
      return "deadline";
    case Action::kMalformed:
      return "malformed";
    case Action::kUndecodable:
      return "undecodable";
  }
  return "?";
}

Action RequestMaker::NextAction() {
  // Weights: complete 50, cancellations 10 + 10, deadlines 10, malformed 15, undecodable 5.
  const int64_t draw = Uniform(0, 99);
  if (draw < 50) return Action::kComplete;
  if (draw < 60) return Action::kCancelEarly;
  if (draw < 70) return Action::kCancelMidStream;
  if (draw < 80) return Action::kDeadline;
  if (draw < 95) return Action::kMalformed;
  return Action::kUndecodable;
}

v1::GenerateRequest RequestMaker::Valid() {
  v1::GenerateRequest r;
  const auto& policies = limits_.served_policies;
  const auto policy = policies[static_cast<size_t>(Uniform(0, std::ssize(policies) - 1))];
  const int64_t prompt = Uniform(1, 256);
  int64_t max_new = Uniform(1, 128);
  if (policy == v1::CacheConfig::FULL) max_new = std::min(max_new, limits_.context_length - prompt);
  r.add_prompt_ids(1);
  for (int64_t i = 1; i < prompt; ++i) {
    r.add_prompt_ids(static_cast<int32_t>(Uniform(3, limits_.vocab_size - 1)));
  }
  v1::SamplingParams* s = r.mutable_sampling();
  s->set_max_new_tokens(static_cast<int32_t>(std::max<int64_t>(1, max_new)));
  s->set_temperature(Uniform(0, 1) == 0 ? 0.0f : 0.8f);
  s->set_top_k(static_cast<int32_t>(Uniform(0, 50)));
  s->set_seed(static_cast<uint64_t>(Uniform(0, 1 << 30)));
  s->set_ignore_eos(Uniform(0, 3) != 0);
  r.mutable_cache()->set_policy(policy);
  if (policy != v1::CacheConfig::FULL) r.mutable_cache()->set_budget_tokens(Uniform(16, 128));
  r.set_priority(static_cast<int32_t>(Uniform(0, 2)));
  return r;
}

v1::GenerateRequest RequestMaker::Malformed() {
  v1::GenerateRequest r = Valid();
  switch (Uniform(0, 7)) {
    case 0:
      r.clear_prompt_ids();
      break;
    case 1:
      r.add_prompt_ids(static_cast<int32_t>(limits_.vocab_size + Uniform(0, 1000)));
      break;
    case 2:
      r.mutable_sampling()->set_max_new_tokens(static_cast<int32_t>(-Uniform(0, 5)));
      break;
    case 3:
      r.mutable_sampling()->set_top_p(1.5f);
      break;
    case 4:
      r.mutable_sampling()->set_temperature(std::nanf(""));
      break;
    case 5:
      r.mutable_cache()->set_policy(v1::CacheConfig::H2O);
      r.mutable_cache()->set_budget_tokens(0);
      break;
    case 6:
      r.set_request_id(std::string(200, 'x'));
      break;
    default:
      r.set_prompt("both prompt and prompt_ids");
      break;
  }
  return r;
}

std::string RequestMaker::Undecodable() {
  // A length-delimited field 1 (prompt) whose length runs past the end, then random bytes.
  std::string bytes = "\x0a\x7f";
  const int64_t n = Uniform(0, 64);
  for (int64_t i = 0; i < n; ++i) bytes.push_back(static_cast<char>(Uniform(0, 255)));
  return bytes;
}

}  // namespace kvserve::soak
