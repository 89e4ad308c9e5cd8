// gate_topk, scalar kernel (kernels/gate_topk.h; used for every input the tensor-core kernel
// does not take: fp32 / f16 q, `shared` GQA, or CudaTuning::GatePath::scalar).
// Each thread owns one query, scores a tile of 32 pooled keys at a time (fp32 FMA, channel
// order) and folds them straight into its own sorted list of the best top_k - 1 routable
// blocks (shared memory), ranked by (score, index) with the header's tie and NaN rules. Any
// scan order gives the same set, because the ranking is a strict total order.
#include <cstdint>

#include "kernels/constants.h"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/gate_topk_kernels.cuh"
#include "kernels/gate_topk.h"

namespace moba::kernels::cuda_detail {
namespace {

constexpr int kThreads = 128;    // queries per CTA
constexpr int kBlockTile = 32;   // pooled keys scored per step
constexpr int kTileLd = kBlockTile + 4;  // padded kt row: 16-byte aligned, 4-way store conflicts

// grid (ceil(n_tokens / 128), n_routers); one thread per query position.
// dynamic smem: kt [DQ][kTileLd] fp32 (pooled-key tile, channel-major), then the per-thread lists
// ls [top_k - 1][128] fp32 and li [top_k - 1][128] int32 (column per thread: no conflicts).
template <int DQ>
__global__ void __launch_bounds__(kThreads) gate_topk_scalar_kernel(GateScalarArgs a) {
  extern __shared__ float smem[];
  const int n_pick_max = a.top_k - 1;
  float* kt = smem;
  float* ls = smem + DQ * kTileLd;
  int* li = reinterpret_cast<int*>(ls + n_pick_max * kThreads);
  const int tid = threadIdx.x;
  const int64_t router = blockIdx.y;
  const int64_t t = int64_t{blockIdx.x} * kThreads + tid;
  const bool valid = t < a.n_tokens;
  const int64_t c = valid ? t / a.block_size : -1;
  const int64_t h_first = a.shared ? router * a.group : router;
  const int n_sum = a.shared ? static_cast<int>(a.group) : 1;
  const int64_t kv = a.shared ? router : router / a.group;
  const int n_pick = valid ? static_cast<int>(min(int64_t{n_pick_max}, c)) : 0;

  float q[DQ];
  auto load_q = [&](int64_t h) {
#pragma unroll
    for (int ch = 0; ch < DQ; ++ch) q[ch] = (valid && ch < a.head_dim) ? a.q.load(h, t, ch) : 0.0f;
  };
  if (n_sum == 1) load_q(h_first);

  int cnt = 0;
  float worst_s = 0.0f;
  int worst_i = -1;
  float cur_score = kQuietNaN;
  const int64_t t_last = min(a.n_tokens, int64_t{blockIdx.x + 1} * kThreads) - 1;
  const int64_t c_max = t_last / a.block_size;
  for (int64_t b0 = 0; b0 <= c_max; b0 += kBlockTile) {
    __syncthreads();
    for (int i = tid; i < kBlockTile * DQ; i += kThreads) {  // coalesced along channels
      const int ch = i % DQ, bb = i / DQ;
      const int64_t b = b0 + bb;
      kt[ch * kTileLd + bb] =
          (b < a.n_blocks && ch < a.head_dim) ? a.kbar[(kv * a.n_blocks + b) * a.head_dim + ch] : 0.0f;
    }
    __syncthreads();
    if (!valid || b0 > c) continue;
    float s[kBlockTile];
    for (int g = 0; g < n_sum; ++g) {
      if (n_sum > 1) load_q(h_first + g);
      float sg[kBlockTile];
#pragma unroll
      for (int bb = 0; bb < kBlockTile; ++bb) sg[bb] = 0.0f;
#pragma unroll
      for (int ch = 0; ch < DQ; ++ch) {
        const float qc = q[ch];
        const float4* row = reinterpret_cast<const float4*>(kt + ch * kTileLd);
#pragma unroll
        for (int v = 0; v < kBlockTile / 4; ++v) {
          const float4 k4 = row[v];
          sg[4 * v + 0] = fmaf(qc, k4.x, sg[4 * v + 0]);
          sg[4 * v + 1] = fmaf(qc, k4.y, sg[4 * v + 1]);
          sg[4 * v + 2] = fmaf(qc, k4.z, sg[4 * v + 2]);
          sg[4 * v + 3] = fmaf(qc, k4.w, sg[4 * v + 3]);
        }
      }
#pragma unroll
      for (int bb = 0; bb < kBlockTile; ++bb) s[bb] = g == 0 ? sg[bb] : s[bb] + sg[bb];
    }
#pragma unroll
    for (int bb = 0; bb < kBlockTile; ++bb) {
      const int b = static_cast<int>(b0 + bb);
      const float sv = s[bb];
      if (b == c) cur_score = sv;
      if (b >= c || n_pick == 0) continue;
      if (cnt == n_pick && !ranks_before(sv, b, worst_s, worst_i, a.recent)) continue;
      int pos = cnt < n_pick ? cnt++ : cnt - 1;
      while (pos > 0) {
        const float ps = ls[(pos - 1) * kThreads + tid];
        const int pi = li[(pos - 1) * kThreads + tid];
        if (!ranks_before(sv, b, ps, pi, a.recent)) break;
        ls[pos * kThreads + tid] = ps;
        li[pos * kThreads + tid] = pi;
        --pos;
      }
      ls[pos * kThreads + tid] = sv;
      li[pos * kThreads + tid] = b;
      worst_s = ls[(cnt - 1) * kThreads + tid];
      worst_i = li[(cnt - 1) * kThreads + tid];
    }
  }
  if (!valid) return;
  // Ascending block order (insertion sort of <= 128 entries).
  for (int i = 1; i < cnt; ++i) {
    const int bi = li[i * kThreads + tid];
    const float si = ls[i * kThreads + tid];
    int j = i;
    while (j > 0 && li[(j - 1) * kThreads + tid] > bi) {
      li[j * kThreads + tid] = li[(j - 1) * kThreads + tid];
      ls[j * kThreads + tid] = ls[(j - 1) * kThreads + tid];
      --j;
    }
    li[j * kThreads + tid] = bi;
    ls[j * kThreads + tid] = si;
  }
  const float nan = kQuietNaN;
  for (int g = 0; g < n_sum; ++g) {
    const int64_t off = ((h_first + g) * a.n_tokens + t) * a.top_k;
    for (int j = 0; j < a.top_k; ++j) {
      int32_t b = -1;
      float sv = nan;
      if (j < cnt) {
        b = li[j * kThreads + tid];
        sv = ls[j * kThreads + tid];
      } else if (j == cnt) {
        b = static_cast<int32_t>(c);
        sv = cur_score;
      }
      a.selected[off + j] = b;
      if (a.selected_scores) a.selected_scores[off + j] = sv;
    }
  }
}

template <int DQ>
const char* launch_dq(const GateScalarArgs& a, int64_t n_routers, cudaStream_t stream) {
  const size_t smem = sizeof(float) * DQ * kTileLd + size_t{8} * (a.top_k - 1) * kThreads;
  MOBA_CUDA_TRY(cudaFuncSetAttribute(gate_topk_scalar_kernel<DQ>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem)));
  const int64_t n_tiles = (a.n_tokens + kThreads - 1) / kThreads;
  gate_topk_scalar_kernel<DQ><<<dim3(static_cast<unsigned>(n_tiles), static_cast<unsigned>(n_routers)),
                         kThreads, smem, stream>>>(a);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

}  // namespace

const char* launch_gate_topk_scalar(const GateScalarArgs& a, int64_t n_routers, cudaStream_t stream) {
  return a.head_dim <= 64 ? launch_dq<64>(a, n_routers, stream) : launch_dq<128>(a, n_routers, stream);
}

}  // namespace moba::kernels::cuda_detail
