// The CUDA attention backend: decode inputs (one query) of a batch go to the decode kernel in one
// launch; prefill chunks without key mass to torch's fused SDPA when they start their sequence,
// else to the tensor-core prefill kernel; the rest (key mass, float32) to the reference. CUDA
// builds only.
#include <ATen/cuda/CUDAContext.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <cstring>

#include "kernels/decode_step.h"
#include "model/attention_backend.h"
#include "model/cuda_ops.h"
#include "model/cudnn_attention.h"

namespace kvserve {
namespace {

bool DecodeKernelTakes(const AttentionInput& in) {
  const int64_t dim = in.queries.size(2), kv_heads = in.keys.size(0);
  return in.queries.size(0) == 1 && KernelsTakeDType(in.queries.scalar_type()) &&
         in.keys.scalar_type() == in.queries.scalar_type() &&
         kernels::DecodeAttentionSupports(static_cast<int32_t>(dim),
                                          static_cast<int32_t>(in.queries.size(1) / kv_heads)) &&
         cuda::RowsContiguous(in.keys) && cuda::RowsContiguous(in.values);
}

class CudaAttention : public AttentionBackend {
 public:
  std::vector<AttentionOutput> Attend(std::span<const AttentionInput> batch) override {
    std::vector<AttentionOutput> outputs(batch.size());
    std::vector<size_t> decode;
    for (size_t i = 0; i < batch.size(); ++i) {
      const AttentionInput& in = batch[i];
      if (DecodeKernelTakes(in)) {
        decode.push_back(i);
      } else if (PrefillWithoutPrefix(in)) {
        outputs[i] = {CausalFromStart(in), at::Tensor()};
      } else if (!in.want_key_mass && cuda::PrefillKernelTakes(in.queries, in.keys, in.values, 0)) {
        outputs[i] = {cuda::PrefillAttention(in.queries, in.keys, in.values), at::Tensor()};
      } else {
        outputs[i] = reference_->Attend({&in, 1})[0];
      }
    }
    if (!decode.empty()) AttendDecode(batch, decode, outputs);
    return outputs;
  }

 private:
  static bool PrefillWithoutPrefix(const AttentionInput& in) {
    return TORCH_VERSION_MAJOR >= 2 && !in.want_key_mass && in.keys.size(1) == in.queries.size(0);
  }

  // Causal attention of a chunk that starts the sequence: through cuDNN with the KV heads as they
  // are where it runs, else through torch's SDPA with the KV heads repeated to the query heads so
  // that every backend accepts them (which writes a copy of the keys and values per query head).
  static at::Tensor CausalFromStart(const AttentionInput& in) {
#if TORCH_VERSION_MAJOR >= 2
    auto q = in.queries.permute({1, 0, 2}).unsqueeze(0);
    if (cuda::CudnnAttentionTakes(in.queries, in.keys, in.values)) {
      auto out = cuda::CudnnAttention(q, in.keys.unsqueeze(0), in.values.unsqueeze(0),
                                      /*causal=*/true, /*want_lse=*/false)
                     .out;
      return out.squeeze(0).permute({1, 0, 2}).contiguous();  // laid out as q: no copy
    }
    const int64_t group = in.queries.size(1) / in.keys.size(0);
    auto k = in.keys.repeat_interleave(group, 0).unsqueeze(0);
    auto v = in.values.repeat_interleave(group, 0).unsqueeze(0);
    auto out = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
    return out.squeeze(0).permute({1, 0, 2}).contiguous();
#else
    TORCH_CHECK(false, "SDPA needs libtorch 2, not for ", in.queries.sizes());
#endif
  }

