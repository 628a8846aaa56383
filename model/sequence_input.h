// One sequence's share of a model step (LlamaModel::Forward).
#pragma once

#include <cstdint>
#include <span>

#include "cache/cache_policy.h"
#include "cache/kv_cache.h"

namespace kvserve {

struct CritiPrefillSequence;  // model/criti_prefill_attention.h

struct SequenceInput {
  KvCache* cache = nullptr;
  CachePolicy* policy = nullptr;
  // The step's new tokens: a prefill chunk or one decode token. REQUIRES: non-empty, each id in
  // [0, vocab), and the cache has room for them.
  std::span<const int32_t> tokens;
  // Return logits for every token of the step (scoring), not only the last.
  bool all_logits = false;
  // Set when the tokens are a prompt chunk prefilled with CritiPrefill: its sparse layers attend
  // per model/criti_prefill_attention.h. Null: dense (always for decode). Not owned.
  CritiPrefillSequence* critiprefill = nullptr;
};

}  // namespace kvserve
