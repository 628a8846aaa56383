#include "server/stop_string_scanner.h"

#include <algorithm>
#include <utility>

namespace kvserve {

StopStringScanner::StopStringScanner(std::vector<std::string> stops) : stops_(std::move(stops)) {}

StopStringScanner::Result StopStringScanner::Push(const std::string& piece) {
  if (stopped_) return {};
  held_ += piece;
  if (stops_.empty()) return {std::exchange(held_, {}), false};
  // The earliest stop string wins.
  size_t first = std::string::npos;
  for (const std::string& stop : stops_) first = std::min(first, held_.find(stop));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string text = held_.substr(0, first);
    held_.clear();
    return {std::move(text), true};
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& stop : stops_) {
    for (size_t n = std::min(stop.size() - 1, held_.size()); n > keep; --n) {
      if (held_.compare(held_.size() - n, n, stop, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  std::string text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return {std::move(text), false};
}

std::string StopStringScanner::Flush() {
  return stopped_ ? std::string() : std::exchange(held_, {});
}

}  // namespace kvserve
