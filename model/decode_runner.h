// The decode step on CUDA. When every sequence of a step brings one decode token, the whole step
// (embedding, every layer, LM head) runs through the fused kernels, each request's cache reached
// through a table in device memory; so the step can be captured once per batch-size bucket in a
// CUDA graph and replayed with new table contents (fixed-budget caches keep the shapes static).
// After the step, the cache maintenance of every policy with a batched rule (PlanBatchedDecode)
// runs in one kernel per kind of rule for all requests and layers; the other policies get Update
// per layer, as in the eager path. IN-CACHE policies whose ranks are a table (RingLayout::ranks)
// get it uploaded with the step's table.
//
// Not thread-safe: the engine thread that owns the model calls Run.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <span>

#include "model/llama_weights.h"
#include "model/model_config.h"
#include "model/rope.h"
#include "model/sequence_input.h"

namespace kvserve {

struct DecodeRunnerOptions {
  bool use_graphs = true;  // false: the same kernels, launched eagerly
  int64_t max_batch = 256;
};

class DecodeRunner {
 public:
  virtual ~DecodeRunner() = default;

  // True if Run takes the batch: at most max_batch sequences, each with one token, a cache whose
  // layers are all equally long with room for the token, and shapes the kernels are built for.
  virtual bool Accepts(std::span<const SequenceInput> batch) const = 0;

  // LlamaModel::Forward for such a batch: appends every token, attends, keeps each cache by its
  // policy, advances the caches, and returns float32 logits [batch, vocab] on the device, valid
  // until the next Run.
  virtual at::Tensor Run(std::span<const SequenceInput> batch) = 0;

  // Graphs captured so far (one per batch bucket used).
  virtual int64_t graph_count() const = 0;

  // Benchmarks: with profiling on, each Run records CUDA events around its model step and its
  // cache maintenance (the batched kernel, plus any per-layer Update the host runs meanwhile).
  struct StepTimes {
    double step_ms = 0;         // the whole Run, table upload to maintenance done
    double maintenance_ms = 0;  // after the model step, until maintenance is done
  };
  virtual void EnableProfiling(bool on) = 0;
  // The last profiled Run's times; waits for its events.
  virtual StepTimes LastStepTimes() = 0;
};

// CUDA builds only (KVSERVE_WITH_CUDA). Reads, never owns, the model's weights and RoPE, which
// must outlive it; nullptr when the model's shape is not one the kernels are built for.
std::unique_ptr<DecodeRunner> MakeCudaDecodeRunner(const ModelConfig& config,
                                                   const LlamaWeights& weights,
                                                   const RotaryEmbedding& rope,
                                                   at::ScalarType dtype, at::Device device,
                                                   const DecodeRunnerOptions& options);

}  // namespace kvserve
