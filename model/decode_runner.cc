// The CUDA decode runner (decode_runner.h).
#include "model/decode_runner.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <map>
#include <optional>
#include <vector>

#include "cache/batched_decode.h"
#include "kernels/decode_step.h"
#include "model/cuda_ops.h"
#include "model/ops.h"

namespace kvserve {
namespace {

// Batch sizes a graph is captured for; a batch runs in the smallest bucket that holds it, padded.
constexpr int64_t kBuckets[] = {1,   2,   4,   8,   16,  24,  32,  48,  64,  96,
                                128, 160, 192, 256, 320, 384, 512, 640, 768, 1024};
constexpr int64_t kAlign = 256;

int64_t AlignUp(int64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

class CudaDecodeRunner final : public DecodeRunner {
 public:
  CudaDecodeRunner(const ModelConfig& config, const LlamaWeights& weights,
                   const RotaryEmbedding& rope, at::ScalarType dtype, at::Device device,
                   const DecodeRunnerOptions& options)
      : config_(config),
        weights_(weights),
        rope_(rope),
        dtype_(dtype),
        device_(device),
        options_(options),
        multiprocessors_(cuda::MultiprocessorCount()),
        pool_(at::cuda::graph_pool_handle()) {
    const int64_t max_batch = options_.max_batch;
    lengths_offset_ = AlignUp(max_batch * sizeof(kernels::DecodeSequence));
    ids_offset_ = AlignUp(lengths_offset_ + config_.num_layers * max_batch * sizeof(int32_t));
    ranks_offset_ = AlignUp(ids_offset_ + max_batch * sizeof(int64_t));
    EnsureRankStride(0);
    queries_ = at::empty({config_.num_layers, max_batch, config_.num_heads, config_.head_dim},
                         at::TensorOptions().dtype(dtype_).device(device_));
    kernels::DecodeWorkspaceSize most;
    for (int64_t batch = 1; batch <= max_batch; ++batch) {
      const auto shape = Shape(batch);
      const auto size =
          kernels::DecodeWorkspaceFloats(shape, kernels::DecodeMaxSplits(shape, multiprocessors_));
      most.partial_out = std::max(most.partial_out, size.partial_out);
      most.partial_stats = std::max(most.partial_stats, size.partial_stats);
    }
    const auto floats = at::TensorOptions().dtype(at::kFloat).device(device_);
    partial_out_ = at::empty({most.partial_out}, floats);
    partial_stats_ = at::empty({most.partial_stats}, floats);
    // IN-CACHE ranks stay below a cache's capacity (a budget plus a chunk), not the context: start
    // small, Run grows the table when a request needs more.
    EnsureRankRows(4096);
  }

  bool Accepts(std::span<const SequenceInput> batch) const override {
    if (batch.empty() || static_cast<int64_t>(batch.size()) > options_.max_batch) return false;
    for (const SequenceInput& s : batch) {
      const KvCache& cache = *s.cache;
      if (s.tokens.size() != 1 || cache.shape().device != device_ ||
          cache.shape().dtype != dtype_ || cache.length(0) + 1 > cache.capacity()) {
        return false;
      }
      for (int64_t layer = 1; layer < config_.num_layers; ++layer) {
        if (cache.length(layer) != cache.length(0)) return false;
      }
    }
    return true;
  }

  at::Tensor Run(std::span<const SequenceInput> batch) override {
    const int64_t n = static_cast<int64_t>(batch.size());
    const int64_t bucket = options_.use_graphs ? BucketFor(n) : n;
    std::vector<Plan> plans(n);
    int64_t rank_rows = 0, rank_stride = 0;
    for (int64_t i = 0; i < n; ++i) {
      const SequenceInput& s = batch[i];
      plans[i].batched = s.policy->PlanBatchedDecode(*s.cache);
      plans[i].key_mass =
          plans[i].batched ? plans[i].batched->wants_key_mass() : s.policy->wants_key_mass();
      plans[i].group_max = plans[i].batched &&
                           plans[i].batched->reduction == BatchedDecodeStep::GroupReduction::kMax;
      if (plans[i].key_mass) s.cache->EnsureKeyMass(config_.num_heads / config_.num_kv_heads);
      if (s.policy->position_mode() == PositionMode::kShiftedSinks) {
        rank_rows = std::max(rank_rows, SinkShift(*s.cache) + 1);
      } else if (s.policy->position_mode() == PositionMode::kInCache) {
        rank_rows = std::max(rank_rows, s.cache->capacity());
        // The held slots' ranks and the step's token.
        const int64_t ranks = static_cast<int64_t>(s.policy->ring_layout(0).ranks.size());
        if (ranks > 0) rank_stride = std::max(rank_stride, ranks + 1);
      }
    }
    EnsureRankRows(rank_rows);
    EnsureRankStride(rank_stride);
    auto stream = at::cuda::getCurrentCUDAStream();
    if (profiling_) step_start_.record(stream);
    Upload(batch, plans, bucket);
    at::Tensor logits;
    if (options_.use_graphs) {
      Graph& graph = GraphFor(bucket);
      graph.graph.replay();
      logits = graph.logits;
    } else {
      logits = StepKernels(bucket);
    }
    for (const SequenceInput& s : batch) s.cache->MarkAppended(1);
    if (profiling_) model_done_.record(stream);
    Maintain(batch, plans);
    if (profiling_) step_end_.record(stream);
    for (const SequenceInput& s : batch) s.cache->Advance(1);
    return logits.narrow(0, 0, n);
  }

  int64_t graph_count() const override { return static_cast<int64_t>(graphs_.size()); }

  void EnableProfiling(bool on) override { profiling_ = on; }

  StepTimes LastStepTimes() override {
    if (!profiling_) return {};
    step_end_.synchronize();
    return {step_start_.elapsed_time(step_end_), model_done_.elapsed_time(step_end_)};
  }

 private:
  struct Graph {
    at::cuda::CUDAGraph graph;
    at::Tensor logits;  // the captured step's output, rewritten by every replay
  };
  struct Plan {
    std::optional<BatchedDecodeStep> batched;  // nullopt: Update per layer
    bool key_mass = false;
    bool group_max = false;  // the key mass as the group's max (DecodeSequence)
  };

  kernels::DecodeShape Shape(int64_t batch) const {
    return {KernelDType(dtype_), static_cast<int32_t>(batch),
            static_cast<int32_t>(config_.num_heads), static_cast<int32_t>(config_.num_kv_heads),
            static_cast<int32_t>(config_.head_dim)};
  }

  // kShiftedSinks: how far a decode step turns the sinks (before the step's append).
  static int64_t SinkShift(const KvCache& cache) { return cache.tokens_seen() - cache.length(0); }

  int64_t BucketFor(int64_t batch) const {
    for (int64_t bucket : kBuckets) {
      if (bucket >= batch && bucket <= options_.max_batch) return bucket;
    }
    return options_.max_batch;
  }

  const kernels::DecodeSequence* DeviceSequences() const {
    return static_cast<const kernels::DecodeSequence*>(table_.data_ptr());
  }
  const int32_t* DeviceLengths() const {
    return reinterpret_cast<const int32_t*>(static_cast<const char*>(table_.data_ptr()) +
                                            lengths_offset_);
  }

  // The step from the device table: embedding to logits, for `bucket` rows. Every kernel in it is
  // idempotent for a given table (it rewrites the same slots), so a warm-up run before a capture
  // repeats harmlessly.
  at::Tensor StepKernels(int64_t bucket) {
    const cudaStream_t stream = cuda::CurrentStream();
    const auto shape = Shape(bucket);
    const int32_t splits = kernels::DecodeMaxSplits(shape, multiprocessors_);
    const kernels::DecodeWorkspace workspace{partial_out_.data_ptr<float>(),
                                             partial_stats_.data_ptr<float>(), splits};
    const double eps = config_.rms_norm_eps;
    const int64_t heads = config_.num_heads, dim = config_.head_dim;
    auto x = at::embedding(weights_.embed, ids_.narrow(0, 0, bucket));
    at::Tensor pending;  // the previous layer's MLP output, added to x by the next norm
    for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
      const LayerWeights& w = weights_.layers[layer];
      auto h = AddRmsNorm(x, pending, w.input_norm, eps);
      auto qkv = at::linear(h, w.qkv, w.qkv_bias);
      auto q = queries_[layer].narrow(0, 0, bucket);
      cuda::Check(kernels::RopeAppend(shape, DeviceSequences(), DeviceLengths(),
                                      static_cast<int32_t>(layer), qkv.data_ptr(), q.data_ptr(),
                                      rope_.inverse_frequencies().data_ptr<float>(), stream),
                  "RopeAppend kernel");
      auto attention = at::empty({bucket, heads * dim}, x.options());
      cuda::Check(
          kernels::DecodeAttention(shape, DeviceSequences(), DeviceLengths(),
                                   static_cast<int32_t>(layer), q.data_ptr(), attention.data_ptr(),
                                   rope_table_.data_ptr(), workspace, stream),
          "DecodeAttention kernel");
      auto h2 = AddRmsNorm(x, at::linear(attention, w.out, w.out_bias), w.post_norm, eps);
      pending = at::linear(SwiGlu(at::linear(h2, w.gate_up, w.gate_up_bias)), w.down, w.down_bias);
    }
    auto h = AddRmsNorm(x, pending, weights_.final_norm, eps);
    return at::linear(h, weights_.lm_head).to(at::kFloat);
  }

  // Captured on a side stream after one warm-up run (cuBLAS picks its algorithms and workspaces
  // outside the capture), from the table just uploaded. All graphs share one memory pool: they
  // replay one at a time, and each keeps its output alive.
  Graph& GraphFor(int64_t bucket) {
    auto it = graphs_.find(bucket);
    if (it != graphs_.end()) return *it->second;
    auto current = at::cuda::getCurrentCUDAStream();
    auto side = at::cuda::getStreamFromPool();
    at::cuda::CUDAEvent uploaded;
    uploaded.record(current);
    uploaded.block(side);
    auto graph = std::make_unique<Graph>();
    {
      c10::cuda::CUDAStreamGuard guard(side);
      StepKernels(bucket);
      side.synchronize();
      graph->graph.capture_begin(pool_);
      graph->logits = StepKernels(bucket);
      graph->graph.capture_end();
    }
    return *graphs_.emplace(bucket, std::move(graph)).first->second;
  }

  // Fills the pinned table for `bucket` rows (rows past the batch are padding) and queues its copy.
  void Upload(std::span<const SequenceInput> batch, std::span<const Plan> plans, int64_t bucket) {
    upload_done_.synchronize();  // the previous copy has left the pinned buffer
    char* host = static_cast<char*>(table_host_.data_ptr());
    auto* sequences = reinterpret_cast<kernels::DecodeSequence*>(host);
    auto* lengths = reinterpret_cast<int32_t*>(host + lengths_offset_);
    auto* ids = reinterpret_cast<int64_t*>(host + ids_offset_);
    auto* ranks = reinterpret_cast<int32_t*>(host + ranks_offset_);
    const auto* device_ranks = reinterpret_cast<const int32_t*>(
        static_cast<const char*>(table_.data_ptr()) + ranks_offset_);
    int64_t rank_rows = 0;  // rows of `ranks` this step fills
    const int64_t layers = config_.num_layers;
    std::fill(sequences, sequences + bucket, kernels::DecodeSequence{});
    std::fill(lengths, lengths + layers * bucket, 0);
    std::fill(ids, ids + bucket, 0);
    for (size_t i = 0; i < batch.size(); ++i) {
      const SequenceInput& in = batch[i];
      KvCache& cache = *in.cache;
      const KvCache::Layout layout = cache.layout();
      kernels::DecodeSequence& s = sequences[i];
      s.keys = layout.keys;
      s.values = layout.values;
      s.layer_stride = layout.layer_stride;
      s.key_head_stride = s.value_head_stride = layout.head_stride;
      s.positions = layout.positions;
      s.positions_layer_stride = layout.positions_layer_stride;
      s.positions_head_stride = cache.capacity();
      if (plans[i].key_mass) {
        // [layers, kv_heads, capacity] and [kv_heads, group, capacity] float32.
        s.key_mass = cache.key_mass_storage().data_ptr<float>();
        s.mass_layer_stride = layout.positions_layer_stride;
        s.mass_head_stride = cache.capacity();
        s.logit_scratch = cache.logit_scratch().data_ptr<float>();
        s.scratch_stride = cache.capacity();
        s.key_mass_group_max = plans[i].group_max ? 1 : 0;
      }
      s.position = cache.tokens_seen();
      const PositionMode mode = in.policy->position_mode();
      if (mode == PositionMode::kOriginal || mode == PositionMode::kShiftedSinks) {
        s.keys_rotated = 1;
        s.query_rank = s.position;
        if (mode == PositionMode::kShiftedSinks) {  // no shift before the first eviction
          s.sink_shift = static_cast<int32_t>(SinkShift(cache));
          s.sink_slots =
              s.sink_shift > 0 ? static_cast<int32_t>(in.policy->ring_layout(0).begin) : 0;
        }
      } else {
        const RingLayout ring = in.policy->ring_layout(0);
        s.keys_rotated = 0;
        s.query_rank = cache.length(0);
        s.ring_begin = static_cast<int32_t>(ring.begin);
        s.ring_size = static_cast<int32_t>(ring.size);
        s.ring_head = static_cast<int32_t>(ring.head);
        if (!ring.ranks.empty()) {
          // The policy's table for the held slots; the step's token is the newest.
          int32_t* row = ranks + rank_rows * rank_stride_;
          std::copy(ring.ranks.begin(), ring.ranks.end(), row);
          row[ring.ranks.size()] = static_cast<int32_t>(cache.length(0));
          s.slot_ranks = device_ranks + rank_rows * rank_stride_;
          ++rank_rows;
        }
      }
      for (int64_t layer = 0; layer < layers; ++layer) {
        lengths[layer * bucket + i] = static_cast<int32_t>(cache.length(layer) + 1);
      }
      ids[i] = in.tokens[0];
    }
    auto stream = at::cuda::getCurrentCUDAStream();
    const int64_t bytes =
        rank_rows == 0
            ? ids_offset_ + options_.max_batch * static_cast<int64_t>(sizeof(int64_t))
            : ranks_offset_ + rank_rows * rank_stride_ * static_cast<int64_t>(sizeof(int32_t));
    cuda::Check(
        cudaMemcpyAsync(table_.data_ptr(), host, bytes, cudaMemcpyHostToDevice, stream.stream()),
        "decode table upload");
    upload_done_.record(stream);
  }

  // The policies' maintenance: batched rules in one kernel, then their bookkeeping; Update per
  // layer for the rest, with what the eager path would have given them.
  void Maintain(std::span<const SequenceInput> batch, std::span<Plan> plans) {
    std::vector<KvCache*> caches;
    std::vector<const BatchedDecodeStep*> steps;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (plans[i].batched && plans[i].batched->rule != BatchedDecodeStep::Rule::kAppendOnly) {
        caches.push_back(batch[i].cache);
        steps.push_back(&*plans[i].batched);
      }
    }
    if (!caches.empty()) ApplyBatchedDecodeSteps(caches, steps);
    for (size_t i = 0; i < batch.size(); ++i) {
      const SequenceInput& s = batch[i];
      if (plans[i].batched) {
        s.policy->CommitBatchedDecode(*s.cache, *plans[i].batched);
      } else {
        UpdatePerLayer(s, static_cast<int64_t>(i));
      }
    }
  }

