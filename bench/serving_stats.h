// What kvserve-bench-serving measures per request, and the summary it reports (vLLM's
// benchmark_serving metrics: TTFT, TPOT, ITL, E2E latency, throughputs), as a table and as JSON.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kvserve::bench {

struct RequestRecord {
  bool ok = false;
  std::string error_code;  // gRPC status name when !ok
  std::string policy;      // cache policy name
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  double ttft_s = 0;          // send → first message with tokens
  double e2e_s = 0;           // send → end of stream
  std::vector<double> itl_s;  // gaps between messages after the first (one per message)
};

// Mean, median and tail percentiles of one metric, in milliseconds.
struct Distribution {
  double mean = 0, median = 0, p90 = 0, p99 = 0, max = 0;
  int64_t count = 0;
};
Distribution Summarize(std::vector<double> seconds);

struct BenchSummary {
  int64_t requests = 0;
  int64_t succeeded = 0;
  std::map<std::string, int64_t> errors;  // by gRPC code name
  double duration_s = 0;
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  double request_throughput = 0;  // succeeded requests / s
  double output_throughput = 0;   // output tokens / s
  double total_throughput = 0;    // (prompt + output) tokens / s
  Distribution ttft, tpot, itl, e2e;
};

BenchSummary SummarizeRun(const std::vector<RequestRecord>& records, double duration_s);
std::string FormatTable(const BenchSummary& summary);
nlohmann::json ToJson(const BenchSummary& summary);

}  // namespace kvserve::bench
