// kvserve-cli generate: the offline front door, like llama.cpp's CLI. Runs one request through the
// same engine the server uses, so what it prints is what the server would stream.
#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "scheduler/engine.h"
#include "tokenizer/tokenizer.h"

namespace kvserve {
namespace {

// Events handed from the engine thread to the printing thread.
class EventQueue {
 public:
  TokenSink Sink() {
    return [this](TokenEvent event) {
      std::lock_guard lock(mutex_);
      events_.push_back(std::move(event));
      ready_.notify_one();
    };
  }
  TokenEvent Pop() {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return !events_.empty(); });
    TokenEvent event = std::move(events_.front());
    events_.pop_front();
    return event;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<TokenEvent> events_;
};

}  // namespace

std::string DefaultModelDir() {
  const char* shared = std::getenv("KVSERVE_SHARED");
  return absl::StrCat(shared != nullptr && *shared ? shared : "../shared", "/models/stories260K");
}

int RunGenerateCommand(const std::vector<std::string>& args) {
  EngineConfig config;
  config.model = DefaultModelDir();
  std::string prompt;
  int64_t max_new_tokens = 64, top_k = 0, seed = -1;
  double temperature = 0, top_p = 1, min_p = 0, repetition_penalty = 1, kv_cache_gb = 1;
  bool json_output = false, ignore_eos = false;
  ArgParser parser("kvserve-cli generate --model DIR|dummy:NAME --prompt TEXT [options]");
  parser.AddString("model", &config.model, "Hugging Face model folder, or dummy:NAME");
  parser.AddString("prompt", &prompt, "the prompt text (BOS is added as the model asks)");
  parser.AddInt("max-new-tokens", &max_new_tokens, "tokens to generate at most");
  parser.AddDouble("temperature", &temperature, "sampling temperature; 0 is greedy");
  parser.AddInt("top-k", &top_k, "keep the k most likely tokens; 0 keeps all");
  parser.AddDouble("top-p", &top_p, "nucleus sampling mass in (0, 1]");
  parser.AddDouble("min-p", &min_p, "drop tokens below min-p times the most likely one");
  parser.AddDouble("repetition-penalty", &repetition_penalty, "Hugging Face's; 1 is off");
  parser.AddInt("seed", &seed, "random seed; -1 picks one");
  parser.AddBool("ignore-eos", &ignore_eos, "go on past the end-of-sequence token");
  parser.AddString("dtype", &config.dtype, "float32, bfloat16 or float16");
  parser.AddString("device", &config.device, "cpu, cuda or cuda:N");
  parser.AddDouble("kv-cache-gb", &kv_cache_gb, "KV pool size in GiB");
  parser.AddBool(
      "json", &json_output,
      "print one JSON object {prompt_ids, token_ids, text} at the end instead of streaming");
  const std::string command = "kvserve-cli generate";
  if (const int code = parser.ExitCode(parser.Parse(args), command); code >= 0) return code;
  spdlog::set_level(spdlog::level::warn);
  config.kv_cache_bytes = static_cast<int64_t>(kv_cache_gb * (1LL << 30));

  auto tokenizer = Tokenizer::Load(config.model);
  if (!tokenizer.ok()) {
    return Fail(command, tokenizer.status());
  }
  auto engine = Engine::Create(config);
  if (!engine.ok()) {
    return Fail(command, engine.status());
  }
  GenerationRequest request;
  request.request_id = "cli";
  request.prompt_ids = (*tokenizer)->Encode(prompt, /*add_bos=*/true);
  request.sampling.max_new_tokens = static_cast<int32_t>(max_new_tokens);
  request.sampling.temperature = static_cast<float>(temperature);
  request.sampling.top_k = static_cast<int32_t>(top_k);
  request.sampling.top_p = static_cast<float>(top_p);
  request.sampling.min_p = static_cast<float>(min_p);
  request.sampling.repetition_penalty = static_cast<float>(repetition_penalty);
  request.sampling.ignore_eos = ignore_eos;
  if (seed >= 0) request.sampling.seed = static_cast<uint64_t>(seed);

  EventQueue events;
  auto handle = (*engine)->Submit(request, events.Sink());
  if (!handle.ok()) {
    std::cerr << "kvserve-cli generate: " << handle.status().message() << "\n";
    return 2;
  }
  IncrementalDetokenizer detokenizer(**tokenizer);
  std::vector<int32_t> token_ids;
  std::string text;
  for (bool done = false; !done;) {
    TokenEvent event = events.Pop();
    std::string piece;
    for (int32_t id : event.token_ids) {
      token_ids.push_back(id);
      piece += detokenizer.Push(id);
    }
    if (event.finished) piece += detokenizer.Flush();
    text += piece;
    if (!json_output) std::cout << piece << std::flush;
    done = event.finished;
    if (done && !event.status.ok()) {
      std::cerr << "\nkvserve-cli generate: " << event.status.message() << "\n";
      return 1;
    }
    if (done && !json_output) {
      std::cout << "\n";
      std::cerr << "[" << FinishReasonName(event.finish_reason) << ", "
                << event.usage.completion_tokens << " tokens, first after "
                << event.usage.time_to_first_token_ms << " ms]\n";
    }
  }
  if (json_output) {
    nlohmann::json out = {
        {"prompt_ids", request.prompt_ids}, {"token_ids", token_ids}, {"text", text}};
    std::cout << out.dump() << "\n";
  }
  return 0;
}

}  // namespace kvserve
