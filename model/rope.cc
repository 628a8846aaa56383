#include "model/rope.h"

#include <algorithm>
#include <cmath>

#ifdef KVSERVE_WITH_CUDA
#include "model/cuda_ops.h"
#endif

namespace kvserve {
namespace {

// Llama 3's frequency-dependent scaling: long wavelengths are divided by the factor, short ones
// kept, and the band between interpolated smoothly.
at::Tensor ScaleLlama3(const at::Tensor& inv_freq, const RopeScaling& s) {
  const double low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const double high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
  auto wavelen = 2 * M_PI / inv_freq;
  auto scaled = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  auto smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                (s.high_freq_factor - s.low_freq_factor);
  auto smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  auto medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
  return at::where(medium, smoothed, scaled);
}

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

RotaryEmbedding::RotaryEmbedding(const ModelConfig& config, at::Device device) {
  const int64_t dim = config.head_dim;
  auto exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  auto inv_freq = 1.0 / at::pow(config.rope_theta, exponent);
  switch (config.rope_scaling.kind) {
    case RopeScaling::Kind::kNone:
      break;
    case RopeScaling::Kind::kLinear:
      inv_freq = inv_freq / config.rope_scaling.factor;
      break;
    case RopeScaling::Kind::kLlama3:
      inv_freq = ScaleLlama3(inv_freq, config.rope_scaling);
      break;
  }
  inv_freq_ = inv_freq.to(device);
}

at::Tensor RotaryEmbedding::Apply(const at::Tensor& x, const at::Tensor& positions,
                                  int64_t seq_dim) const {
#ifdef KVSERVE_WITH_CUDA
  // One pass instead of about ten torch ops, each a full read and write of x.
  if (cuda::RopeKernelTakes(x, seq_dim)) return cuda::Rope(x, positions, seq_dim, inv_freq_);
#endif
  return ApplyReference(x, positions, seq_dim);
}

at::Tensor RotaryEmbedding::ApplyReference(const at::Tensor& x, const at::Tensor& positions,
                                           int64_t seq_dim) const {
  auto freqs = at::outer(positions.to(at::kFloat), inv_freq_);  // [n, d/2]
  auto angles = at::cat({freqs, freqs}, -1);                    // [n, d]
  // Put the position axis where x has it; the dims after it (heads) broadcast.
  std::vector<int64_t> shape(x.dim(), 1);
  const int64_t axis = seq_dim < 0 ? seq_dim + x.dim() : seq_dim;
  shape[axis] = angles.size(0);
  shape.back() = angles.size(1);
  auto cos = angles.cos().to(x.scalar_type()).view(shape);
  auto sin = angles.sin().to(x.scalar_type()).view(shape);
  return x * cos + RotateHalf(x) * sin;
}

at::Tensor RotaryEmbedding::ShiftSinks(const at::Tensor& keys, int64_t sinks, int64_t shift) const {
  const int64_t length = keys.size(1);
  sinks = std::min(sinks, length);
  if (sinks == 0 || shift == 0) return keys;
  auto positions = at::full({sinks}, shift, keys.options().dtype(at::kLong));
  auto turned = Apply(keys.narrow(1, 0, sinks), positions, 1);
  return sinks == length ? turned : at::cat({turned, keys.narrow(1, sinks, length - sinks)}, 1);
}

}  // namespace kvserve
