// kvserve-cli eval --prefill critiprefill: CritiPrefill against dense prefill on held-out text
// (tools/prefill_quality.h), one CritiPrefill setting per --kept-blocks value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache/cache_spec.h"
#include "cli/commands.h"

namespace kvserve {

struct PrefillEvalFlags {
  std::string data;         // TinyStories-style text
  int64_t first_story = 0;  // of the first window
  int64_t windows = 4;      // windows start every `window_stride` stories
  int64_t window_stride = 100;
  std::vector<CacheSpec> policies;     // FULL first
  std::vector<int64_t> prompt_tokens;  // --lengths
  std::string critiprefill_params;     // "name=value,...": the setting without kept_blocks
  std::vector<int64_t> kept_blocks;    // one setting each
  int64_t continuation_tokens = 128;
  int64_t prefill_chunk = 512;
  std::string markdown_out, csv_out;
};

// Runs the comparison and prints the markdown table; the exit code (1 on a bad setting or input).
int RunPrefillEval(LocalModel& local, const PrefillEvalFlags& flags);

}  // namespace kvserve
