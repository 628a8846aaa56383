// kvserve-bench-engine: the engine without gRPC, on dummy: (random-weight) models of real shapes.
//   --modes decode   decode step time and tokens/s per batch size and cache (LlamaModel alone),
//                    with the cache-maintenance part of each step on CUDA
//   --modes ttft     time to first token of single prompts on an idle engine
//   --modes workload a closed-loop workload through Engine::Submit, to compare with
//                    kvserve-bench-serving's output tokens/s through the gRPC server
//   --modes prefill  whole-prompt prefill, dense against CritiPrefill, end to end and one
//                    layer's attention alone
// Prints a markdown table per mode and, with --json-out, every figure as JSON.
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <absl/flags/usage_config.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/decode_bench.h"
#include "bench/engine_load.h"
#include "bench/prefill_bench.h"
#include "model/llama_model.h"
#include "server/flag_spelling.h"

ABSL_FLAG(std::string, model, "dummy:llama-3-8b", "model folder or dummy:NAME");
ABSL_FLAG(std::string, dtype, "bfloat16", "float32, float16 or bfloat16");
ABSL_FLAG(std::string, device, "cuda", "cpu, cuda or cuda:N");
ABSL_FLAG(bool, cuda_graphs, true, "replay decode steps from CUDA graphs");
ABSL_FLAG(std::string, modes, "decode", "comma list of decode, ttft, workload");
ABSL_FLAG(std::string, batches, "1,8,64,256", "decode: batch sizes");
ABSL_FLAG(std::string, caches, "FULL:4096,STREAMING_LLM:512",
          "decode: comma list of POLICY:N (FULL: N-token context; others: N-token budget)");
ABSL_FLAG(int64_t, steps, 32, "decode: timed steps per case");
ABSL_FLAG(int64_t, warmup, 4, "decode: untimed steps first (graph capture)");
ABSL_FLAG(
    bool, profiler_range, false,
    "decode: only the timed steps between cudaProfilerStart/Stop (ncu --profile-from-start off)");
ABSL_FLAG(std::string, ttft_prompts, "4096", "ttft: prompt lengths");
ABSL_FLAG(int64_t, ttft_repeats, 5, "ttft: timed requests per length");
ABSL_FLAG(int64_t, requests, 256, "workload: requests");
ABSL_FLAG(int64_t, concurrency, 64, "workload: requests in flight");
ABSL_FLAG(int64_t, prompt_len, 128, "workload: prompt tokens");
ABSL_FLAG(int64_t, output_len, 256, "workload: output tokens");
ABSL_FLAG(std::string, cache, "FULL", "workload: POLICY[:BUDGET]");
ABSL_FLAG(double, kv_cache_gb, 0, "ttft/workload: KV pool GiB; 0 on CUDA: 0.9 of the memory");
ABSL_FLAG(int32_t, max_running, 256, "ttft/workload: engine --max-running");
ABSL_FLAG(int32_t, prefill_chunk, 4096, "ttft/workload: engine --prefill-chunk");
ABSL_FLAG(int32_t, max_batch_tokens, 4096,
          "ttft/workload: engine --max-batch-tokens (the server's default)");
ABSL_FLAG(std::string, prefill_lengths, "8192,32768,131072", "prefill: prompt lengths");
ABSL_FLAG(int64_t, prefill_repeats, 3, "prefill: timed runs per case");
ABSL_FLAG(std::string, trace_dir, "",
          "prefill: write a Kineto trace of one end-to-end run per case into this folder (CUDA "
          "builds)");
ABSL_FLAG(std::string, json_out, "", "write every figure to this file");

namespace kvserve::bench {
namespace {

std::vector<int64_t> ParseInts(const std::string& list) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(part, &value) || value < 1) {
      std::cerr << "kvserve-bench-engine: bad number '" << part << "'\n";
      std::exit(2);
    }
    out.push_back(value);
  }
  return out;
}

// POLICY[:N] → the spec and N (0 if absent).
std::pair<CacheSpec, int64_t> ParseCache(absl::string_view text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  auto kind = CachePolicyKindNamed(parts[0]);
  int64_t n = 0;
  if (!kind || parts.size() > 2 || (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &n))) {
    std::cerr << "kvserve-bench-engine: bad cache '" << text << "' (POLICY[:N])\n";
    std::exit(2);
  }
  CacheSpec spec;
  spec.kind = *kind;
  if (*kind != CachePolicyKind::kFull) spec.budget_tokens = n;
  return {spec, n};
}

std::unique_ptr<LlamaModel> LoadModel(int64_t max_decode_batch) {
  ModelOptions options;
  auto dtype = ParseDtype(absl::GetFlag(FLAGS_dtype));
  auto device = ParseDevice(absl::GetFlag(FLAGS_device));
  if (!dtype.ok() || !device.ok()) {
    std::cerr << "kvserve-bench-engine: " << (dtype.ok() ? device.status() : dtype.status())
              << "\n";
    std::exit(2);
  }
  options.dtype = *dtype;
  options.device = *device;
  options.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  options.max_decode_batch = max_decode_batch;
  auto model = LlamaModel::Load(absl::GetFlag(FLAGS_model), options);
  if (!model.ok()) {
    std::cerr << "kvserve-bench-engine: " << model.status() << "\n";
    std::exit(1);
  }
  return std::move(*model);
}

