// Test helper: reads sample values out of a Prometheus text exposition.
#pragma once

#include <algorithm>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace kvserve::testing {

using LabelSet = std::map<std::string, std::string>;

// The value of the sample `name` whose labels are exactly `labels`, or nullopt if none is exposed.
// Handles the text format's simple cases: no escaped quotes or commas inside label values.
inline std::optional<double> SampleValue(const std::string& exposition, const std::string& name,
                                         const LabelSet& labels) {
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::string_view series(line);
    series = series.substr(0, series.rfind(' '));
    const size_t brace = series.find('{');
    if (series.substr(0, brace) != name) continue;
    LabelSet found;
    if (brace != std::string_view::npos) {
      std::string_view body = series.substr(brace + 1);
      body.remove_suffix(1);  // '}'
      while (!body.empty()) {
        const size_t eq = body.find('=');
        const size_t close = body.find('"', eq + 2);
        found.emplace(body.substr(0, eq), body.substr(eq + 2, close - eq - 2));
        body.remove_prefix(std::min(body.size(), close + 2));  // '",'
      }
    }
    if (found == labels) return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return std::nullopt;
}

}  // namespace kvserve::testing
