#pragma once
// Backend dispatch for the analysis layer: which device runs the kernels, and one `run_*`
// per op that validates the params once (can_run) and calls the CPU reference or, in a
// CUDA build with a GPU, the CUDA twin through its host staging (kernels/dispatch.h)
// (DESIGN.md §8, issue 4 item 2).
//
// Contract of every run_*: the params hold HOST pointers, exactly as the CPU reference
// takes them; the CUDA branch copies inputs to device buffers, runs `*_cuda` and copies the
// outputs back, so callers never see device memory. A params struct that fails can_run is
// a programming error (std::logic_error naming the op and the reason), never bad input.
//
// Device selection (`--device cpu|cuda|auto`):
//   cpu  — always the CPU reference.
//   cuda — the CUDA backend; UsageError "CUDA requested but this build has no CUDA backend"
//          when built without MOBA_CUDA, "no GPU found" when no device is visible.
//   auto — CUDA when compiled in and a GPU is present, else the CPU.
// Backends agree as DESIGN.md §8 says: selections as sets except at exact score ties,
// outputs within the per-dtype tolerance table.
#include <string>

#include "kernels/block_pool.h"
#include "kernels/dense_pass.h"
#include "kernels/gate_topk.h"
#include "kernels/kconv.h"
#include "kernels/moba_attention.h"

namespace moba::analysis {

enum class Device { cpu, cuda };

struct DeviceInfo {
  Device device = Device::cpu;
  std::string description;  // what ran, for output and run records: "cpu (2 threads)"
};

// request is "cpu", "cuda" or "auto"; throws UsageError as described above.
DeviceInfo resolve_device(const std::string& request);
const char* device_name(Device d);  // "cpu" or "cuda"

void run_block_pool(const kernels::BlockPoolParams& p, Device d);
void run_kconv(const kernels::KconvParams& p, Device d);
void run_gate_topk(const kernels::GateTopkParams& p, Device d);
void run_moba_attention(const kernels::MobaAttentionParams& p, Device d);
void run_dense_pass(const kernels::DensePassParams& p, Device d);

}  // namespace moba::analysis