void RunPrefill(nlohmann::json& out) {
  auto model = LoadModel(1);
  const CritiPrefillParams defaults;
  std::printf(
      "\n| model | prompt tokens | prefill | end to end ms | attention ms (one layer) | "
      "skipped | sparse attention ms | TFLOP/s | mma kernel ms | TFLOP/s |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n");
  for (int64_t tokens : ParseInts(absl::GetFlag(FLAGS_prefill_lengths))) {
    for (const CritiPrefillParams* params :
         {static_cast<const CritiPrefillParams*>(nullptr), &defaults}) {
      const char* name = params == nullptr ? "dense" : "CritiPrefill";
      const std::string dir = absl::GetFlag(FLAGS_trace_dir);
      const std::string trace = dir.empty()
                                    ? ""
                                    : absl::StrCat(dir, "/prefill-", tokens, "-",
                                                   params ? "critiprefill" : "dense", ".json");
      const PrefillTimes t =
          TimePrefill(*model, tokens, params, absl::GetFlag(FLAGS_prefill_repeats), trace);
      std::printf("| %s | %lld | %s | %.1f | %.2f | %.3f | %.2f | %.0f | %.2f | %.0f |\n",
                  absl::GetFlag(FLAGS_model).c_str(), static_cast<long long>(tokens), name,
                  t.end_to_end_ms, t.attention_ms, t.skipped_fraction, t.sparse_ms, t.sparse_tflops,
                  t.kernel_ms, t.kernel_tflops);
      std::fflush(stdout);
      out["prefill"].push_back({{"tokens", tokens},
                                {"mode", name},
                                {"end_to_end_ms", t.end_to_end_ms},
                                {"attention_ms", t.attention_ms},
                                {"skipped_fraction", t.skipped_fraction},
                                {"sparse_ms", t.sparse_ms},
                                {"sparse_tflops", t.sparse_tflops},
                                {"kernel_ms", t.kernel_ms},
                                {"kernel_tflops", t.kernel_tflops}});
    }
  }
}

void RunDecode(nlohmann::json& out) {
  const auto batches = ParseInts(absl::GetFlag(FLAGS_batches));
  auto model = LoadModel(*std::max_element(batches.begin(), batches.end()));
  std::printf(
      "\n| model | cache | batch | step ms (p50) | p90 | device ms | maintenance ms | "
      "tokens/s | KV GiB |\n|---|---|---|---|---|---|---|---|---|\n");
  for (absl::string_view text : absl::StrSplit(absl::GetFlag(FLAGS_caches), ',')) {
    auto [spec, n] = ParseCache(text);
    for (int64_t batch : batches) {
      DecodeCase c{spec,
                   batch,
                   spec.kind == CachePolicyKind::kFull ? n : spec.budget_tokens,
                   absl::GetFlag(FLAGS_steps),
                   absl::GetFlag(FLAGS_warmup),
                   absl::GetFlag(FLAGS_profiler_range)};
      auto result = RunDecodeCase(*model, c);
      if (!result.ok()) {
        std::cerr << "kvserve-bench-engine: " << text << " batch " << batch << ": "
                  << result.status() << "\n";
        std::exit(1);
      }
      nlohmann::json row = {{"model", absl::GetFlag(FLAGS_model)},
                            {"cache", std::string(text)},
                            {"batch", batch},
                            {"fits", result->fits},
                            {"kv_bytes", result->kv_bytes}};
      if (!result->fits) {
        std::printf("| %s | %s | %lld | does not fit | | | | | %.1f |\n",
                    absl::GetFlag(FLAGS_model).c_str(), std::string(text).c_str(),
                    static_cast<long long>(batch), result->kv_bytes / 1073741824.0);
      } else {
        std::printf("| %s | %s | %lld | %.3f | %.3f | %.3f | %.3f | %.0f | %.1f |\n",
                    absl::GetFlag(FLAGS_model).c_str(), std::string(text).c_str(),
                    static_cast<long long>(batch), result->step_ms, result->step_ms_p90,
                    result->device_step_ms, result->maintenance_ms, result->tokens_per_s,
                    result->kv_bytes / 1073741824.0);
        row.update({{"step_ms", result->step_ms},
                    {"step_ms_p90", result->step_ms_p90},
                    {"device_step_ms", result->device_step_ms},
                    {"maintenance_ms", result->maintenance_ms},
                    {"tokens_per_s", result->tokens_per_s}});
      }
      std::fflush(stdout);
      out["decode"].push_back(row);
    }
  }
}

