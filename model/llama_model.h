// A Llama-family decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU) in libtorch. One Forward
// call runs a batch of sequences of different lengths, prefill chunks and decode tokens mixed, each
// against its own KvCache kept by its own CachePolicy.
//
// Not thread-safe: one engine thread owns a model and calls Forward. Torch may throw inside Forward
// (e.g. out of memory); the caller catches per step.
#pragma once

#include <ATen/ATen.h>
#include <absl/status/statusor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/cache_policy.h"
#include "cache/kv_cache.h"
#include "model/attention_backend.h"
#include "model/decode_runner.h"
#include "model/llama_weights.h"
#include "model/model_config.h"
#include "model/rope.h"
#include "model/sequence_input.h"

namespace kvserve {

struct CritiPrefillSequence;  // model/criti_prefill_attention.h

struct ModelOptions {
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  uint64_t dummy_seed = 0;  // seed of dummy: models' random weights
  // CUDA: steps of decode tokens only run through the fused decode kernels (decode_runner.h),
  // replayed from CUDA graphs when cuda_graphs, for batches up to max_decode_batch. Ignored on
  // the CPU.
  bool fused_decode = true;
  bool cuda_graphs = true;
  int64_t max_decode_batch = 256;
};

// "float32" | "bfloat16" | "float16" (also "fp32", "bf16", "fp16"); "cpu" | "cuda" | "cuda:N".
absl::StatusOr<at::ScalarType> ParseDtype(const std::string& name);
absl::StatusOr<at::Device> ParseDevice(const std::string& name);
const char* DtypeName(at::ScalarType dtype);

class LlamaModel {
 public:
  // `source` is a Hugging Face folder or "dummy:NAME". `attention` defaults to the reference on the
  // CPU and to the CUDA backend (attention_backend.h) on CUDA.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(
      const std::string& source, const ModelOptions& options,
      std::unique_ptr<AttentionBackend> attention = nullptr);

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  // The per-token shape of this model's KV caches.
  KvCacheShape cache_shape() const;

  // Appends each sequence's tokens to its cache, lets its policy trim every layer of the cache
  // (after the layer, or after the step: a layer's trim never changes what later layers compute),
  // and returns float32 logits on the model's device: per sequence in order, one row for its last
  // token, or one per token when all_logits. The tensor may be rewritten by the next call.
  at::Tensor Forward(std::span<const SequenceInput> batch);

  // The fused decode path, or nullptr (CPU, or shapes the kernels do not take).
  DecodeRunner* decode_runner() const { return decode_runner_.get(); }

  // Offline tools only (calibration): called in Forward with each layer's attention input (the
  // normalised hidden states [tokens, hidden] that the q/k/v projections read). nullptr clears it.
  using LayerInputObserver = std::function<void(int64_t layer, const at::Tensor& input)>;
  void SetLayerInputObserver(LayerInputObserver observer) { observer_ = std::move(observer); }

 private:
  LlamaModel(ModelConfig config, ModelOptions options, LlamaWeights weights,
             std::unique_ptr<AttentionBackend> attention);
  // The layer's attention for every sequence (o_proj applied), each sequence's policy updated.
  at::Tensor Attention(int64_t layer, const at::Tensor& hidden,
                       std::span<const SequenceInput> batch);
  // Forward without the fused decode runner.
  at::Tensor ForwardEager(std::span<const SequenceInput> batch);
  at::Tensor Mlp(const LayerWeights& w, const at::Tensor& hidden) const;

  ModelConfig config_;
  ModelOptions options_;
  LlamaWeights weights_;
  std::unique_ptr<AttentionBackend> attention_;
  RotaryEmbedding rope_;
  std::unique_ptr<DecodeRunner> decode_runner_;
  LayerInputObserver observer_;
};

}  // namespace kvserve
