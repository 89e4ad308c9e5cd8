// CUDA fused gate scores + running top-k (kernels/gate_topk.h). No [n_tokens, n_blocks]
// score matrix exists anywhere: each thread owns one query, scores a tile of 32 pooled keys
// at a time (fp32 FMA, channel order) and folds them straight into its own sorted list of
// the best top_k - 1 routable blocks (shared memory), ranked by (score, index) with the
// header's tie and NaN rules. Any scan order gives the same set, because the ranking is a
// strict total order.
#include "kernels/gate_topk.h"

#include <algorithm>
#include <cmath>

#include "kernels/block_pool.h"
#include "kernels/cuda/cuda_util.cuh"

namespace moba::kernels {
namespace {
using namespace cuda_detail;

constexpr int kThreads = 128;    // queries per CTA
constexpr int kBlockTile = 32;   // pooled keys scored per step
constexpr int kMaxTopK = 129;    // list of top_k - 1 <= 128 entries per query
constexpr int kTileLd = kBlockTile + 4;  // padded kt row: 16-byte aligned, 4-way store conflicts

struct GateArgs {
  DevTensor q;                   // [n_q_heads, n_tokens, head_dim]
  const float* kbar;             // [n_kv_heads, n_blocks, head_dim]
  int64_t n_tokens, head_dim, block_size, n_blocks, n_q_heads, group;
  int top_k;
  bool recent, shared;
  int32_t* selected;             // [n_q_heads, n_tokens, top_k]
  float* selected_scores;        // same, optional
};

// a = (score sa, block ia) ranks strictly before b: NaN last, higher score, then the tie rule.
__device__ __forceinline__ bool ranks_before(float sa, int ia, float sb, int ib, bool recent) {
  const bool na = isnan(sa), nb = isnan(sb);
  if (na != nb) return nb;
  if (!na && sa != sb) return sa > sb;
  return recent ? ia > ib : ia < ib;
}

// grid (ceil(n_tokens / 128), n_routers); one thread per query position.
// dynamic smem: kt [DQ][kTileLd] fp32 (pooled-key tile, channel-major), then the per-thread lists
// ls [top_k - 1][128] fp32 and li [top_k - 1][128] int32 (column per thread: no conflicts).
template <int DQ>
__global__ void __launch_bounds__(kThreads) gate_topk_kernel(GateArgs a) {
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
  float cur_score = __int_as_float(0x7fc00000);
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
  const float nan = __int_as_float(0x7fc00000);
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
const char* launch_gate_topk(const GateArgs& a, int64_t n_routers, cudaStream_t stream) {
  const size_t smem = sizeof(float) * DQ * kTileLd + size_t{8} * (a.top_k - 1) * kThreads;
  MOBA_CUDA_TRY(cudaFuncSetAttribute(gate_topk_kernel<DQ>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem)));
  const int64_t n_tiles = (a.n_tokens + kThreads - 1) / kThreads;
  gate_topk_kernel<DQ><<<dim3(static_cast<unsigned>(n_tiles), static_cast<unsigned>(n_routers)),
                         kThreads, smem, stream>>>(a);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

}  // namespace

const char* gate_topk_cuda(const GateTopkParams& p, void* stream) {
  GateTopkParams check = p;
  if (p.q16) check.q.data = reinterpret_cast<const float*>(p.q16);  // presence only
  if (const char* e = gate_topk_can_run(check)) return e;
  if (p.q16 && p.input_dtype == DType::f32) return "gate_topk_cuda: q16 needs input_dtype f16 or bf16";
  if (p.q.head_dim > 128) return "gate_topk_cuda: head_dim > 128 not supported";
  if (p.top_k > kMaxTopK) return "gate_topk_cuda: top_k > 129 not supported";
  if (p.q.n_tokens == 0) return nullptr;
  GateArgs a;
  a.q = DevTensor{p.q.data, p.q16, p.q16 ? kind_of(p.input_dtype) : kF32, p.q.stride_head, p.q.stride_token};
  a.kbar = p.kbar;
  a.n_tokens = p.q.n_tokens;
  a.head_dim = p.q.head_dim;
  a.block_size = p.block_size;
  a.n_blocks = block_count(p.q.n_tokens, p.block_size);
  a.n_q_heads = p.q.n_heads;
  a.group = p.q.n_heads / p.n_kv_heads;
  a.top_k = p.top_k;
  a.recent = p.tie == TieRule::recent;
  a.shared = p.gqa == GqaMode::shared;
  a.selected = p.selected;
  a.selected_scores = p.selected_scores;
  if (a.n_blocks > 0x7fffffff) return "gate_topk_cuda: too many blocks";
  const int64_t n_routers = a.shared ? p.n_kv_heads : p.q.n_heads;
  const auto s = static_cast<cudaStream_t>(stream);
  return p.q.head_dim <= 64 ? launch_gate_topk<64>(a, n_routers, s) : launch_gate_topk<128>(a, n_routers, s);
}

}  // namespace moba::kernels
