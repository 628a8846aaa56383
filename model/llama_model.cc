#include "model/llama_model.h"

#include <absl/status/status.h>
#include <absl/strings/match.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <torch/version.h>

#include <algorithm>

#include "model/criti_prefill_attention.h"
#include "model/ops.h"

namespace kvserve {

absl::StatusOr<at::ScalarType> ParseDtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16") return at::kHalf;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype must be float32, bfloat16 or float16, got '", name, "'"));
}

const char* DtypeName(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return "float32";
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    default:
      return "unsupported";
  }
}

absl::StatusOr<at::Device> ParseDevice(const std::string& name) {
  int index = 0;
  if (name == "cpu") return at::Device(at::kCPU);
  if (name == "cuda" ||
      (name.starts_with("cuda:") && absl::SimpleAtoi(name.substr(5), &index) && index >= 0)) {
    if (!at::hasCUDA()) {
      return absl::FailedPreconditionError("device cuda asked for, but this build has no CUDA");
    }
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device must be cpu, cuda or cuda:N, got '", name, "'"));
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(
    const std::string& source, const ModelOptions& options,
    std::unique_ptr<AttentionBackend> attention) {
  if (TORCH_VERSION_MAJOR < 2 && options.dtype == at::kHalf && options.device.is_cpu()) {
    return absl::InvalidArgumentError(
        "dtype float16 needs CUDA with this libtorch (1.x has no float16 matmul on the CPU): use "
        "bfloat16 or float32");
  }
  const auto tensor_options = at::TensorOptions().dtype(options.dtype).device(options.device);
  ModelConfig config;
  LlamaWeights weights;
  try {
    if (absl::StartsWith(source, "dummy:")) {
      auto preset = DummyModelConfig(source.substr(6));
      if (!preset.ok()) return preset.status();
      config = *preset;
      weights = RandomLlamaWeights(config, tensor_options, options.dummy_seed);
    } else {
      auto loaded = LoadModelConfig(source);
      if (!loaded.ok()) return loaded.status();
      config = *loaded;
      auto read = LoadLlamaWeights(source, config, tensor_options);
      if (!read.ok()) return read.status();
      weights = std::move(*read);
    }
  } catch (const std::exception& e) {  // e.g. out of memory on the device
    return absl::ResourceExhaustedError(absl::StrCat("loading ", source, ": ", e.what()));
  }
  if (attention == nullptr) attention = MakeDefaultAttention(options.device);
  return std::unique_ptr<LlamaModel>(
      new LlamaModel(std::move(config), options, std::move(weights), std::move(attention)));
}

LlamaModel::LlamaModel(ModelConfig config, ModelOptions options, LlamaWeights weights,
                       std::unique_ptr<AttentionBackend> attention)
    : config_(std::move(config)),
      options_(options),
      weights_(std::move(weights)),
      attention_(std::move(attention)),
      rope_(config_, options.device) {
#ifdef KVSERVE_WITH_CUDA
  if (options_.device.is_cuda() && options_.fused_decode) {
    decode_runner_ = MakeCudaDecodeRunner(
        config_, weights_, rope_, options_.dtype, options_.device,
        {options_.cuda_graphs, std::max<int64_t>(1, options_.max_decode_batch)});
  }
#endif
}

KvCacheShape LlamaModel::cache_shape() const {
  return {config_.num_layers, config_.num_kv_heads, config_.head_dim, options_.dtype,
          options_.device};
}

at::Tensor LlamaModel::Mlp(const LayerWeights& w, const at::Tensor& hidden) const {
  return at::linear(SwiGlu(at::linear(hidden, w.gate_up, w.gate_up_bias)), w.down, w.down_bias);
}

at::Tensor LlamaModel::Attention(int64_t layer, const at::Tensor& hidden,
                                 std::span<const SequenceInput> batch) {
  const LayerWeights& w = weights_.layers[layer];
  const int64_t heads = config_.num_heads, kv_heads = config_.num_kv_heads;
  const int64_t dim = config_.head_dim, total = hidden.size(0);
  auto qkv = at::linear(hidden, w.qkv, w.qkv_bias);
  auto q = qkv.narrow(1, 0, heads * dim).view({total, heads, dim});
  auto k = qkv.narrow(1, heads * dim, kv_heads * dim).view({total, kv_heads, dim});
  auto v = qkv.narrow(1, (heads + kv_heads) * dim, kv_heads * dim).view({total, kv_heads, dim});

  const auto long_options = at::TensorOptions().dtype(at::kLong).device(options_.device);
  std::vector<AttentionInput> inputs;
  inputs.reserve(batch.size());
  std::vector<CritiPrefillSequence*> critiprefill;  // per sequence: its CritiPrefill, or null
  std::vector<int64_t> first_positions;             // per sequence: its first token's position
  int64_t offset = 0;
  for (const SequenceInput& seq : batch) {
    const int64_t n = static_cast<int64_t>(seq.tokens.size());
    KvCache& cache = *seq.cache;
    auto seq_q = q.narrow(0, offset, n);
    auto seq_k = k.narrow(0, offset, n).transpose(0, 1);  // [kv_heads, n, dim]
    auto seq_v = v.narrow(0, offset, n).transpose(0, 1);
    const int64_t held = cache.length(layer);
    AttentionInput input;
    const PositionMode mode = seq.policy->position_mode();
    if (mode == PositionMode::kOriginal || mode == PositionMode::kShiftedSinks) {
      auto positions = at::arange(cache.tokens_seen(), cache.tokens_seen() + n, long_options);
      input.queries = rope_.Apply(seq_q, positions, 0);
      cache.Append(layer, rope_.Apply(seq_k, positions, 1), seq_v);
      input.keys = cache.keys(layer);
      if (mode == PositionMode::kShiftedSinks) {
        input.keys = rope_.ShiftSinks(input.keys, seq.policy->ring_layout(layer).begin,
                                      cache.tokens_seen() - held);
      }
    } else {
      // Positions are ranks in the cache: stored keys are un-rotated and rotated here each step.
      input.queries = rope_.Apply(seq_q, at::arange(held, held + n, long_options), 0);
      cache.Append(layer, seq_k, seq_v);
      auto ranks = SlotRanks(seq.policy->ring_layout(layer), held + n, options_.device);
      input.keys = rope_.Apply(cache.keys(layer), ranks, 1);
    }
    input.values = cache.values(layer);
    input.want_key_mass = seq.policy->wants_key_mass();
    inputs.push_back(std::move(input));
    critiprefill.push_back(seq.critiprefill);
    first_positions.push_back(cache.tokens_seen());
    offset += n;
  }

  auto outputs = AttendWithCritiPrefill(*attention_, layer, inputs, critiprefill, first_positions);
  std::vector<at::Tensor> rows;
  rows.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceInput& seq = batch[i];
    seq.policy->Update(*seq.cache,
                       LayerStep{layer, static_cast<int64_t>(seq.tokens.size()), inputs[i].queries,
                                 inputs[i].keys, outputs[i].key_mass});
    rows.push_back(outputs[i].out.reshape({-1, heads * dim}));
  }
  // One sequence's rows need no cat (a copy of every attention output, 268 MB at 32K tokens).
  return at::linear(rows.size() == 1 ? rows[0] : at::cat(rows, 0), w.out, w.out_bias);
}

at::Tensor LlamaModel::Forward(std::span<const SequenceInput> batch) {
  if (!decode_runner_ || observer_) return ForwardEager(batch);
  if (decode_runner_->Accepts(batch)) return decode_runner_->Run(batch);
  // A step that mixes decode tokens with prompt chunks: the decode rows still take the fused
  // runner, so they do not pay the eager path's per-sequence, per-layer work (which made a mixed
  // step of a full decode batch tens of times slower than a pure one).
  std::vector<SequenceInput> decode, rest;
  for (const SequenceInput& seq : batch) (seq.tokens.size() == 1 ? decode : rest).push_back(seq);
  if (decode.empty() || rest.empty() || !decode_runner_->Accepts(decode)) {
    return ForwardEager(batch);
  }
  auto logits = at::cat({ForwardEager(rest), decode_runner_->Run(decode)}, 0);
  // Back to the batch's order: the eager rows first in `logits`, then one row per decode token.
  std::vector<int64_t> order;
  int64_t eager_row = 0, decode_row = static_cast<int64_t>(logits.size(0) - decode.size());
  for (const SequenceInput& seq : batch) {
    if (seq.tokens.size() == 1) {
      order.push_back(decode_row++);
    } else {
      const int64_t rows = seq.all_logits ? static_cast<int64_t>(seq.tokens.size()) : 1;
      for (int64_t r = 0; r < rows; ++r) order.push_back(eager_row++);
    }
  }
  auto index = at::tensor(order, at::TensorOptions().dtype(at::kLong)).to(logits.device());
  return logits.index_select(0, index);
}

at::Tensor LlamaModel::ForwardEager(std::span<const SequenceInput> batch) {
  std::vector<int64_t> ids;
  std::vector<int64_t> output_rows;
  for (const SequenceInput& seq : batch) {
    const int64_t first = static_cast<int64_t>(ids.size());
    ids.insert(ids.end(), seq.tokens.begin(), seq.tokens.end());
    const int64_t end = static_cast<int64_t>(ids.size());
    for (int64_t row = seq.all_logits ? first : end - 1; row < end; ++row) {
      output_rows.push_back(row);
    }
  }
  const auto long_options = at::TensorOptions().dtype(at::kLong);
  auto token_ids = at::tensor(ids, long_options).to(options_.device);
  auto x = at::embedding(weights_.embed, token_ids);
  at::Tensor pending;  // the previous layer's MLP output, added to x by the next norm
  for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
    const LayerWeights& w = weights_.layers[layer];
    auto attention_input = AddRmsNorm(x, pending, w.input_norm, config_.rms_norm_eps);
    if (observer_) observer_(layer, attention_input);
    auto attention = Attention(layer, attention_input, batch);
    pending = Mlp(w, AddRmsNorm(x, attention, w.post_norm, config_.rms_norm_eps));
  }
  for (const SequenceInput& seq : batch) {
    seq.cache->Advance(static_cast<int64_t>(seq.tokens.size()));
  }
  auto rows = at::tensor(output_rows, long_options).to(options_.device);
  auto last = x.index_select(0, rows);
  auto h =
      AddRmsNorm(last, pending.index_select(0, rows), weights_.final_norm, config_.rms_norm_eps);
  return at::linear(h, weights_.lm_head).to(at::kFloat);
}

}  // namespace kvserve
