#include "tools/prefill_quality.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>

#include <algorithm>
#include <memory>

#include "cache/policy_factory.h"
#include "model/criti_prefill_attention.h"
#include "tools/lane_scores.h"

namespace kvserve {
namespace {

// One prefill of one window: dense when critiprefill is null.
struct Lane {
  std::unique_ptr<CachePolicy> policy;
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<CritiPrefillSequence> critiprefill;
};

// Prefills `prompt` into the lane in chunks of at most `chunk` tokens, capped by the policy and cut
// on segment boundaries as the engine's planner cuts them; the last token's logits [1, vocab].
at::Tensor Prefill(LlamaModel& model, Lane& lane, std::span<const int32_t> prompt, int64_t chunk) {
  const int64_t total = static_cast<int64_t>(prompt.size());
  at::Tensor logits;
  for (int64_t done = 0; done < total;) {
    const int64_t remaining = total - done;
    int64_t n =
        std::min({chunk, remaining,
                  std::max<int64_t>(1, lane.policy->MaxStepTokens(*lane.cache, remaining))});
    if (lane.critiprefill) {
      n = AlignedChunkTokens(done, n, remaining, lane.critiprefill->params.segment_size);
    }
    SequenceInput input{lane.cache.get(), lane.policy.get(), prompt.subspan(done, n)};
    input.critiprefill = lane.critiprefill.get();
    logits = model.Forward({&input, 1});
    done += n;
  }
  return logits;
}

absl::Status CheckOptions(std::span<const std::vector<int32_t>> windows,
                          const PrefillQualityOptions& o) {
  if (windows.empty() || o.policies.empty() || o.prompt_tokens.empty()) {
    return absl::InvalidArgumentError("no windows, policies or prompt lengths to evaluate");
  }
  if (o.continuation_tokens < 1 || o.prefill_chunk < 1) {
    return absl::InvalidArgumentError("the continuation and the prefill chunk must be >= 1 token");
  }
  const int64_t longest = *std::max_element(o.prompt_tokens.begin(), o.prompt_tokens.end());
  for (const auto& window : windows) {
    if (static_cast<int64_t>(window.size()) < longest + o.continuation_tokens) {
      return absl::InvalidArgumentError(absl::StrCat("a window has ", window.size(),
                                                     " tokens; prompt + continuation needs ",
                                                     longest + o.continuation_tokens));
    }
  }
  for (const CritiPrefillParams& s : o.settings) {
    if (s.segment_size > o.prefill_chunk) {
      return absl::InvalidArgumentError(absl::StrCat(
          "segment_size ", s.segment_size, " exceeds the prefill chunk ", o.prefill_chunk));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<PrefillQualityRow>> EvaluatePrefillQuality(
    LlamaModel& model, std::span<const std::vector<int32_t>> windows,
    const PrefillQualityOptions& options) {
  if (auto s = CheckOptions(windows, options); !s.ok()) return s;
  const int64_t continuation = options.continuation_tokens;
  const size_t lanes_per_run = 1 + options.settings.size();
  std::vector<PrefillQualityRow> rows;
  for (int64_t prompt : options.prompt_tokens) {
    for (const CacheSpec& spec : options.policies) {
      std::vector<LaneScore> scores(lanes_per_run);
      std::vector<AttendedKeys> attended(lanes_per_run);
      for (const std::vector<int32_t>& window : windows) {
        const std::span<const int32_t> tokens(window);
        std::vector<Lane> lanes(lanes_per_run);
        std::vector<at::Tensor> first;
        for (size_t i = 0; i < lanes.size(); ++i) {
          auto policy = MakeCachePolicy(spec, {prompt, continuation});
          if (!policy.ok()) return policy.status();
          lanes[i].policy = std::move(*policy);
          lanes[i].cache = std::make_unique<KvCache>(
              model.cache_shape(), lanes[i].policy->Capacity(options.prefill_chunk));
          if (i > 0) {
            lanes[i].critiprefill = std::make_unique<CritiPrefillSequence>();
            lanes[i].critiprefill->params = options.settings[i - 1];
            lanes[i].critiprefill->prompt_tokens = prompt;
          }
          first.push_back(Prefill(model, lanes[i], tokens.first(prompt), options.prefill_chunk));
        }
        AddPosition(at::cat(first), tokens[prompt], scores);
        std::vector<SequenceInput> batch(lanes.size());
        for (int64_t t = prompt; t + 1 < prompt + continuation; ++t) {
          for (size_t i = 0; i < lanes.size(); ++i) {
            batch[i] = {lanes[i].cache.get(), lanes[i].policy.get(), tokens.subspan(t, 1)};
          }
          AddPosition(model.Forward(batch), tokens[t + 1], scores);
        }
        for (size_t i = 1; i < lanes.size(); ++i) {
          attended[i].attended += lanes[i].critiprefill->keys.attended;
          attended[i].causal += lanes[i].critiprefill->keys.causal;
        }
      }
      for (size_t i = 0; i < lanes_per_run; ++i) {
        const LaneScore& s = scores[i];
        const double skipped =
            i == 0 ? 0.0 : 1.0 - static_cast<double>(attended[i].attended) / attended[i].causal;
        rows.push_back({CachePolicyName(spec.kind), spec.budget_tokens, prompt,
                        i == 0 ? 0 : options.settings[i - 1].kept_blocks, s.perplexity(),
                        s.mean_kl(), s.top1_agreement(), skipped});
      }
    }
  }
  return rows;
}

std::string PrefillQualityMarkdown(const std::vector<PrefillQualityRow>& rows) {
  std::string out =
      "| policy | budget | prompt | prefill | perplexity | mean KL(dense‖this) | top-1 agreement | "
      "attention skipped |\n"
      "|---|---:|---:|---|---:|---:|---:|---:|\n";
  for (const PrefillQualityRow& r : rows) {
    const std::string prefill =
        r.kept_blocks == 0 ? "dense" : absl::StrCat("CritiPrefill k=", r.kept_blocks);
    absl::StrAppend(
        &out,
        absl::StrFormat("| %s | %s | %d | %s | %.3f | %.4f | %.3f | %.3f |\n", r.policy,
                        r.policy == "FULL" ? "—" : absl::StrCat(r.budget_tokens), r.prompt_tokens,
                        prefill, r.perplexity, r.mean_kl, r.top1_agreement, r.skipped));
  }
  return out;
}

std::string PrefillQualityCsv(const std::vector<PrefillQualityRow>& rows) {
  std::string out =
      "policy,budget,prompt_tokens,kept_blocks,perplexity,mean_kl,top1_agreement,skipped\n";
  for (const PrefillQualityRow& r : rows) {
    absl::StrAppend(&out, absl::StrFormat("%s,%d,%d,%d,%.6f,%.6f,%.6f,%.6f\n", r.policy,
                                          r.budget_tokens, r.prompt_tokens, r.kept_blocks,
                                          r.perplexity, r.mean_kl, r.top1_agreement, r.skipped));
  }
  return out;
}

}  // namespace kvserve
