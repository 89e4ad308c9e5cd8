#pragma once
// Tensor-core fragments for mma.sync m16n8k16 (fp32 accumulate), shared by the attention
// kernels. Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), g = lane / 4,
// q = lane % 4:
//   A [16 x 16] row-major : a0 = A[g][2q..2q+1], a1 = A[g+8][2q..], a2 = A[g][2q+8..], a3 = A[g+8][2q+8..]
//   B [16 x 8]  (k x n)   : b0 = B[2q..2q+1][g],  b1 = B[2q+8..2q+9][g]
//   C [16 x 8]            : c0,c1 = C[g][2q..2q+1], c2,c3 = C[g+8][2q..2q+1]
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace moba::kernels::cuda_detail {

template <typename T16> struct Mma;

template <> struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
  // The two values of a pack()ed register (first = low half).
  static __device__ __forceinline__ float2 unpack(uint32_t u) {
    return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
  }
};

template <> struct Mma<__half> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
  static __device__ __forceinline__ float2 unpack(uint32_t u) {
    return __half22float2(*reinterpret_cast<const __half2*>(&u));
  }
};

// (a, b) as two packed registers, hi = pack(a, b) and lo = pack of the rounding residuals
// (a - hi.x, b - hi.y: exact in fp32), so a = hi + lo within 2^-9 |a - hi| (bf16; 2^-11 for
// fp16): P for the exact-numerics PV product (NOTES.md, "Exact numerics").
template <typename M>
__device__ __forceinline__ void pack_split(float a, float b, uint32_t& hi, uint32_t& lo) {
  hi = M::pack(a, b);
  const float2 r = M::unpack(hi);
  lo = M::pack(a - r.x, b - r.y);
}

// Four 8x8 b16 matrices, transposed, from shared memory; lane l gives the row address of
// matrix l / 8, row l % 8.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* smem_row) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// Four 8x8 b16 matrices (not transposed) from shared memory: lane l gives the row address of
// matrix l / 8, row l % 8; register i holds matrix i in the fragment layout of an mma B operand
// whose k runs along the stored row (keys as rows: b0 / b1 of one n8 tile from two matrices).
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* smem_row) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 2^x and log2(x) on the SFU (ex2 / lg2 .approx.ftz: ~2 ulp; 2^-inf = 0, log2(0) = -inf).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float fast_log2(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Loads 8 16-bit values (16 bytes) of a row into shared memory, zeros when !ok.
__device__ __forceinline__ void copy16(void* dst, const void* src, bool ok) {
  uint4 v = make_uint4(0, 0, 0, 0);
  if (ok) v = __ldg(reinterpret_cast<const uint4*>(src));
  *reinterpret_cast<uint4*>(dst) = v;
}

// Asynchronous 16-byte copy global -> shared (cp.async, L2 only); zero-fills when !ok (src is
// then not read, but must still be a valid address). Completes at cp_async_wait_all().
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool ok) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(src), "r"(ok ? 16 : 0)
               : "memory");
}
// The same to a shared-memory address (__cvta_generic_to_shared, computed once by the caller).
__device__ __forceinline__ void cp_async16_s(uint32_t dst, const void* src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0)
               : "memory");
}
// The same copy where the whole 16 bytes are in range (no source size operand).
__device__ __forceinline__ void cp_async16_all(void* dst, const void* src) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(addr), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
// Commit groups for double buffering: commit after a tile's copies, then wait until at most
// N groups are still in flight.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait_group() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

}  // namespace moba::kernels::cuda_detail
