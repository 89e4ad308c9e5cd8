#pragma once
// Which backends this build has, and the CUDA device, in every build (no CUDA headers, no
// #ifdef for callers). Ops declare `*_cpu` and, when MOBA_HAVE_CUDA, `*_cuda`; host-memory
// callers reach the CUDA ops through kernels/dispatch.h. Device buffers, copies and timers:
// kernels/cuda_runtime.h (CUDA builds only).
#include <string>

namespace moba::kernels {

bool cuda_compiled();                  // true when built with MOBA_CUDA
// A CUDA device is present and a context can be made (false without the backend; never throws).
bool cuda_device_available();
std::string cuda_device_name();        // e.g. "NVIDIA H100 80GB HBM3"; "" when none
std::string cuda_last_error_detail();  // the CUDA error of this thread's last failure; "" without CUDA

}  // namespace moba::kernels
