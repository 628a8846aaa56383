// The engine configuration the scheduler's tests share: the real stories260K model on the test
// device with a 64 MiB KV pool, the other limits at their defaults.
#pragma once

#include "scheduler/engine.h"
#include "tests/test_support.h"

namespace kvserve::testing {

inline EngineConfig StoriesEngineConfig() {
  EngineConfig config;
  config.model = Stories260kDir();
  config.device = TestDevice();
  config.kv_cache_bytes = 64 << 20;
  return config;
}

}  // namespace kvserve::testing
