#pragma once
// Which backends this build has. Ops declare `*_cpu` and, when MOBA_HAVE_CUDA, `*_cuda`.

namespace moba::kernels {

bool cuda_compiled();  // true when built with MOBA_CUDA

}  // namespace moba::kernels