  void UpdatePerLayer(const SequenceInput& s, int64_t row) {
    KvCache& cache = *s.cache;
    for (int64_t layer = 0; layer < config_.num_layers; ++layer) {
      const int64_t length = cache.length(layer);
      LayerStep step;
      step.layer = layer;
      step.new_tokens = 1;
      step.queries = queries_[layer].narrow(0, row, 1).clone();
      step.keys = cache.keys(layer);
      if (s.policy->position_mode() == PositionMode::kInCache) {
        step.keys =
            rope_.Apply(step.keys, SlotRanks(s.policy->ring_layout(layer), length, device_), 1);
      } else if (s.policy->position_mode() == PositionMode::kShiftedSinks) {
        // The step's token is appended, the cache not yet advanced: the shift the step attended
        // with.
        step.keys = rope_.ShiftSinks(step.keys, s.policy->ring_layout(layer).begin,
                                     cache.tokens_seen() - (length - 1));
      }
      if (s.policy->wants_key_mass()) {
        step.key_mass = cache.key_mass_storage()[layer].narrow(1, 0, length);
      }
      s.policy->Update(cache, step);
    }
  }

  // Graphs that hold addresses about to change go, and so does their memory pool: torch releases
  // a pool whose last graph is destroyed, so the next captures need a new one.
  void DropGraphs() {
    if (graphs_.empty()) return;
    graphs_.clear();
    pool_ = at::cuda::graph_pool_handle();
  }

