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
std::string cuda_device_name();        // e.g. "NVIDIA H100 80GB HBM3"; "" when none (no context made)
// Makes the current device's CUDA context now (it otherwise comes with the first CUDA call,
// ~0.1 s on an H200), so that a caller can have it made on a thread of its own while it reads
// its inputs. False when none can be made; never throws.
bool cuda_create_context();
std::string cuda_last_error_detail();  // the CUDA error of this thread's last failure; "" without CUDA
// Provenance queries; none of them makes a CUDA context (a sweep's parent process asks them
// while its children hold the GPUs). Never throw.
int cuda_device_count();                 // visible CUDA devices; 0 without the backend or a driver
std::string cuda_device_name(int device);  // name of visible device `device`; "" when none
std::string cuda_driver_version();       // newest CUDA version the driver supports, "13.0"; "" when none
std::string cuda_runtime_version();      // CUDA runtime of this build, "13.0"; "" without CUDA

}  // namespace moba::kernels
