#pragma once
// Host<->device staging of one op call, for callers that hold host memory (analysis/). The
// params hold HOST pointers, exactly as the CPU reference takes them (`*_can_run` passes);
// each `*_cuda_from_host` copies the inputs to device buffers (a view's rows outside the
// range the op reads are zero-filled, not copied), runs the CUDA op on the default stream,
// synchronises and copies the outputs back, so the caller never sees device memory. Costs
// one host<->device round trip per call.
//
// Returns nullptr or a static message naming the failed step; cuda_last_error_detail()
// (kernels/backend.h) adds the CUDA error. In a build without the CUDA backend every one
// returns kNoCudaBackend and touches nothing.
#include "kernels/block_pool.h"
#include "kernels/dense_pass.h"
#include "kernels/gate_topk.h"
#include "kernels/kconv.h"
#include "kernels/moba_attention.h"

namespace moba::kernels {

extern const char* const kNoCudaBackend;  // "this build has no CUDA backend"

const char* block_pool_cuda_from_host(const BlockPoolParams& p);
const char* kconv_cuda_from_host(const KconvParams& p);
const char* gate_topk_cuda_from_host(const GateTopkParams& p);
const char* moba_attention_cuda_from_host(const MobaAttentionParams& p);
// Uploads the query range and the causal key/value prefix [0, query_begin + query_count) only.
const char* dense_pass_cuda_from_host(const DensePassParams& p);

}  // namespace moba::kernels
