// Backend dispatch (analysis/backend.h). The CPU branch calls the reference directly; the
// CUDA branch calls the op's host-staging twin (kernels/dispatch.h: upload, run, synchronise,
// download per call; a chunked analysis re-uploads the prefix of q/k/v it needs for each
// chunk; keeping a KV group resident on the device is the next step for long dumps).
#include "analysis/backend.h"

#include <omp.h>

#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/errors.h"
#include "kernels/backend.h"
#include "kernels/dispatch.h"

namespace moba::analysis {
namespace {

void check(const char* reason, const char* op) {
  if (reason) throw std::logic_error(std::string(op) + ": invalid parameters: " + reason);
}

// Device::cuda in a build without the backend is a programming error (resolve_device never
// returns it there).
void require_cuda_backend(const char* fn) {
  if (!kernels::cuda_compiled())
    throw std::logic_error(std::string(fn) + ": Device::cuda in a build without the CUDA backend");
}

void cuda_check(const char* op, const char* err) {
  if (err) throw std::runtime_error(std::string(op) + " (cuda): " + err + ": " + kernels::cuda_last_error_detail());
}

// Head dims the CUDA ops take (moba_attention_cuda / dense_pass_cuda: multiples of 8 up to
// 128, 8..64 padded to 64; gate_topk_cuda: up to 128). Others run on the CPU reference, with
// one note per op and process on stderr (the CPU accepts any head dim).
bool cuda_takes_head_dim(const char* op, int64_t d, bool multiple_of_8) {
  if (d <= 128 && (!multiple_of_8 || d % 8 == 0)) return true;
  static std::mutex mu;
  static bool noted[3] = {};
  const int slot = op[0] == 'g' ? 0 : op[0] == 'm' ? 1 : 2;
  const std::lock_guard<std::mutex> lock(mu);
  if (!noted[slot]) {
    noted[slot] = true;
    std::fprintf(stderr, "note: %s: head dim %lld is not supported by the CUDA kernels (%s); it runs on the CPU\n",
                 op, static_cast<long long>(d), multiple_of_8 ? "multiples of 8 up to 128" : "up to 128");
  }
  return false;
}

}  // namespace

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

DeviceInfo resolve_device(const std::string& request) {
  if (request != "cpu" && request != "cuda" && request != "auto")
    throw UsageError("--device: '" + request + "' is not one of cpu|cuda|auto");
  const bool want_cuda = request == "cuda";
  // `cpu` asks nothing of CUDA (its start costs ~0.3 s on a GPU machine); the others the device
  // count and name only: the context comes with the first CUDA call (or, made beside the input
  // reads, kernels::cuda_create_context).
  const bool cuda_ok = request != "cpu" && kernels::cuda_compiled() && kernels::cuda_device_count() > 0;
  if (want_cuda && !kernels::cuda_compiled())
    throw UsageError("--device cuda: CUDA requested but this build has no CUDA backend");
  if (want_cuda && !cuda_ok) throw UsageError("--device cuda: no GPU found");
  DeviceInfo info;
  if (request != "cpu" && cuda_ok) {
    info.device = Device::cuda;
    info.description = "cuda (" + kernels::cuda_device_name() + ")";
  } else {
    info.device = Device::cpu;
    info.description = "cpu (" + std::to_string(omp_get_max_threads()) + " threads)";
  }
  return info;
}

void run_block_pool(const kernels::BlockPoolParams& p, Device d) {
  check(kernels::block_pool_can_run(p), "block_pool");
  if (d == Device::cpu) return kernels::block_pool_cpu(p);
  require_cuda_backend(__func__);
  cuda_check("block_pool", kernels::block_pool_cuda_from_host(p));
}

void run_kconv(const kernels::KconvParams& p, Device d) {
  check(kernels::kconv_can_run(p), "kconv");
  if (d == Device::cpu) return kernels::kconv_cpu(p);
  require_cuda_backend(__func__);
  cuda_check("kconv", kernels::kconv_cuda_from_host(p));
}

void run_gate_topk(const kernels::GateTopkParams& p, Device d) {
  check(kernels::gate_topk_can_run(p), "gate_topk");
  if (d == Device::cpu || !cuda_takes_head_dim("gate_topk", p.q.head_dim, false)) return kernels::gate_topk_cpu(p);
  require_cuda_backend(__func__);
  cuda_check("gate_topk", kernels::gate_topk_cuda_from_host(p));
}

void run_moba_attention(const kernels::MobaAttentionParams& p, Device d) {
  check(kernels::moba_attention_can_run(p), "moba_attention");
  if (d == Device::cpu || !cuda_takes_head_dim("moba_attention", p.q.head_dim, true))
    return kernels::moba_attention_cpu(p);
  require_cuda_backend(__func__);
  cuda_check("moba_attention", kernels::moba_attention_cuda_from_host(p));
}

void run_dense_pass(const kernels::DensePassParams& p, Device d) {
  check(kernels::dense_pass_can_run(p), "dense_pass");
  if (d == Device::cpu || !cuda_takes_head_dim("dense_pass", p.q.head_dim, true)) return kernels::dense_pass_cpu(p);
  require_cuda_backend(__func__);
  cuda_check("dense_pass", kernels::dense_pass_cuda_from_host(p));
}

}  // namespace moba::analysis
