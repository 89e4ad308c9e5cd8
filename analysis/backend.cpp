// Backend dispatch (analysis/backend.h). The CPU branch calls the reference directly. The
// CUDA branch is the seam the CUDA backend fills: it needs from kernels/ a device count
// (kernels::cuda_device_count()) and a small host<->device buffer helper; until those land,
// a CUDA build reports the missing dispatch instead of guessing.
#include "analysis/backend.h"

#include <omp.h>

#include <stdexcept>
#include <string>

#include "core/errors.h"
#include "kernels/backend.h"

namespace moba::analysis {
namespace {

void check(const char* reason, const char* op) {
  if (reason) throw std::logic_error(std::string(op) + ": invalid parameters: " + reason);
}

int gpu_count() {
#ifdef MOBA_HAVE_CUDA
  return kernels::cuda_device_count();
#else
  return 0;
#endif
}

[[noreturn]] void cuda_dispatch_missing(const char* op) {
  throw std::runtime_error(std::string(op) +
                           ": the CUDA dispatch is not wired in analysis/backend.cpp yet; use --device cpu");
}

}  // namespace

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

DeviceInfo resolve_device(const std::string& request) {
  if (request != "cpu" && request != "cuda" && request != "auto")
    throw UsageError("--device: '" + request + "' is not one of cpu|cuda|auto");
  const bool want_cuda = request == "cuda";
  const bool cuda_ok = kernels::cuda_compiled() && gpu_count() > 0;
  if (want_cuda && !kernels::cuda_compiled())
    throw UsageError("--device cuda: CUDA requested but this build has no CUDA backend");
  if (want_cuda && !cuda_ok) throw UsageError("--device cuda: no GPU found");
  DeviceInfo info;
  if (request != "cpu" && cuda_ok) {
    info.device = Device::cuda;
    info.description = "cuda";
  } else {
    info.device = Device::cpu;
    info.description = "cpu (" + std::to_string(omp_get_max_threads()) + " threads)";
  }
  return info;
}

void run_block_pool(const kernels::BlockPoolParams& p, Device d) {
  check(kernels::block_pool_can_run(p), "block_pool");
  if (d == Device::cuda) cuda_dispatch_missing("block_pool");
  kernels::block_pool_cpu(p);
}

void run_kconv(const kernels::KconvParams& p, Device d) {
  check(kernels::kconv_can_run(p), "kconv");
  if (d == Device::cuda) cuda_dispatch_missing("kconv");
  kernels::kconv_cpu(p);
}

void run_gate_topk(const kernels::GateTopkParams& p, Device d) {
  check(kernels::gate_topk_can_run(p), "gate_topk");
  if (d == Device::cuda) cuda_dispatch_missing("gate_topk");
  kernels::gate_topk_cpu(p);
}

void run_moba_attention(const kernels::MobaAttentionParams& p, Device d) {
  check(kernels::moba_attention_can_run(p), "moba_attention");
  if (d == Device::cuda) cuda_dispatch_missing("moba_attention");
  kernels::moba_attention_cpu(p);
}

void run_dense_pass(const kernels::DensePassParams& p, Device d) {
  check(kernels::dense_pass_can_run(p), "dense_pass");
  if (d == Device::cuda) cuda_dispatch_missing("dense_pass");
  kernels::dense_pass_cpu(p);
}

}  // namespace moba::analysis
