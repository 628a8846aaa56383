// Finds stop strings in streamed text. Text that might be the start of a stop string is held back
// until the next piece tells, so no text past a stop string is ever released. Not thread-safe: one
// per stream.
#pragma once

#include <string>
#include <vector>

namespace kvserve {

class StopStringScanner {
 public:
  // REQUIRES: every stop string is non-empty.
  explicit StopStringScanner(std::vector<std::string> stops);

  struct Result {
    std::string text;      // safe to send now
    bool stopped = false;  // a stop string was found; `text` ends right before it
  };
  // Adds a piece of text. After a stop, further pieces are ignored.
  Result Push(const std::string& piece);
  // The held-back text, at the end of the stream (nothing after a stop).
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace kvserve
