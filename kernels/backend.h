#pragma once
// Which backends this build has. Ops declare `*_cpu` and, when MOBA_HAVE_CUDA, `*_cuda`.

namespace moba::kernels {

bool cuda_compiled();  // true when built with MOBA_CUDA

#ifdef MOBA_HAVE_CUDA
// Number of usable CUDA devices (0 when none or the driver is missing; never throws).
// Device buffers, copies, timers and the device name: kernels/cuda_runtime.h.
int cuda_device_count();
#endif

}  // namespace moba::kernels
