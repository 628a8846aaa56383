#include "bench/serving_stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

namespace kvserve::bench {
namespace {

// Linear interpolation between closest ranks, as numpy.percentile (vLLM's choice).
double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double rank = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

nlohmann::json ToJson(const Distribution& d) {
  return {{"mean_ms", d.mean}, {"median_ms", d.median}, {"p90_ms", d.p90},
          {"p99_ms", d.p99},   {"max_ms", d.max},       {"count", d.count}};
}

std::string Line(const char* name, const Distribution& d) {
  char buffer[160];
  std::snprintf(buffer, sizeof(buffer), "%-10s %10.2f %10.2f %10.2f %10.2f %10.2f\n", name, d.mean,
                d.median, d.p90, d.p99, d.max);
  return buffer;
}

}  // namespace

Distribution Summarize(std::vector<double> seconds) {
  Distribution d;
  if (seconds.empty()) return d;
  for (double& s : seconds) s *= 1000.0;
  std::sort(seconds.begin(), seconds.end());
  d.count = static_cast<int64_t>(seconds.size());
  d.mean = std::accumulate(seconds.begin(), seconds.end(), 0.0) / static_cast<double>(d.count);
  d.median = Percentile(seconds, 50);
  d.p90 = Percentile(seconds, 90);
  d.p99 = Percentile(seconds, 99);
  d.max = seconds.back();
  return d;
}

BenchSummary SummarizeRun(const std::vector<RequestRecord>& records, double duration_s) {
  BenchSummary s;
  s.requests = static_cast<int64_t>(records.size());
  s.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  for (const RequestRecord& r : records) {
    if (!r.ok) {
      ++s.errors[r.error_code];
      continue;
    }
    ++s.succeeded;
    s.prompt_tokens += r.prompt_tokens;
    s.output_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s);
    e2e.push_back(r.e2e_s);
    if (r.output_tokens > 1) {
      tpot.push_back((r.e2e_s - r.ttft_s) / static_cast<double>(r.output_tokens - 1));
    }
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
  }
  if (duration_s > 0) {
    s.request_throughput = static_cast<double>(s.succeeded) / duration_s;
    s.output_throughput = static_cast<double>(s.output_tokens) / duration_s;
    s.total_throughput = static_cast<double>(s.prompt_tokens + s.output_tokens) / duration_s;
  }
  s.ttft = Summarize(std::move(ttft));
  s.tpot = Summarize(std::move(tpot));
  s.itl = Summarize(std::move(itl));
  s.e2e = Summarize(std::move(e2e));
  return s;
}

std::string FormatTable(const BenchSummary& s) {
  std::string out;
  char buffer[160];
  auto row = [&](const char* name, const std::string& value) {
    std::snprintf(buffer, sizeof(buffer), "%-36s %s\n", name, value.c_str());
    out += buffer;
  };
  out += "============ Serving Benchmark Result ============\n";
  row("Successful requests:", std::to_string(s.succeeded) + " / " + std::to_string(s.requests));
  for (const auto& [code, n] : s.errors) row(("Failed (" + code + "):").c_str(), std::to_string(n));
  std::snprintf(buffer, sizeof(buffer), "%.2f", s.duration_s);
  row("Benchmark duration (s):", buffer);
  row("Total input tokens:", std::to_string(s.prompt_tokens));
  row("Total generated tokens:", std::to_string(s.output_tokens));
  std::snprintf(buffer, sizeof(buffer), "%.2f", s.request_throughput);
  row("Request throughput (req/s):", buffer);
  std::snprintf(buffer, sizeof(buffer), "%.2f", s.output_throughput);
  row("Output token throughput (tok/s):", buffer);
  std::snprintf(buffer, sizeof(buffer), "%.2f", s.total_throughput);
  row("Total token throughput (tok/s):", buffer);
  out += "------------------ Latency (ms) ------------------\n";
  std::snprintf(buffer, sizeof(buffer), "%-10s %10s %10s %10s %10s %10s\n", "metric", "mean",
                "median", "p90", "p99", "max");
  out += buffer;
  out += Line("TTFT", s.ttft) + Line("TPOT", s.tpot) + Line("ITL", s.itl) + Line("E2E", s.e2e);
  out += "==================================================\n";
  return out;
}

nlohmann::json ToJson(const BenchSummary& s) {
  return {{"requests", s.requests},
          {"succeeded", s.succeeded},
          {"errors", s.errors},
          {"duration_s", s.duration_s},
          {"total_input_tokens", s.prompt_tokens},
          {"total_output_tokens", s.output_tokens},
          {"request_throughput", s.request_throughput},
          {"output_throughput", s.output_throughput},
          {"total_token_throughput", s.total_throughput},
          {"ttft", ToJson(s.ttft)},
          {"tpot", ToJson(s.tpot)},
          {"itl", ToJson(s.itl)},
          {"e2e_latency", ToJson(s.e2e)}};
}

}  // namespace kvserve::bench
