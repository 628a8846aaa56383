// A throw-away model folder for tokenizer tests: write tokenizer.json and configs, load, delete.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace kvserve::testing {

class TempModelDir {
 public:
  TempModelDir() {
    static std::atomic<int> counter{0};
    path_ =
        std::filesystem::temp_directory_path() /
        ("kvserve_tokenizer_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempModelDir() { std::filesystem::remove_all(path_); }
  TempModelDir(const TempModelDir&) = delete;
  TempModelDir& operator=(const TempModelDir&) = delete;

  void Write(const std::string& name, const std::string& contents) const {
    std::ofstream(path_ / name, std::ios::binary) << contents;
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// Loads `dir` and fails the test (returning nullptr) on error.
inline std::unique_ptr<Tokenizer> LoadOrFail(const std::string& dir,
                                             const std::string& backend = "") {
  auto tokenizer = backend.empty() ? Tokenizer::Load(dir) : Tokenizer::Load(dir, backend);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

}  // namespace kvserve::testing
