#pragma once
// Hopper warpgroup MMA (wgmma.mma_async, sm_90a) for the tile path's wgmma engine
// (moba_attention_tile.cu): one warpgroup (4 warps, 128 threads) multiplies a 64-row A held in
// registers by a B tile in shared memory. A's fragments, and the fp32 accumulators, have the
// layout of mma.m16n8k16's (mma.cuh) within each warp's 16 rows: warp w of the warpgroup holds
// rows 16 w .. 16 w + 15, so d[n8][0..3] = C[g][8 n8 + 2q, +1], C[g + 8][8 n8 + 2q, +1] with
// g = lane / 4, q = lane % 4 (PTX ISA, "Register Fragments and Shared Memory Matrix Layouts"
// for wgmma). Compiled to real instructions only for sm_90a (__CUDA_ARCH_FEAT_SM90_ALL); other
// targets get a trap, and the host calls these kernels only on compute capability 9.0.
//
// B lives in shared memory in the 128-byte swizzled layout: rows of 64 16-bit elements (128 B),
// the 16-byte chunk c of row r stored at chunk c ^ (r % 8), in atoms of 8 rows (1024 B, 1024-byte
// aligned). A descriptor (wgmma_desc) names the first row and the strides:
//  - K-major B (the reduction runs along the stored row; Q K^T with K's key rows): SBO = the
//    stride between 8-row groups (1024 B); a 16-element k-step starts 32 B further along the row.
//  - MN-major B (trans-b = 1; P V with V's key rows, the output channels along the row): SBO =
//    the stride between 8-row groups along the reduction (1024 B), LBO = the stride between
//    64-column atoms along N.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MOBA_WGMMA 1
#else
#define MOBA_WGMMA 0
#endif

namespace moba::kernels::cuda_detail {

// The byte offset of 16-bit element (r, c) of a [rows][64] swizzled tile (c < 64).
__device__ __forceinline__ uint32_t swizzle128(int r, int c) {
  return static_cast<uint32_t>(r * 128 + ((((c >> 3) ^ r) & 7) << 4) + (c & 7) * 2);
}

// A shared-memory matrix descriptor: start address, LBO and SBO in bytes, 128-byte swizzle.
__device__ __forceinline__ uint64_t wgmma_desc(const void* smem, uint32_t lbo, uint32_t sbo) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return uint64_t{(addr & 0x3ffffu) >> 4} | (uint64_t{(lbo & 0x3ffffu) >> 4} << 16) |
         (uint64_t{(sbo & 0x3ffffu) >> 4} << 32) | (uint64_t{1} << 62);
}

#if MOBA_WGMMA
// Orders this thread's register writes before the warpgroup's next wgmma reads them.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// Makes this thread's generic-proxy shared-memory writes (cp.async, stores) visible to the
// async proxy that wgmma reads B through; a barrier after it publishes them to the warpgroup.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// The tensor memory accelerator (TMA) and the mbarrier its copies complete on. A tile copy
// writes the box of a tensor map (cuTensorMapEncodeTiled; here with the 128-byte swizzle, the
// layout swizzle128 describes, into a 1024-byte aligned destination), elements outside the tensor
// as zeros, and counts the whole box's bytes on the mbarrier. mbar_wait: until the phase of
// parity `parity` completes.
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nMOBA_MBAR_WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra MOBA_MBAR_WAIT;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// The box at coordinates (c0, c1, c2) of the 3-d tensor map `map` (a __grid_constant__
// parameter's address) into shared memory at `dst`, completing on mbarrier `bar`.
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const void* map, int c0, int c1, int c2, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
      "[%5];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}

// d (+)= A B for a 64 x N tile, A [64 x 16] in registers, B [16 x N] by descriptor; scale_d = 0
// ignores d's old value. TRANS_B: 0 = K-major B, 1 = MN-major.
template <typename T16> struct Wgmma;

// One accumulator row's four "+f" operands (d[I][0..3]), in the instruction's register order.
#define MOBA_WGMMA_D(I) "+f"(d[I][0]), "+f"(d[I][1]), "+f"(d[I][2]), "+f"(d[I][3])
// The members of Wgmma<T16>, TY the instruction's 16-bit type ("bf16" or "f16"); the two types'
// instructions differ in nothing else.
#define MOBA_WGMMA_MEMBERS(TY)                                                                  \
  template <int TRANS_B>                                                                        \
  static __device__ __forceinline__ void m64n64(float (&d)[8][4], const uint32_t (&a)[4],       \
                                              uint64_t desc_b, int scale_d) {                   \
    asm volatile(                                                                               \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                            \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " "                             \
        "{"                                                                                     \
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                \
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"        \
        "}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"                                      \
        : MOBA_WGMMA_D(0), MOBA_WGMMA_D(1), MOBA_WGMMA_D(2), MOBA_WGMMA_D(3),                   \
          MOBA_WGMMA_D(4), MOBA_WGMMA_D(5), MOBA_WGMMA_D(6), MOBA_WGMMA_D(7)                    \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d), "n"(TRANS_B)); \
  }                                                                                             \
  template <int TRANS_B>                                                                        \
  static __device__ __forceinline__ void m64n128(float (&d)[16][4], const uint32_t (&a)[4],     \
                                              uint64_t desc_b, int scale_d) {                   \
    asm volatile(                                                                               \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                            \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " "                            \
        "{"                                                                                     \
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                \
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "      \
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "      \
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"        \
        "}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"                                      \
        : MOBA_WGMMA_D(0), MOBA_WGMMA_D(1), MOBA_WGMMA_D(2), MOBA_WGMMA_D(3),                   \
          MOBA_WGMMA_D(4), MOBA_WGMMA_D(5), MOBA_WGMMA_D(6), MOBA_WGMMA_D(7),                   \
          MOBA_WGMMA_D(8), MOBA_WGMMA_D(9), MOBA_WGMMA_D(10), MOBA_WGMMA_D(11),                 \
          MOBA_WGMMA_D(12), MOBA_WGMMA_D(13), MOBA_WGMMA_D(14), MOBA_WGMMA_D(15)                \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d), "n"(TRANS_B)); \
  }

template <> struct Wgmma<__nv_bfloat16> {
  MOBA_WGMMA_MEMBERS("bf16")
};
template <> struct Wgmma<__half> {
  MOBA_WGMMA_MEMBERS("f16")
};
#undef MOBA_WGMMA_MEMBERS
#undef MOBA_WGMMA_D

#endif  // MOBA_WGMMA

}  // namespace moba::kernels::cuda_detail
