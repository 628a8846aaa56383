// Prefill timing, dense against CritiPrefill (issue 8): a whole prompt of T random tokens in one
// chunk through LlamaModel::Forward (end to end), and one layer's attention alone on random
// queries, keys and values (the attention backend's dense attention, cuDNN on CUDA, against
// CritiPrefill's selection plus its sparse attention, that attention alone and the block-sparse
// kernel alone).
// Medians of `repeats` runs after a warm-up; on CUDA the device is synchronised around each run.
#pragma once

#include <cstdint>
#include <string>

#include "model/criti_prefill_params.h"
#include "model/llama_model.h"

namespace kvserve::bench {

struct PrefillTimes {
  double end_to_end_ms = 0;
  double attention_ms = 0;
  double skipped_fraction =
      0;  // of dense causal attention's (query, key, KV head) pairs, one layer
  // CritiPrefill only, on the layer's selection (the selection not timed), each with its rate on
  // the kept FLOPs (4 · head_dim per kept (query, key, query head)): CritiPrefillAttend alone (on
  // CUDA, cuDNN where it takes the inputs) and, in CUDA builds, the block-sparse mma.sync kernel
  // alone.
  double sparse_ms = 0;
  double sparse_tflops = 0;
  double kernel_ms = 0;
  double kernel_tflops = 0;
};

// `critiprefill` null: dense. The model's KV cache for the run is FULL with room for T tokens.
// With a `trace_path` (CUDA builds), one more end-to-end run first goes to a Kineto trace there.
PrefillTimes TimePrefill(LlamaModel& model, int64_t tokens, const CritiPrefillParams* critiprefill,
                         int64_t repeats, const std::string& trace_path = "");

}  // namespace kvserve::bench
