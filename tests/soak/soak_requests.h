// The requests of the soak test (soak_client.cc): what each call does and the request it sends,
// drawn at random. Valid requests mix every served cache policy with prompt and output lengths
// that fit the model; malformed ones break one field each, as a careless or hostile client would.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kvserve/v1/generation.pb.h"

namespace kvserve::soak {

enum class Action {
  kComplete,         // read the stream to its end
  kCancelEarly,      // cancel before the first message
  kCancelMidStream,  // cancel after a few messages
  kDeadline,         // a deadline of 10 ms to 1 s
  kMalformed,        // one bad field: INVALID_ARGUMENT expected
  kUndecodable,      // bytes that are no GenerateRequest
};
constexpr int kActions = 6;
const char* ActionName(Action action);

struct ModelLimits {
  std::string name;  // the model_name label of its metrics
  int64_t vocab_size = 0;
  int64_t context_length = 0;
  std::vector<v1::CacheConfig::CachePolicy> served_policies;  // FULL included
};

class RequestMaker {
 public:
  RequestMaker(ModelLimits limits, uint64_t seed) : limits_(std::move(limits)), rng_(seed) {}

  // One of the actions, the valid ones most often.
  Action NextAction();
  // A valid request: a random served policy (budget 16 to 128), 1 to 256 prompt tokens, 1 to 128
  // new tokens, greedy or sampled.
  v1::GenerateRequest Valid();
  // A valid request with one field broken.
  v1::GenerateRequest Malformed();
  // Random bytes that are not a valid GenerateRequest encoding.
  std::string Undecodable();
  int64_t Uniform(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }

 private:
  ModelLimits limits_;
  std::mt19937_64 rng_;
};

}  // namespace kvserve::soak
