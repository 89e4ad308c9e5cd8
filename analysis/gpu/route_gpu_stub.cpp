// analysis/gpu/route_gpu.h in a build without the CUDA backend: never supported.
#include <stdexcept>

#include "analysis/gpu/route_gpu.h"

namespace moba::analysis {

std::string route_gpu_unsupported(RouterKind, int64_t, int64_t, int64_t) { return "this build has no CUDA backend"; }

void route_group_gpu(const TensorView&, const TensorView&, DType, RouterKind, const RoutingOptions&, int64_t, int,
                     int32_t*) {
  throw std::logic_error("route_group_gpu: this build has no CUDA backend");
}

}  // namespace moba::analysis
