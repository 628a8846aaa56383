#include "model/criti_prefill_params.h"

#include <absl/strings/str_cat.h>

#include "cache/policy_params.h"

namespace kvserve {

absl::StatusOr<CritiPrefillParams> ResolveCritiPrefillParams(
    const std::map<std::string, double>& params, const CritiPrefillLimits& limits) {
  auto reader = PolicyParams::ReadFields(
      params, "prefill.critiprefill", "CRITIPREFILL",
      {"segment_size", "block_size", "kept_blocks", "first_blocks", "local_blocks",
       "dense_prefix_tokens", "dense_layers", "layer_fusion"});
  if (!reader.ok()) return reader.status();
  const PolicyParams& r = *reader;
  CritiPrefillParams p;
  auto segment = r.Int("segment_size", p.segment_size, 1);
  auto block = r.Int("block_size", p.block_size, 1);
  auto kept = r.Int("kept_blocks", p.kept_blocks, 1);
  auto first = r.Int("first_blocks", p.first_blocks, 0);
  auto local = r.Int("local_blocks", p.local_blocks, 0);
  auto tau = r.Int("dense_prefix_tokens", p.dense_prefix_tokens, 0);
  auto layers = r.Int("dense_layers", p.dense_layers, 0, limits.num_layers);
  auto fusion = r.Int("layer_fusion", p.layer_fusion ? 1 : 0, 0, 1);
  for (const auto* value : {&segment, &block, &kept, &first, &local, &tau, &layers, &fusion}) {
    if (!value->ok()) return value->status();
  }
  p = {*segment, *block, *kept, *first, *local, *tau, *layers, *fusion == 1};
  if (p.segment_size > limits.prefill_chunk) {
    return FieldError(
        r.Field("segment_size"),
        absl::StrCat(r.Has("segment_size") ? "" : "(default) ", "must be <= ", limits.prefill_chunk,
                     ", the engine's prefill chunk (chunks are cut on segment "
                     "boundaries), got ",
                     p.segment_size));
  }
  if (p.segment_size % p.block_size != 0) {
    return FieldError(r.Field(r.Has("block_size") ? "block_size" : "segment_size"),
                      absl::StrCat("block_size (", p.block_size, ") must divide segment_size (",
                                   p.segment_size, ")"));
  }
  if (p.first_blocks + p.local_blocks > p.kept_blocks) {
    return FieldError(r.Field(r.Has("local_blocks") ? "local_blocks" : "first_blocks"),
                      absl::StrCat("first_blocks + local_blocks (", p.first_blocks + p.local_blocks,
                                   ") must be <= kept_blocks (", p.kept_blocks, ")"));
  }
  if (p.dense_prefix_tokens % p.segment_size != 0) {
    return FieldError(r.Field("dense_prefix_tokens"),
                      absl::StrCat("must be a multiple of segment_size (", p.segment_size,
                                   "), got ", p.dense_prefix_tokens));
  }
  return p;
}

int64_t AlignedChunkTokens(int64_t done, int64_t tokens, int64_t remaining, int64_t alignment) {
  if (tokens >= remaining || alignment <= 1) return tokens;
  const int64_t end = (done + tokens) / alignment * alignment;
  return end > done ? end - done : tokens;
}

std::vector<PolicyParameter> DescribeCritiPrefillParams() {
  return {
      {"segment_size", "query tokens per segment (S); at most the engine's prefill chunk", "512"},
      {"block_size", "key tokens per block (B); divides segment_size", "32"},
      {"kept_blocks",
       "blocks a sparse segment reads besides its own keys (fewer where fewer lie before it)",
       "64"},
      {"first_blocks",
       "blocks at the start of the stream every sparse segment reads (of kept_blocks)", "0"},
      {"local_blocks", "blocks just before each sparse segment it always reads (of kept_blocks)",
       "0"},
      {"dense_prefix_tokens",
       "segments starting before this position are dense (tau); a multiple of segment_size",
       "4096"},
      {"dense_layers", "the first layers, which stay dense", "1"},
      {"layer_fusion", "smooth block scores across layers (0.25 previous + 0.75 current)", "true"},
  };
}

}  // namespace kvserve
