// analysis/gpu/analyze_gpu.h in a build without the CUDA backend: never supported.
#include <stdexcept>

#include "analysis/gpu/analyze_gpu.h"

namespace moba::analysis {

std::string gpu_analysis_unsupported(const AnalyzeOptions&, const AnalyzePlan&, int64_t) {
  return "this build has no CUDA backend";
}

std::shared_ptr<void> upload_group_gpu(const TensorView&, const TensorView&, const TensorView&, DType, int) {
  throw std::logic_error("upload_group_gpu: this build has no CUDA backend");
}

std::shared_ptr<void> upload_group_gpu16(const uint16_t*, int64_t, const uint16_t*, const uint16_t*, int64_t, int64_t,
                                         DType, int) {
  throw std::logic_error("upload_group_gpu16: this build has no CUDA backend");
}

void analyze_group_gpu(const GroupInput&, const AnalyzeOptions&, const AnalyzePlan&, bool, Progress*,
                       const std::function<void(std::future<HeadMeasures>)>&, int) {
  throw std::logic_error("analyze_group_gpu: this build has no CUDA backend");
}

void release_gpus() noexcept {}

int analyze_gpu_heads_in_flight() { return 0; }

int64_t analyze_gpu_moments_in_dense() { return 0; }

int64_t analyze_gpu_row_launches_nc8() { return 0; }

}  // namespace moba::analysis
