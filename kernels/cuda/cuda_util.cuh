#pragma once
// Internal helpers of the CUDA backend: checked calls with file and line, 16-bit loads.
// Kernels never throw: every public entry returns nullptr or a static message.
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"
#include "kernels/cuda/tuning.h"
#include "kernels/operand.h"

namespace moba::kernels::cuda_detail {

// Records the CUDA error of the last failure (thread-local) and returns `where`.
const char* record_failure(cudaError_t e, const char* where);

#define MOBA_STR2(x) #x
#define MOBA_STR(x) MOBA_STR2(x)
// Inside a function returning const char*: return a static "file:line: call" on failure.
#define MOBA_CUDA_TRY(call)                                                                 \
  do {                                                                                      \
    const cudaError_t moba_e_ = (call);                                                     \
    if (moba_e_ != cudaSuccess)                                                             \
      return ::moba::kernels::cuda_detail::record_failure(                                  \
          moba_e_, __FILE__ ":" MOBA_STR(__LINE__) ": " #call);                             \
  } while (0)
// After a launch: checks the launch configuration error.
#define MOBA_CUDA_LAUNCH_CHECK() MOBA_CUDA_TRY(cudaGetLastError())
// Propagate a status from a helper.
#define MOBA_TRY(expr)                   \
  do {                                   \
    if (const char* moba_s_ = (expr)) return moba_s_; \
  } while (0)

// Element type of device loads and conversions.
enum ElemKind : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

// Multiprocessors of the current device (kFallbackSmCount when it cannot be read).
inline int sm_count() {
  int dev = 0, sms = kFallbackSmCount;
  if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  return sms > 0 ? sms : kFallbackSmCount;
}

inline ElemKind kind_of(DType t) {
  return t == DType::f16 ? kF16 : t == DType::bf16 ? kBF16 : kF32;
}

// A read-only [heads, tokens, dim] device tensor in fp32 or raw 16-bit form.
struct DevTensor {
  const float* f32 = nullptr;
  const uint16_t* h16 = nullptr;
  ElemKind kind = kF32;
  int64_t stride_head = 0, stride_token = 0;

  __device__ __forceinline__ float load(int64_t h, int64_t t, int64_t c) const {
    const int64_t i = h * stride_head + t * stride_token + c;
    if (kind == kF32) return f32[i];
    const uint16_t raw = h16[i];
    if (kind == kF16) return __half2float(__ushort_as_half(raw));
    return __bfloat162float(__ushort_as_bfloat16(raw));
  }
};

// Round x to `kind` (round to nearest even, as core/dtype.h) and back to fp32.
__device__ __forceinline__ float round_to_kind(ElemKind kind, float x) {
  if (kind == kF16) return __half2float(__float2half_rn(x));
  if (kind == kBF16) return __bfloat162float(__float2bfloat16_rn(x));
  return x;
}

// Stream-ordered scratch owned by one entry call; freed on scope exit (stream-ordered).
class Scratch {
 public:
  explicit Scratch(cudaStream_t s) : stream_(s) {}
  ~Scratch() {
    for (int i = 0; i < n_; ++i) cudaFreeAsync(ptr_[i], stream_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  // Returns nullptr or the failed call; *out receives the allocation.
  template <typename T>
  const char* alloc(T** out, size_t count) {
    void* p = nullptr;
    if (n_ == kMax) return "kernels/cuda: too many scratch buffers";
    MOBA_CUDA_TRY(cudaMallocAsync(&p, count * sizeof(T) + 16, stream_));
    ptr_[n_++] = p;
    *out = static_cast<T*>(p);
    return nullptr;
  }

 private:
  static constexpr int kMax = 16;
  cudaStream_t stream_;
  void* ptr_[kMax] = {};
  int n_ = 0;
};

// Converts an fp32 [heads, tokens, dim] view into a contiguous 16-bit tensor of `kind`.
const char* convert_to_16(const float* src, int64_t heads, int64_t tokens, int64_t dim,
                          int64_t stride_head, int64_t stride_token, ElemKind kind, uint16_t* dst,
                          cudaStream_t stream);

// Widens n contiguous 16-bit values of `kind` (f16 or bf16) into fp32 (exact).
const char* convert_from_16(const uint16_t* src, int64_t n, ElemKind kind, float* dst, cudaStream_t stream);

// Splits an fp32 [heads, tokens, dim] view into two contiguous fp16 tensors with one
// power-of-two scale 2^e for the whole view: xs = x 2^-e, hi = f16(xs), lo = f16(xs - hi),
// e = (exponent of max |x|) - 14 so that |xs| < 2^14. x = (hi + lo) 2^e within 2^-22 |x| for
// every |x| >= 2^-17 max |x| (absolute 2^-39 max |x| below). `max_bits` (device scratch, one
// unsigned) holds max |x|; e is written to *exp_out (device) before the split is used.
const char* convert_to_f16_split(const float* src, int64_t heads, int64_t tokens, int64_t dim,
                                 int64_t stride_head, int64_t stride_token, uint16_t* hi, uint16_t* lo,
                                 unsigned* max_bits, int* exp_out, cudaStream_t stream);

// A 16-bit operand of the tensor-core kernels [heads, tokens, dim] with its strides in
// elements: the operand's raw 16-bit values when given (rows must be 16-byte aligned; else
// `misaligned`, a static message naming the op, is returned), otherwise its fp32 view
// converted to `kind` into a contiguous scratch copy.
struct Operand16 {
  const uint16_t* data = nullptr;
  int64_t stride_head = 0, stride_token = 0;
};
inline const char* make_operand_16(const Operand& v, ElemKind kind, Scratch& scratch, cudaStream_t stream,
                                   const char* misaligned, Operand16* out) {
  if (v.raw16) {
    if ((reinterpret_cast<uintptr_t>(v.raw16) % 16) || v.stride_token % 8 || v.stride_head % 8) return misaligned;
    *out = Operand16{v.raw16, v.stride_head, v.stride_token};
    return nullptr;
  }
  uint16_t* buf = nullptr;
  if (const char* e = scratch.alloc(&buf, static_cast<size_t>(v.n_heads * v.n_tokens * v.head_dim))) return e;
  if (const char* e = convert_to_16(v.data, v.n_heads, v.n_tokens, v.head_dim, v.stride_head, v.stride_token,
                                    kind, buf, stream))
    return e;
  *out = Operand16{buf, v.n_tokens * v.head_dim, v.head_dim};
  return nullptr;
}

// The 16-bit type the tensor-core ops compute in, from the attention params' q, k, v
// operands: an operand with raw 16-bit values must say f16 or bf16 (else `needs_16bit`);
// the operands that are not f32 must agree (else `disagree`); that type, or bf16 when every
// operand is f32.
template <typename P>
const char* qkv_elem_kind(const P& p, const char* needs_16bit, const char* disagree, ElemKind* kind) {
  const Operand* ops[3] = {&p.q, &p.k, &p.v};
  DType t = DType::f32;
  for (const Operand* o : ops) {
    if (o->raw16 && o->dtype == DType::f32) return needs_16bit;
    if (o->dtype == DType::f32) continue;
    if (t != DType::f32 && o->dtype != t) return disagree;
    t = o->dtype;
  }
  *kind = t == DType::f16 ? kF16 : kBF16;
  return nullptr;
}

// q, k and (with_v) v of such params as 16-bit operands (make_operand_16) into kernel args
// with fields q, q_sh, q_st, k, k_sh, k_st, v, v_sh, v_st.
template <typename P, typename Args>
const char* set_qkv_operands(const P& p, bool with_v, ElemKind kind, Scratch& scratch, cudaStream_t stream,
                             const char* misaligned, Args* a) {
  Operand16 q16, k16, v16;
  MOBA_TRY(make_operand_16(p.q, kind, scratch, stream, misaligned, &q16));
  MOBA_TRY(make_operand_16(p.k, kind, scratch, stream, misaligned, &k16));
  if (with_v) MOBA_TRY(make_operand_16(p.v, kind, scratch, stream, misaligned, &v16));
  a->q = q16.data; a->q_sh = q16.stride_head; a->q_st = q16.stride_token;
  a->k = k16.data; a->k_sh = k16.stride_head; a->k_st = k16.stride_token;
  a->v = v16.data; a->v_sh = v16.stride_head; a->v_st = v16.stride_token;
  return nullptr;
}

// Numerics of a tensor-core kernel instantiation (kernels/operand.h Precision; NOTES.md,
// "Exact numerics"): `plain` one 16-bit product per QK^T / PV step, P in the 16-bit type
// (fast mode; exact mode for f16 operands); `split_p` P as hi + lo 16-bit parts, two PV
// products (exact, bf16 operands); `x3` ("fp16x3") q, k, v given as fp16 hi + lo tensors
// with a power-of-two scale each (convert_to_f16_split), QK^T = hi.hi + hi.lo + lo.hi,
// P scaled by 2^14 and split, PV = ph.V + pl.V + ph.V_lo (exact, f32 or mixed operands);
// the kernels undo the scales (x3_exp) in the softmax scale and the output.
enum class Nx : int { plain = 0, split_p = 1, x3 = 2 };

// Picks the element kind and numerics of q, k and (with_v) v under p.precision: fast as
// qkv_elem_kind; exact — all f16: (f16, plain); all bf16: (bf16, split_p); otherwise (f32,
// or dtypes that differ): (f16, x3) on the fp32 values, which raw 16-bit operands cannot
// give (`disagree`).
template <typename P>
const char* qkv_numerics(const P& p, bool with_v, const char* needs_16bit, const char* disagree, ElemKind* kind,
                         Nx* nx) {
  if (p.precision == Precision::fast) {
    *nx = Nx::plain;
    return qkv_elem_kind(p, needs_16bit, disagree, kind);
  }
  const Operand* ops[3] = {&p.q, &p.k, &p.v};
  const int n = with_v ? 3 : 2;
  bool same = true, any_raw = false;
  for (int i = 0; i < n; ++i) {
    if (ops[i]->raw16 && ops[i]->dtype == DType::f32) return needs_16bit;
    same = same && ops[i]->dtype == p.q.dtype;
    any_raw = any_raw || ops[i]->raw16 != nullptr;
  }
  if (same && p.q.dtype == DType::f16) {
    *kind = kF16;
    *nx = Nx::plain;
  } else if (same && p.q.dtype == DType::bf16) {
    *kind = kBF16;
    *nx = Nx::split_p;
  } else {
    if (any_raw) return disagree;
    *kind = kF16;
    *nx = Nx::x3;
  }
  return nullptr;
}

// Nx::x3 kernels (args with x3_exp and scale_log2): the softmax scale of the scaled scores,
// scale_log2 2^(eq + ek), and the output factor 2^(ev - 14) (values scaled by 2^-ev, P packed
// x 2^14). Other instantiations never call them (written as `X3 ? x3_...(a) : plain`, so
// their code is the plain expression).
template <bool X3, typename Args>
__device__ __forceinline__ float x3_scale_log2(const Args& a) {
  if constexpr (X3) return ldexpf(a.scale_log2, a.x3_exp[0] + a.x3_exp[1]);
  else return 0.0f;
}
template <bool X3, typename Args>
__device__ __forceinline__ float x3_out_mul(const Args& a) {
  if constexpr (X3) return ldexpf(1.0f, a.x3_exp[2] - 14);
  else return 0.0f;
}

// q, k and (with_v) v as fp16 hi + lo tensors (convert_to_f16_split, contiguous scratch) into
// kernel args with fields q, q_lo, q_sh, q_st, k, k_lo, ... (lo shares the hi strides) and
// x3_exp (device int[4]: the scale exponents of q, k, v, 0 for v when !with_v; then scratch).
template <typename P, typename Args>
const char* set_qkv_operands_x3(const P& p, bool with_v, Scratch& scratch, cudaStream_t stream, Args* a) {
  int* exps = nullptr;
  MOBA_TRY(scratch.alloc(&exps, 4));
  MOBA_CUDA_TRY(cudaMemsetAsync(exps, 0, 4 * sizeof(int), stream));
  a->x3_exp = exps;
  int slot = 0;
  auto split = [&](const Operand& v, const uint16_t** hi, const uint16_t** lo, int64_t* sh, int64_t* st) -> const char* {
    const size_t n = static_cast<size_t>(v.n_heads * v.n_tokens * v.head_dim);
    uint16_t *h = nullptr, *l = nullptr;
    MOBA_TRY(scratch.alloc(&h, n));
    MOBA_TRY(scratch.alloc(&l, n));
    MOBA_TRY(convert_to_f16_split(v.data, v.n_heads, v.n_tokens, v.head_dim, v.stride_head, v.stride_token, h, l,
                                  reinterpret_cast<unsigned*>(exps + 3), exps + slot++, stream));
    *hi = h;
    *lo = l;
    *sh = v.n_tokens * v.head_dim;
    *st = v.head_dim;
    return nullptr;
  };
  MOBA_TRY(split(p.q, &a->q, &a->q_lo, &a->q_sh, &a->q_st));
  MOBA_TRY(split(p.k, &a->k, &a->k_lo, &a->k_sh, &a->k_st));
  if (with_v) MOBA_TRY(split(p.v, &a->v, &a->v_lo, &a->v_sh, &a->v_st));
  return nullptr;
}

}  // namespace moba::kernels::cuda_detail
