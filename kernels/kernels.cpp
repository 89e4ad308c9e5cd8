// Backend availability (kernels/backend.h). With the CUDA backend the device functions live in
// kernels/cuda/cuda_runtime.cu; these are the stubs of a CPU-only build.
#include "kernels/backend.h"

namespace moba::kernels {

bool cuda_compiled() {
#ifdef MOBA_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

#ifndef MOBA_HAVE_CUDA
bool cuda_device_available() { return false; }
std::string cuda_device_name() { return ""; }
bool cuda_create_context() { return false; }
std::string cuda_last_error_detail() { return ""; }
int cuda_device_count() { return 0; }
std::string cuda_device_name(int) { return ""; }
std::string cuda_driver_version() { return ""; }
std::string cuda_runtime_version() { return ""; }
#endif

}  // namespace moba::kernels
