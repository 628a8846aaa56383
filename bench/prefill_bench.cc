#include "bench/prefill_bench.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/kineto_trace.h"
#include "bench/random_tokens.h"
#include "cache/full_policy.h"
#include "model/criti_prefill.h"
#include "model/criti_prefill_attention.h"

#ifdef KVSERVE_WITH_CUDA
#include "model/cuda_ops.h"
#endif

namespace kvserve::bench {
namespace {

// Median wall time of f after one warm-up call; each call ends with the device idle.
double MedianMs(int64_t repeats, const std::function<void()>& f) {
  f();
  std::vector<double> times;
  for (int64_t i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    f();
    times.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// The prompt through LlamaModel::Forward in one chunk, into a FULL cache; returns with the device
// idle.
void PrefillOnce(LlamaModel& model, const std::vector<int32_t>& prompt,
                 const CritiPrefillParams* critiprefill) {
  const auto tokens = static_cast<int64_t>(prompt.size());
  FullPolicy policy(tokens);
  KvCache cache(model.cache_shape(), tokens);
  std::unique_ptr<CritiPrefillSequence> sequence;
  if (critiprefill != nullptr) {
    sequence = std::make_unique<CritiPrefillSequence>();
    sequence->params = *critiprefill;
    sequence->prompt_tokens = tokens;
  }
  SequenceInput input{&cache, &policy, prompt, false, sequence.get()};
  model.Forward({&input, 1}).cpu();  // the copy waits for the device
}

}  // namespace

PrefillTimes TimePrefill(LlamaModel& model, int64_t tokens, const CritiPrefillParams* critiprefill,
                         int64_t repeats, const std::string& trace_path) {
  const ModelConfig& config = model.config();
  PrefillTimes times;
  std::mt19937 rng(3);
  const std::vector<int32_t> prompt = RandomTokens(rng, tokens, config.vocab_size);
  if (!trace_path.empty()) {  // after a warm-up run, so the trace holds no one-off set-up
    PrefillOnce(model, prompt, critiprefill);
    TraceToFile(trace_path, [&] { PrefillOnce(model, prompt, critiprefill); });
  }

  times.end_to_end_ms = MedianMs(repeats, [&] { PrefillOnce(model, prompt, critiprefill); });

  // One layer on random data: the attention alone, the same shapes as in the model.
  const auto options =
      at::TensorOptions().dtype(model.options().dtype).device(model.options().device);
  auto q = at::randn({tokens, config.num_heads, config.head_dim}, options);
  auto k = at::randn({config.num_kv_heads, tokens, config.head_dim}, options);
  auto v = at::randn({config.num_kv_heads, tokens, config.head_dim}, options);
  const CritiPrefillChunk chunk{0, tokens};
  if (critiprefill == nullptr) {
    auto backend = MakeDefaultAttention(model.options().device);
    AttentionInput input{q, k, v, false};
    times.attention_ms = MedianMs(repeats, [&] {
      backend->Attend({&input, 1})[0].out.sum().cpu();
    });
  } else {
    CritiPrefillFusion fusion;
    const int64_t layer = critiprefill->dense_layers;  // the first sparse layer
    times.attention_ms = MedianMs(repeats, [&] {
      auto blocks = SelectSegmentBlocks(q, k, chunk, layer, *critiprefill, fusion);
      CritiPrefillAttend(q, k, v, blocks).sum().cpu();
    });
    auto blocks = SelectSegmentBlocks(q, k, chunk, layer, *critiprefill, fusion);
    const AttendedKeys counted = CountAttendedKeys(blocks, tokens, tokens);
    times.skipped_fraction = 1.0 - static_cast<double>(counted.attended) / counted.causal;
    const double flops = 4.0 * config.head_dim * static_cast<double>(counted.attended) *
                         (config.num_heads / config.num_kv_heads);
    times.sparse_ms = MedianMs(repeats, [&] { CritiPrefillAttend(q, k, v, blocks).sum().cpu(); });
    times.sparse_tflops = flops / (times.sparse_ms * 1e9);
#ifdef KVSERVE_WITH_CUDA
    if (cuda::PrefillKernelTakes(q, k, v, critiprefill->segment_size)) {
      times.kernel_ms = MedianMs(repeats, [&] {
        cuda::PrefillAttention(q, k, v, blocks.blocks, blocks.dense, blocks.segment_size,
                               blocks.block_size)
            .sum()
            .cpu();
      });
      times.kernel_tflops = flops / (times.kernel_ms * 1e9);
    }
#endif
  }
  return times;
}

}  // namespace kvserve::bench
