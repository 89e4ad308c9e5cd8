#pragma once
// The tile path of moba_attention_cuda (moba_attention_tile.cu), for dense selections: where
// a query attends a large share of its causal blocks (k B comparable to T), the gather path
// (moba_attention.cu) reloads and stores every row's fp32 running output once per attended
// block, and at small B that traffic, not the tensor cores, sets its pace. The tile path keeps
// the running output in registers, flash-style: one CTA per (64-query tile, query head) walks
// the causal 64-key tiles that any of its rows selects, masking P per (row, 16-key segment)
// from a per-row bitmask of the selected blocks.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_util.cuh"

namespace moba::kernels::cuda_detail {

struct TileAttnArgs {
  const uint16_t *q, *k, *v;  // 16-bit [heads, n_tokens, head_dim], strided rows
  int64_t q_sh, q_st, k_sh, k_st, v_sh, v_st;
  int64_t n_tokens, head_dim, block_size, n_blocks, group;
  int64_t q_begin, q_count;    // the query window: row i of a head is query t = q_begin + i
  int top_k;
  float scale_log2;            // softmax_scale * log2(e)
  const int32_t* selected;     // [n_q_heads, q_count, top_k]
  int64_t first_query;         // queries t < first_query attend nothing (no bits)
  uint32_t* bits;              // scratch [n_q_heads, q_count, words]: selected blocks per row
  int64_t words;               // ceil(n_blocks / 32)
  float* out;                  // [n_q_heads, q_count, head_dim] normalised output
  float* lse;                  // optional [n_q_heads, q_count]
};

// Whether the tile path takes these inputs: 16-bit numerics plain or split_p (not x3), block
// sizes a multiple of 16 (a 16-key segment never straddles two blocks), and a bitmask and
// per-CTA tile map of bounded size.
bool tile_attention_fits(int64_t n_q_heads, int64_t n_tokens, int64_t block_size, Nx nx);

// The tile kernel's engine: mma.sync at 2 CTAs per multiprocessor (mma), the same at 3 for head
// dim 128 (mma3: CudaTuning::tile_min_blocks3), or Hopper's warpgroup MMAs at head dim 128
// (wgmma: CudaTuning::tile_wgmma, only where tile_wgmma_available).
enum class TileEngine { mma, mma3, wgmma };

// Whether the wgmma engine runs here: head dim in (64, 128] on a compute capability 9.0 device
// (the binary's sm_90a code).
bool tile_wgmma_available(int64_t head_dim);

// Builds the bitmask from `selected` (valid, causal blocks; duplicates and -1 ignored) and
// runs the tile kernel for n_q_heads heads on `stream`. `f16`: the operands are fp16 (else
// bf16).
const char* launch_tile_attention(TileAttnArgs a, int64_t n_q_heads, bool f16, Nx nx, TileEngine engine,
                                  cudaStream_t stream);

}  // namespace moba::kernels::cuda_detail