  // Room for `stride` ranks per sequence in the table (IN-CACHE policies with a rank table: at
  // most a budget + 1); graphs captured with the old table are dropped (they hold its address).
  void EnsureRankStride(int64_t stride) {
    if (table_.defined() && stride <= rank_stride_) return;
    if (table_.defined()) {
      upload_done_.synchronize();  // the pinned buffer is about to go
      stride = std::max(stride, 2 * rank_stride_);
    }
    rank_stride_ = stride;
    const int64_t max_batch = options_.max_batch;
    const int64_t bytes =
        ranks_offset_ + max_batch * stride * static_cast<int64_t>(sizeof(int32_t));
    const auto options = at::TensorOptions().dtype(at::kByte);
    table_ = at::empty({bytes}, options.device(device_));
    table_host_ = at::empty({bytes}, options.pinned_memory(true));
    ids_ = at::from_blob(static_cast<char*>(table_.data_ptr()) + ids_offset_, {max_batch},
                         at::TensorOptions().dtype(at::kLong).device(device_));
    DropGraphs();
  }

  // cos and sin of ranks [0, rows) for keys rotated at attention; graphs captured with a smaller
  // table are dropped (they hold its address).
  void EnsureRankRows(int64_t rows) {
    if (rope_table_.defined() && rope_table_.size(0) >= rows) return;
    const int64_t size = std::max(rows, rope_table_.defined() ? 2 * rope_table_.size(0) : rows);
    auto ranks = at::arange(size, at::TensorOptions().dtype(at::kFloat).device(device_));
    auto angles = at::outer(ranks, rope_.inverse_frequencies());
    // Rounded to the model's dtype once here rather than per key in the kernel.
    rope_table_ = at::stack({angles.cos(), angles.sin()}, -1).to(dtype_).contiguous();
    DropGraphs();
  }

