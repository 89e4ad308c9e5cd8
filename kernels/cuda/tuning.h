#pragma once
// Tuning knobs of the CUDA backend, in one place. Plain C++ (no CUDA headers): `moba bench`
// and the tests set them; the .cu entries read them once per call. The defaults are the
// production choices; every other value exists for same-inputs A/B runs on a device
// (`moba bench --tuning key=value,...`, tests/gpu/run.sh), and each knob changes speed only,
// never results beyond the per-dtype tolerances of tests/tolerances.h.
#include <string>

namespace moba::kernels {

struct CudaTuning {
  // gate_topk kernel family. `automatic`: the tensor-core kernel (gate_topk_mma.cu) for bf16
  // 16-bit q under per-head GQA (per-thread register lists when top_k - 1 <= 16, warp lists
  // above), the scalar kernel (gate_topk_scalar.cu) otherwise. `scalar`: the scalar kernel
  // for every input. `warp_list`: as automatic, but the tensor-core kernel keeps warp lists
  // for every top_k.
  enum class GatePath { automatic, scalar, warp_list };
  GatePath gate = GatePath::automatic;
  // moba_attention query rows per CTA; 0 = automatic (the largest power of two in
  // [128, 4096] that still gives >= 3 CTAs per multiprocessor, or the caller's rows_per_cta; the
  // kernels for blocks of at most 64 keys halve it where a block's list is long: list_rows), else
  // 16..65536, as given.
  int attn_rows = 0;
  // moba_attention's gather path in CTAs of one warp (moba_attention.cu use_warp_ctas):
  // -1 = where lists are sparse, 0 = never, 1 = always.
  int attn_warp_ctas = -1;
  // moba_attention's gather path, blocks of several staged pieces (B > 128; one-warp CTAs:
  // B > 64): 0 = every chunk of the block's list per piece, each chunk's running state stored
  // and reloaded a piece; 1 = in rounds of one chunk a warp, the block's pieces staged again a
  // round and each chunk's state kept in registers across the block. The same bits in either.
  int attn_rounds = 1;
  // moba_attention's gather path, blocks of more than 32 keys (64-key steps) at head dim 65-128
  // in 16-bit numerics (not x3) on compute capability 9.0, CTAs of 4 warps: every block in rounds
  // of one chunk a warp, the round's four chunks one warpgroup whose products are warpgroup MMAs
  // (wgmma) on K/V pieces staged in the 128-byte swizzled layout (a one-piece block staged once).
  // Within the tolerances, not the bits, of the mma.sync kernel (NOTES.md, thirty-sixth to
  // thirty-eighth sessions); false = the mma.sync kernel everywhere. attn_min_blocks3 takes
  // precedence where both apply (plain bf16).
  bool attn_wgmma = true;
  // The wgmma rounds' K/V pieces staged by the tensor memory accelerator (TMA: four tile copies
  // a piece from one thread, completing on an mbarrier) instead of every thread's cp.async
  // copies; where the operands' strides and base allow a tensor map (16-byte multiples), else
  // cp.async. The same bits.
  bool attn_tma = true;
  // The gather kernels of 16- and 32-key steps (CTAs of 4 warps, wide rows): the row group's Q rows
  // loaded into shared memory once a CTA (where they fit in 64 KB: 256 rows at head dim 128)
  // instead of from global memory at every visit. The same bits.
  bool attn_q_smem = true;
  // moba_attention at head dim 128 (bf16): ask ptxas for 3 CTAs per SM (a 168-register cap).
  bool attn_min_blocks3 = false;
  // dense_pass: every block size through pass 2 (no pass-1 folding of sizes 16, 32, 64 n).
  bool dense_all_pass2 = false;
  // moba_attention algorithm (moba_attention_tile.cuh): `automatic` picks by the cost model of
  // moba_attention.cu (gather for sparse selections, tile where a query attends a large share
  // of its causal keys); `gather` / `tile` force one (tile only where it applies: 16-bit
  // numerics, block size a multiple of 16; else gather).
  enum class AttnPath { automatic, gather, tile };
  AttnPath attn_path = AttnPath::automatic;
  // The cost model's weight of the tile path (per causal key of a row) against the gather
  // path (per selected key, plus kGatherVisitKeys per visited block): larger = gather more often.
  double attn_tile_cost = 0.78;
  // moba_attention's tile path at head dim 128: ask ptxas for 3 CTAs per SM (168 registers,
  // a few bytes spilled). Once 15-18 % faster on an H200 than 2 CTAs at up to 198 registers;
  // since QK^T interleaves its tiles' k-steps (210 registers at 2 CTAs, 36 bytes spilled at
  // 3), 2 CTAs are faster (8 B6 heads: attention + error 7.04 -> 6.44 s; NOTES.md).
  bool tile_min_blocks3 = false;
  // moba_attention's tile path at head dim 65-128 on compute capability 9.0 (H100 / H200): the
  // kernel's products as Hopper warpgroup MMAs (wgmma) instead of mma.sync (tile_min_blocks3
  // then does not apply). B6 on an H100: 33.5 s with mma.sync before 7c1cf09, 29.8 s with this
  // engine after it (NOTES.md, thirty-third session).
  // Elsewhere the mma.sync kernel runs whatever this says.
  bool tile_wgmma = true;
  // The analysis' routing rows (analysis/gpu/warp_rows.cuh): one warp per query row by radix
  // select when every analysed router picks a fixed budget; 0 = the block-wide sort kernel
  // (row_kernel) for every row.
  bool row_warp = true;
  // The one-warp-a-row routing rows' CTAs a multiprocessor where a block size has at most 8
  // configurations (B4, B6): 6, 7 or 8 (0, the default) for the kernel with room for 8 (80 / 72
  // / 64 registers); 5 for the one with room for 16 (96 registers), which more configurations
  // always get. The same bits either way (8 B6 heads on an H100, routing rows: 5 CTAs 0.734 s,
  // 6 0.695, 7 0.637, 8 0.621; NOTES.md, forty-eighth session).
  int row_ctas = 0;
  // The analysis' heads in flight (analysis/gpu/analyze_gpu.cu): 2 = a head's chunks are
  // enqueued while the previous head's attention and reductions run (where the device has
  // room for a second set of head buffers); 1 = each head finished before the next begins.
  int heads_in_flight = 2;
  // The analysis' query chunk (analyze_gpu.cu): at most this many queries of a head go through
  // the per-chunk kernels (dense pass, gate scores, moments) at once, fewer where the chunk
  // buffers' memory budget says so. 64..65536, a multiple of 64. 32768: one chunk a B4 head,
  // whose dense pass then packs its short CTAs behind the long ones in one launch (B4 on an
  // H100, x9 alternated: median 1.05 -> 1.00 s; 16384 before, kernels/cuda/NOTES.md).
  int chunk_rows = 32768;
  // The SNR probe's moments of the dump's keys (analyze_gpu.cu): false = from the dense pass's
  // own score tiles where it runs on the same 16-bit q and k at base 16 (the same bits, one
  // QK^T fewer); true = always by the moments kernel of their own.
  bool moments_apart = false;
};

// Multiprocessor count assumed when the device attribute cannot be read (H100/H200 SXM).
constexpr int kFallbackSmCount = 132;

// The knobs every CUDA entry reads. Set them before launching work (not thread-safe against
// concurrent entry calls); the defaults hold until then.
void set_cuda_tuning(const CudaTuning& t);
const CudaTuning& cuda_tuning();

// Parses "key=value,key=value" (keys: gate=automatic|scalar|warp_list, attn_rows=N,
// attn_min_blocks3=0|1, dense_all_pass2=0|1, attn_path=automatic|gather|tile,
// attn_tile_cost=X (0 < X <= 1000), tile_min_blocks3=0|1, tile_wgmma=0|1, row_warp=0|1,
// row_ctas=0|5|6|7|8, attn_warp_ctas=-1|0|1, attn_rounds=0|1, attn_wgmma=0|1, attn_tma=0|1,
// attn_q_smem=0|1, heads_in_flight=1|2, chunk_rows=N, moments_apart=0|1; "" = defaults) on top of `*out`.
// Returns nullptr or a static message naming the problem.
const char* parse_cuda_tuning(const std::string& spec, CudaTuning* out);

}  // namespace moba::kernels
