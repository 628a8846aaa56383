#include "tools/kv_heads.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cache/full_policy.h"
#include "model/safetensors.h"

namespace kvserve {
namespace {

// Keys under RoPE, §2.4: per frequency pair f (dims f and f + d/2, the rotate_half pairing), the
// group's members are complex numbers z_j; the top eigenvector c of C_f = Σ z zᴴ gives the shared
// key u = Σ conj(c_j) z_j, and each query reading member j is multiplied by conj(c_j). Complex
// scalings per pair commute with the rotation, so RoPE needs no change.
void MergeKeys(const at::Tensor& k, const at::Tensor& moment, int64_t head_dim, int64_t group,
               at::Tensor& new_k, at::Tensor& q, int64_t query_group, int64_t new_head,
               double* kept, double* total) {
  const int64_t half = head_dim / 2, hidden = k.size(1);
  auto members =
      k.narrow(0, new_head * group * head_dim, group * head_dim).view({group, 2, half, hidden});
  auto re = members.select(1, 0), im = members.select(1, 1);  // [g, half, D]
  auto re_m = at::matmul(re, moment), im_m = at::matmul(im, moment);
  // C_f[a][b] = (re_a·re_b + im_a·im_b) + i(im_a·re_b − re_a·im_b), each product through Σ.
  auto c_re = at::einsum("afD,bfD->fab", {re_m, re}) + at::einsum("afD,bfD->fab", {im_m, im});
  auto c_im = at::einsum("afD,bfD->fab", {im_m, re}) - at::einsum("afD,bfD->fab", {re_m, im});
  auto [eigenvalues, eigenvectors] = at::linalg_eigh(at::complex(c_re, c_im));
  *kept += eigenvalues.select(1, group - 1).sum().item<double>();
  *total += eigenvalues.sum().item<double>();
  auto c = eigenvectors.select(2, group - 1).t();  // [g, half]
  auto cr = at::real(c).unsqueeze(-1), ci = at::imag(c).unsqueeze(-1);
  auto shared = new_k.narrow(0, new_head * head_dim, head_dim).view({2, half, hidden});
  shared.select(0, 0).copy_((cr * re + ci * im).sum(0));
  shared.select(0, 1).copy_((cr * im - ci * re).sum(0));
  for (int64_t member = 0; member < group; ++member) {
    const int64_t old_head = new_head * group + member;
    for (int64_t h = old_head * query_group; h < (old_head + 1) * query_group; ++h) {
      auto rows = q.narrow(0, h * head_dim, head_dim).view({2, half, hidden});
      auto q_re = rows.select(0, 0).clone(), q_im = rows.select(0, 1).clone();
      rows.select(0, 0).copy_(cr[member] * q_re + ci[member] * q_im);
      rows.select(0, 1).copy_(cr[member] * q_im - ci[member] * q_re);
    }
  }
}

// Values, §2.3: the top head_dim principal directions Φ of the group's cache; the shared value is
// Φᵀv and each output projection reading member j absorbs Φ_j.
void MergeValues(const at::Tensor& v, const at::Tensor& moment, int64_t head_dim, int64_t group,
                 at::Tensor& new_v, at::Tensor& o, int64_t query_group, int64_t new_head,
                 double* kept, double* total) {
  auto members = v.narrow(0, new_head * group * head_dim, group * head_dim);  // [g·d, D]
  auto covariance = at::matmul(at::matmul(members, moment), members.t());
  auto [eigenvalues, eigenvectors] = at::linalg_eigh(covariance);
  *kept += eigenvalues.narrow(0, (group - 1) * head_dim, head_dim).sum().item<double>();
  *total += eigenvalues.sum().item<double>();
  auto phi = eigenvectors.narrow(1, (group - 1) * head_dim, head_dim);  // [g·d, d]
  new_v.narrow(0, new_head * head_dim, head_dim).copy_(at::matmul(phi.t(), members));
  for (int64_t member = 0; member < group; ++member) {
    const int64_t old_head = new_head * group + member;
    auto phi_j = phi.narrow(0, member * head_dim, head_dim);
    for (int64_t h = old_head * query_group; h < (old_head + 1) * query_group; ++h) {
      auto columns = o.narrow(1, h * head_dim, head_dim);
      columns.copy_(at::matmul(columns.clone(), phi_j));
    }
  }
}

}  // namespace

std::vector<at::Tensor> CalibrationMoments(LlamaModel& model, std::span<const int32_t> stream) {
  const ModelConfig& c = model.config();
  std::vector<at::Tensor> moments(c.num_layers);
  for (auto& m : moments) m = at::zeros({c.hidden_size, c.hidden_size}, at::kDouble);
  model.SetLayerInputObserver([&](int64_t layer, const at::Tensor& input) {
    auto x = input.to(at::kCPU, at::kDouble);
    moments[layer] += at::matmul(x.t(), x);
  });
  const int64_t window = c.max_position_embeddings;
  for (size_t start = 0; start < stream.size(); start += window) {
    auto tokens = stream.subspan(start, std::min<size_t>(window, stream.size() - start));
    FullPolicy policy(static_cast<int64_t>(tokens.size()));
    KvCache cache(model.cache_shape(), static_cast<int64_t>(tokens.size()));
    SequenceInput input{&cache, &policy, tokens};
    model.Forward({&input, 1});
  }
  model.SetLayerInputObserver(nullptr);
  return moments;
}

AttentionProjections MergeKvHeads(const AttentionProjections& w, const at::Tensor& moment,
                                  int64_t num_heads, int64_t head_dim, int64_t new_kv_heads,
                                  HeadMergeMethod method, LayerEnergy* energy) {
  const int64_t kv_heads = w.k.size(0) / head_dim, hidden = w.k.size(1);
  const int64_t group = kv_heads / new_kv_heads, query_group = num_heads / kv_heads;
  AttentionProjections out{w.q.clone(), at::empty({new_kv_heads * head_dim, hidden}, w.k.options()),
                           at::empty({new_kv_heads * head_dim, hidden}, w.v.options()),
                           w.o.clone()};
  if (method == HeadMergeMethod::kMeanPool) {
    out.k = w.k.view({new_kv_heads, group, head_dim, hidden}).mean(1).reshape({-1, hidden});
    out.v = w.v.view({new_kv_heads, group, head_dim, hidden}).mean(1).reshape({-1, hidden});
    return out;
  }
  double key_kept = 0, key_total = 0, value_kept = 0, value_total = 0;
  for (int64_t i = 0; i < new_kv_heads; ++i) {
    MergeKeys(w.k, moment, head_dim, group, out.k, out.q, query_group, i, &key_kept, &key_total);
    MergeValues(w.v, moment, head_dim, group, out.v, out.o, query_group, i, &value_kept,
                &value_total);
  }
  *energy = {key_total > 0 ? key_kept / key_total : 1,
             value_total > 0 ? value_kept / value_total : 1};
  return out;
}

absl::StatusOr<std::vector<LayerEnergy>> CompressKvHeads(const std::string& model_dir,
                                                         std::span<const int32_t> calibration,
                                                         const HeadCompressionOptions& options,
                                                         const std::string& out_dir) {
  auto model = LlamaModel::Load(model_dir, {});
  if (!model.ok()) return model.status();
  const ModelConfig config = (*model)->config();
  const int64_t n = options.kv_heads;
  if (n < 1 || config.num_heads % n != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv-heads ", n, " must divide the model's query heads (", config.num_heads, ")"));
  }
  if (config.num_kv_heads % n != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv-heads ", n, " must divide the model's KV heads (", config.num_kv_heads, ")"));
  }
  if (config.attention_bias) {
    return absl::UnimplementedError("models with attention biases are not supported");
  }
  if (calibration.size() < 2) return absl::InvalidArgumentError("the calibration text is empty");
  const auto moments = CalibrationMoments(**model, calibration);

  auto reader = SafetensorsReader::OpenFolder(model_dir);
  if (!reader.ok()) return reader.status();
  std::map<std::string, at::Tensor> tensors;
  for (const auto& name : (*reader)->Names()) {
    auto t = (*reader)->Read(name, at::kDouble);
    if (!t.ok()) return t.status();
    tensors[name] = *t;
  }
  std::vector<LayerEnergy> energies(config.num_layers);
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    const std::string p = absl::StrCat("model.layers.", layer, ".self_attn.");
    AttentionProjections w{tensors[p + "q_proj.weight"], tensors[p + "k_proj.weight"],
                           tensors[p + "v_proj.weight"], tensors[p + "o_proj.weight"]};
    auto merged = MergeKvHeads(w, moments[layer], config.num_heads, config.head_dim, n,
                               options.method, &energies[layer]);
    tensors[p + "q_proj.weight"] = merged.q;
    tensors[p + "k_proj.weight"] = merged.k;
    tensors[p + "v_proj.weight"] = merged.v;
    tensors[p + "o_proj.weight"] = merged.o;
  }
  for (auto& [name, t] : tensors) t = t.to((*reader)->Dtype(name));

  namespace fs = std::filesystem;
  std::error_code error;
  fs::create_directories(out_dir, error);
  if (error) return absl::PermissionDeniedError(absl::StrCat("cannot create ", out_dir));
  if (auto s = WriteSafetensors(out_dir + "/model.safetensors", tensors); !s.ok()) return s;
  std::ifstream config_in(model_dir + "/config.json");
  auto config_json = nlohmann::json::parse(config_in);
  config_json["num_key_value_heads"] = n;
  std::ofstream(out_dir + "/config.json") << config_json.dump(2) << "\n";
  for (const char* file : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                           "generation_config.json", "special_tokens_map.json"}) {
    const fs::path from = fs::path(model_dir) / file;
    if (fs::exists(from)) {
      fs::copy_file(from, fs::path(out_dir) / file, fs::copy_options::overwrite_existing, error);
      if (error) return absl::PermissionDeniedError(absl::StrCat("cannot copy ", from.string()));
    }
  }
  return energies;
}

}  // namespace kvserve