  const ModelConfig& config_;
  const LlamaWeights& weights_;
  const RotaryEmbedding& rope_;
  const at::ScalarType dtype_;
  const at::Device device_;
  const DecodeRunnerOptions options_;
  const int32_t multiprocessors_;
  decltype(at::cuda::graph_pool_handle()) pool_;

  // Device: [DecodeSequence x max_batch] [int32 lengths, layers x bucket] [int64 ids x max_batch]
  // [int32 slot ranks, rank_stride_ per sequence that has a rank table]; the host mirror is pinned
  // so the copy is asynchronous, and only the part a step fills is copied.
  int64_t lengths_offset_ = 0;
  int64_t ids_offset_ = 0;
  int64_t ranks_offset_ = 0;
  int64_t rank_stride_ = 0;
  at::Tensor table_;
  at::Tensor table_host_;
  at::cuda::CUDAEvent upload_done_;
  at::Tensor ids_;
  at::Tensor queries_;  // [layers, max_batch, heads, head_dim]: the step's rotated queries
  at::Tensor partial_out_;
  at::Tensor partial_stats_;
  at::Tensor rope_table_;  // [rows, head_dim / 2, 2] in the model's dtype
  std::map<int64_t, std::unique_ptr<Graph>> graphs_;
  bool profiling_ = false;
  at::cuda::CUDAEvent step_start_{cudaEventDefault};
  at::cuda::CUDAEvent model_done_{cudaEventDefault};
  at::cuda::CUDAEvent step_end_{cudaEventDefault};
};

}  // namespace

std::unique_ptr<DecodeRunner> MakeCudaDecodeRunner(const ModelConfig& config,
                                                   const LlamaWeights& weights,
                                                   const RotaryEmbedding& rope,
                                                   at::ScalarType dtype, at::Device device,
                                                   const DecodeRunnerOptions& options) {
  const int64_t group = config.num_heads / config.num_kv_heads;
  if (!device.is_cuda() || !KernelsTakeDType(dtype) || config.num_kv_heads > 32 ||
      config.num_heads % config.num_kv_heads != 0 ||
      !kernels::DecodeAttentionSupports(static_cast<int32_t>(config.head_dim),
                                        static_cast<int32_t>(group))) {
    return nullptr;
  }
  return std::make_unique<CudaDecodeRunner>(config, weights, rope, dtype, device, options);
}

}  // namespace kvserve