  // All decode inputs in one launch: a table of their caches' views in device memory.
  void AttendDecode(std::span<const AttentionInput> batch, const std::vector<size_t>& decode,
                    std::vector<AttentionOutput>& outputs) {
    const AttentionInput& first = batch[decode[0]];
    const int32_t heads = static_cast<int32_t>(first.queries.size(1));
    const int32_t kv_heads = static_cast<int32_t>(first.keys.size(0));
    const int32_t dim = static_cast<int32_t>(first.queries.size(2));
    const kernels::DecodeShape shape{KernelDType(first.queries.scalar_type()),
                                     static_cast<int32_t>(decode.size()), heads, kv_heads, dim};
    const auto device = first.queries.device();
    const auto float_options = at::TensorOptions().dtype(at::kFloat).device(device);
    std::vector<kernels::DecodeSequence> sequences(decode.size());
    std::vector<int32_t> lengths(decode.size());
    std::vector<at::Tensor> queries, held;  // `held` keeps key-mass buffers alive
    for (size_t j = 0; j < decode.size(); ++j) {
      const AttentionInput& in = batch[decode[j]];
      TORCH_CHECK(in.queries.size(1) == heads && in.keys.size(0) == kv_heads &&
                      in.queries.size(2) == dim &&
                      in.queries.scalar_type() == first.queries.scalar_type(),
                  "CudaAttention: decode inputs of one batch must share a shape");
      const int64_t m = in.keys.size(1);
      kernels::DecodeSequence& s = sequences[j];
      s.keys = in.keys.data_ptr();
      s.values = in.values.data_ptr();
      s.key_head_stride = in.keys.stride(0);
      s.value_head_stride = in.values.stride(0);
      if (in.want_key_mass) {
        auto mass = at::empty({kv_heads, m}, float_options);
        auto scratch = at::empty({kv_heads, heads / kv_heads, m}, float_options);
        s.key_mass = mass.data_ptr<float>();
        s.mass_head_stride = m;
        s.logit_scratch = scratch.data_ptr<float>();
        s.scratch_stride = m;
        outputs[decode[j]].key_mass = mass;
        held.push_back(scratch);
      }
      lengths[j] = static_cast<int32_t>(m);
      queries.push_back(in.queries);
    }
    auto table = ToDevice(sequences, lengths, device);
    auto q = at::cat(queries, 0).contiguous();
    auto out = at::empty_like(q);
    const int32_t splits = kernels::DecodeMaxSplits(shape, cuda::MultiprocessorCount());
    const auto sizes = kernels::DecodeWorkspaceFloats(shape, splits);
    auto partial_out = at::empty({sizes.partial_out}, float_options);
    auto partial_stats = at::empty({sizes.partial_stats}, float_options);
    const auto* table_sequences =
        reinterpret_cast<const kernels::DecodeSequence*>(table.data_ptr());
    const auto* table_lengths =
        reinterpret_cast<const int32_t*>(static_cast<const char*>(table.data_ptr()) +
                                         sequences.size() * sizeof(kernels::DecodeSequence));
    cuda::Check(kernels::DecodeAttention(
                    shape, table_sequences, table_lengths, 0, q.data_ptr(), out.data_ptr(), nullptr,
                    {partial_out.data_ptr<float>(), partial_stats.data_ptr<float>(), splits},
                    cuda::CurrentStream()),
                "DecodeAttention kernel");
    for (size_t j = 0; j < decode.size(); ++j) outputs[decode[j]].out = out.narrow(0, j, 1);
  }

  // The sequences then the lengths, copied to the device in one transfer.
  static at::Tensor ToDevice(const std::vector<kernels::DecodeSequence>& sequences,
                             const std::vector<int32_t>& lengths, at::Device device) {
    const size_t table_bytes = sequences.size() * sizeof(kernels::DecodeSequence);
    const size_t total = table_bytes + lengths.size() * sizeof(int32_t);
    auto host = at::empty({static_cast<int64_t>(total)}, at::TensorOptions().dtype(at::kByte));
    std::memcpy(host.data_ptr(), sequences.data(), table_bytes);
    std::memcpy(static_cast<char*>(host.data_ptr()) + table_bytes, lengths.data(),
                lengths.size() * sizeof(int32_t));
    return host.to(device);
  }

  std::unique_ptr<AttentionBackend> reference_ = MakeReferenceAttention();
};

}  // namespace

std::unique_ptr<AttentionBackend> MakeCudaAttention() { return std::make_unique<CudaAttention>(); }

}  // namespace kvserve
