// Backend availability, shared by every op's dispatch.
#include "kernels/backend.h"

namespace moba::kernels {

bool cuda_compiled() {
#ifdef MOBA_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace moba::kernels
