#pragma once
// route_group's routing on the device (analysis/router.h, `moba route --device cuda`) for the
// routers without their own CUDA op: the block-score routers (quest, minference-bs,
// sink-window, moba-threshold, nsa-shared) and the oracles (oracle, oracle-topp). Their rows
// come from the GPU analysis' kernels (analysis/gpu/block_rows.h: the CPU's score bits), the
// oracles' from the CUDA dense pass, and every selection from its row selector (the CPU's
// order and tie rule), so the score-row routers select exactly as the CPU does; the oracles
// as the CPU does on the dense pass's masses of this device. moba and moba-kconv have
// kernels/gate_topk.h.
#include <cstdint>
#include <string>

#include "analysis/router.h"

namespace moba::analysis {

// Empty when route_group_gpu routes `router` for a KV group of this shape; otherwise why not,
// in words for the user (route_group then routes on the host).
std::string route_gpu_unsupported(RouterKind router, int64_t n_tokens, int64_t head_dim, int64_t block_size);

// route_group's selection on the current CUDA device: q [G, T, d] (the group's heads) and
// k [1, T, d] host views; selected [G, T, top_k] on the host. Throws std::runtime_error
// naming the failed CUDA step.
void route_group_gpu(const TensorView& q, const TensorView& k, DType dump_dtype, RouterKind router,
                     const RoutingOptions& opt, int64_t block_size, int top_k, int32_t* selected);

}  // namespace moba::analysis