std::unique_ptr<Engine> StartEngine() {
  EngineConfig config;
  config.model = absl::GetFlag(FLAGS_model);
  config.dtype = absl::GetFlag(FLAGS_dtype);
  config.device = absl::GetFlag(FLAGS_device);
  config.kv_cache_bytes = static_cast<int64_t>(absl::GetFlag(FLAGS_kv_cache_gb) * (1LL << 30));
  if (config.kv_cache_bytes == 0 && config.device == "cpu") config.kv_cache_bytes = 1LL << 30;
  config.max_running = absl::GetFlag(FLAGS_max_running);
  config.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  config.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  config.max_new_tokens_limit = 1 << 20;
  config.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  auto engine = Engine::Create(config);
  if (!engine.ok()) {
    std::cerr << "kvserve-bench-engine: " << engine.status() << "\n";
    std::exit(1);
  }
  return std::move(*engine);
}

void RunTtft(Engine& engine, nlohmann::json& out) {
  std::printf("\n| model | prompt tokens | TTFT ms (p50) | min | max |\n|---|---|---|---|---|\n");
  for (int64_t prompt : ParseInts(absl::GetFlag(FLAGS_ttft_prompts))) {
    auto result = MeasureTtft(engine, prompt, absl::GetFlag(FLAGS_ttft_repeats));
    if (!result.ok()) {
      std::cerr << "kvserve-bench-engine: TTFT " << prompt << ": " << result.status() << "\n";
      std::exit(1);
    }
    std::printf("| %s | %lld | %.1f | %.1f | %.1f |\n", absl::GetFlag(FLAGS_model).c_str(),
                static_cast<long long>(prompt), result->median_ms, result->min_ms, result->max_ms);
    std::fflush(stdout);
    out["ttft"].push_back({{"prompt_tokens", prompt},
                           {"median_ms", result->median_ms},
                           {"min_ms", result->min_ms},
                           {"max_ms", result->max_ms}});
  }
}

void RunWorkloadMode(Engine& engine, nlohmann::json& out) {
  WorkloadSpec spec;
  spec.num_requests = absl::GetFlag(FLAGS_requests);
  spec.concurrency = absl::GetFlag(FLAGS_concurrency);
  spec.prompt_tokens = absl::GetFlag(FLAGS_prompt_len);
  spec.output_tokens = absl::GetFlag(FLAGS_output_len);
  spec.cache = ParseCache(absl::GetFlag(FLAGS_cache)).first;
  auto result = RunWorkload(engine, spec);
  if (!result.ok()) {
    std::cerr << "kvserve-bench-engine: workload: " << result.status() << "\n";
    std::exit(1);
  }
  std::printf(
      "\n| requests | failed | concurrency | prompt | output | seconds | output tokens/s |\n"
      "|---|---|---|---|---|---|---|\n| %lld | %lld | %lld | %lld | %lld | %.2f | %.0f |\n",
      static_cast<long long>(result->requests), static_cast<long long>(result->failed),
      static_cast<long long>(spec.concurrency), static_cast<long long>(spec.prompt_tokens),
      static_cast<long long>(spec.output_tokens), result->seconds, result->output_tokens_per_s);
  out["workload"] = {{"requests", result->requests},
                     {"failed", result->failed},
                     {"concurrency", spec.concurrency},
                     {"prompt_tokens", spec.prompt_tokens},
                     {"output_tokens", spec.output_tokens},
                     {"seconds", result->seconds},
                     {"output_tokens_per_s", result->output_tokens_per_s}};
}

int Run() {
  nlohmann::json out;
  out["model"] = absl::GetFlag(FLAGS_model);
  out["dtype"] = absl::GetFlag(FLAGS_dtype);
  const std::vector<std::string> modes = absl::StrSplit(absl::GetFlag(FLAGS_modes), ',');
  auto has = [&](const char* mode) { return std::count(modes.begin(), modes.end(), mode) > 0; };
  if (has("decode")) RunDecode(out);
  if (has("prefill")) RunPrefill(out);
  if (has("ttft") || has("workload")) {
    auto engine = StartEngine();
    if (has("ttft")) RunTtft(*engine, out);
    if (has("workload")) RunWorkloadMode(*engine, out);
  }
  if (const std::string path = absl::GetFlag(FLAGS_json_out); !path.empty()) {
    std::ofstream(path) << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace kvserve::bench

int main(int argc, char** argv) {
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view path) {
    return path.find("bench/") != absl::string_view::npos;
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "kvserve-bench-engine: decode steps, TTFT and a workload through the engine alone.\n"
      "usage: kvserve-bench-engine [--model dummy:llama-3-8b] [--modes decode,ttft,workload] ...");
  std::vector<std::string> storage;
  std::vector<char*> args = kvserve::UnderscoreFlagNames(argc, argv, storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  spdlog::set_level(spdlog::level::warn);  // no line per finished request
  return kvserve::bench::Run();
}
