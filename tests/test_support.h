// Test fixtures' access to ../shared (the real model and data). Tests that need it skip with a clear
// message where it is absent.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace kvserve::testing {

// The shared folder: $KVSERVE_SHARED, else the checkout's sibling ../shared.
inline std::string SharedDir() {
  const char* env = std::getenv("KVSERVE_SHARED");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(KVSERVE_DEFAULT_SHARED);
}

// The device tests run the model on: $KVSERVE_TEST_DEVICE ("cuda" on the GPU machine), else "cpu".
inline std::string TestDevice() {
  const char* env = std::getenv("KVSERVE_TEST_DEVICE");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string("cpu");
}

inline std::string Stories260kDir() { return SharedDir() + "/models/stories260K"; }

}  // namespace kvserve::testing

// Skips the current test when the stories260K model is not there.
#define KVSERVE_REQUIRE_STORIES260K()                                                     \
  do {                                                                                    \
    if (!std::filesystem::exists(::kvserve::testing::Stories260kDir() + "/config.json")) \
      GTEST_SKIP() << "stories260K not found at " << ::kvserve::testing::Stories260kDir() \
                   << " (set KVSERVE_SHARED to the shared folder)";                       \
  } while (0)
