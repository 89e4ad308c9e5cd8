// route_group's routing on the device (analysis/gpu/route_gpu.h): per query chunk, the rows
// (block-score rows, or the dense pass's block masses), GQA shared's group sums, then the row
// selector; the selections come back once per KV group.
#include "analysis/gpu/route_gpu.h"

#include <algorithm>
#include <cmath>

#include "analysis/gpu/block_rows.h"
#include "analysis/gpu/device_util.cuh"
#include "kernels/block_pool.h"
#include "kernels/dense_pass.h"

namespace moba::analysis {

std::string route_gpu_unsupported(RouterKind router, int64_t n_tokens, int64_t head_dim, int64_t block_size) {
  if (!kernels::cuda_compiled()) return "this build has no CUDA backend";
  if (router_is_gate(router)) return std::string(router_name(router)) + " routes through gate_topk";
  const std::string why = gpu::head_dim_unsupported(head_dim);
  return why.empty() ? gpu::row_blocks_unsupported(block_size, kernels::block_count(n_tokens, block_size)) : why;
}

void route_group_gpu(const TensorView& q, const TensorView& k, DType dump_dtype, RouterKind router,
                     const RoutingOptions& opt, int64_t block_size, int top_k, int32_t* selected) {
  using gpu::ck;
  using gpu::Dev;
  const int64_t G = q.n_heads, T = q.n_tokens, d = q.head_dim, B = block_size;
  const int64_t nb = kernels::block_count(T, B);
  const bool oracle = router == RouterKind::oracle || router == RouterKind::oracle_topp;
  // One row per query for the group (route_group's `shared`): nsa-shared under either --gqa,
  // sink-window (head independent), the others under --gqa shared (the heads' rows summed).
  const bool group_row = router == RouterKind::nsa_shared || router == RouterKind::sink_window;
  const bool shared = opt.gqa == kernels::GqaMode::shared;
  const bool one_row = group_row || shared;

  gpu::DevOperand dq, dk;
  dq.set(q, dump_dtype);
  dk.set(k, dump_dtype);
  // Block-score keys (analysis/router.h block_score_keys): quest's min and max (exact key
  // values; the mean is scratch), the pooled keys of the others but sink-window.
  Dev<float> keys;
  if (!oracle && router != RouterKind::sink_window) {
    kernels::BlockPoolParams p;
    p.k = dk.view32();
    p.block_size = B;
    if (router == RouterKind::quest) {
      keys.resize(static_cast<size_t>(3 * nb * d));
      p.pool_dtype = DType::f32;
      p.min = keys.get();
      p.max = keys.get() + nb * d;
      p.mean = keys.get() + 2 * nb * d;
    } else {
      keys.resize(static_cast<size_t>(nb * d));
      p.pool_dtype = opt.pool_fp32 ? DType::f32 : dump_dtype;
      p.mean = keys.get();
    }
    gpu::ck_op(kernels::block_pool_cuda(p), "block pool (route keys)");
  }

  // Query chunk: per query, the heads' rows (G x nb floats), the group's row and double sums.
  const int64_t per_query = nb * (4 * G + 4 + 8) + 4 * G;
  const int64_t chunk = std::min(T, std::clamp<int64_t>((int64_t{1} << 28) / per_query, 64, 16384));
  Dev<float> head_rows(static_cast<size_t>(G * chunk * nb)), rows(static_cast<size_t>(chunk * nb));
  Dev<double> dsum(router == RouterKind::nsa_shared || (shared && router == RouterKind::oracle_topp)
                       ? static_cast<size_t>(chunk * nb)
                       : 0);
  Dev<float> lse(oracle ? static_cast<size_t>(G * chunk) : 0), qbar(static_cast<size_t>(nb * d));
  Dev<int32_t> sel(static_cast<size_t>(G * T * top_k));

  gpu::ScoreRowSource src;
  src.kind = router;
  src.q = dq.f32.get();
  src.n_heads = G, src.n_tokens = T, src.head_dim = d;
  src.keys = keys.get();
  src.block_size = B, src.n_blocks = nb;
  src.qbar = qbar.get(), src.nsa_sum = dsum.get();

  gpu::SelectRowsArgs a;
  a.T = T, a.B = B, a.nb = nb;
  a.mode = router == RouterKind::moba_threshold ? gpu::kRowThreshold
           : router == RouterKind::oracle_topp  ? gpu::kRowTopp
                                                : gpu::kRowFixed;
  a.top_k = top_k;
  a.recent = opt.tie == kernels::TieRule::recent;
  a.tau = opt.tau;
  a.score_scale = 1.0 / std::sqrt(static_cast<double>(d));  // select_threshold_host's scale
  a.sel = sel.get();
  a.n_copies = one_row ? static_cast<int>(G) : 1;

  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t nq = std::min(chunk, T - t0);
    // The heads' rows [G, nq, nb]: the block masses, or each head's score row.
    if (oracle) {
      kernels::DensePassParams dp;
      dp.precision = opt.precision;
      dp.q = dq.operand(opt.precision, 0, G);
      dp.k = dk.operand(opt.precision);
      dp.query_begin = t0;
      dp.query_count = nq;
      dp.lse = lse.get();
      dp.n_block_sizes = 1;
      dp.block_sizes[0] = B;
      dp.block_mass[0] = head_rows.get();
      gpu::ck_op(kernels::dense_pass_cuda(dp), "dense pass");
    } else if (group_row) {
      gpu::score_rows_cuda(src, 0, t0, nq, rows.get());
    } else {
      for (int64_t h = 0; h < G; ++h) gpu::score_rows_cuda(src, h, t0, nq, head_rows.get() + h * nq * nb);
    }
    a.t0 = t0;
    a.mass = nullptr;
    if (group_row) {
      a.rows = rows.get(), a.row_stride = 0;
    } else if (shared) {
      gpu::group_sum_cuda(head_rows.get(), nq * nb, G, t0, nq, B, nb, rows.get(),
                          router == RouterKind::oracle_topp ? dsum.get() : nullptr);
      a.rows = rows.get(), a.row_stride = 0;
      if (router == RouterKind::oracle_topp) a.mass = dsum.get();
    } else {
      a.rows = head_rows.get(), a.row_stride = nq * nb;
    }
    gpu::select_rows_cuda(a, nq, one_row ? 1 : static_cast<int>(G));
  }
  ck(cudaMemcpy(selected, sel.get(), static_cast<size_t>(G * T * top_k) * sizeof(int32_t), cudaMemcpyDeviceToHost),
     "download selections");
}

}  // namespace moba::analysis
