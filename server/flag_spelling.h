// Abseil names flags with '_' (they are C++ identifiers); kvserve documents them with '-'. Both
// spellings are accepted by rewriting "--a-b[=v]" to "--a_b[=v]" before absl::ParseCommandLine.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace kvserve {

// Returns argv with dashes in flag names turned into underscores; `storage` owns the strings.
inline std::vector<char*> UnderscoreFlagNames(int argc, char** argv,
                                              std::vector<std::string>& storage) {
  storage.assign(argv, argv + argc);
  for (size_t i = 1; i < storage.size(); ++i) {
    std::string& arg = storage[i];
    if (arg == "--") break;
    if (arg.rfind("--", 0) != 0) continue;
    const size_t end = std::min(arg.find('='), arg.size());
    std::replace(arg.begin() + 2, arg.begin() + static_cast<std::ptrdiff_t>(end), '-', '_');
  }
  std::vector<char*> out;
  for (std::string& arg : storage) out.push_back(arg.data());
  return out;
}

}  // namespace kvserve
