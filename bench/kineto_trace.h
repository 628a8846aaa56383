// A Kineto (torch profiler) trace of one piece of work, CPU ops and CUDA kernels, saved as a Chrome
// trace (open in chrome://tracing or Perfetto). It shows what no wall-clock figure does: the device
// time of each kernel and where the device sat idle waiting for the host. CUDA builds with libtorch
// 2 only; elsewhere it just runs the work.
#pragma once

#include <torch/version.h>

#include <set>
#include <string>
#include <utility>

#if defined(KVSERVE_WITH_CUDA) && TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/autograd/profiler_kineto.h>
#endif

namespace kvserve::bench {

// Whether TraceToFile writes a trace in this build.
inline constexpr bool kCanTrace =
#if defined(KVSERVE_WITH_CUDA) && TORCH_VERSION_MAJOR >= 2
    true;
#else
    false;
#endif

template <typename Work>
void TraceToFile(const std::string& path, Work&& work) {
#if defined(KVSERVE_WITH_CUDA) && TORCH_VERSION_MAJOR >= 2
  namespace impl = torch::profiler::impl;
  const impl::ProfilerConfig config(impl::ProfilerState::KINETO);
  const std::set<impl::ActivityType> activities{impl::ActivityType::CPU, impl::ActivityType::CUDA};
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  std::forward<Work>(work)();
  torch::autograd::profiler::disableProfiler()->save(path);
#else
  (void)path;
  std::forward<Work>(work)();
#endif
}

}  // namespace kvserve::bench
