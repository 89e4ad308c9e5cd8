// Host<->device staging (kernels/dispatch.h): DeviceBuffer per input and output, plain
// cudaMemcpy, one synchronisation per call. The stub branch (no MOBA_HAVE_CUDA) only reports.
#include "kernels/dispatch.h"

#include <cstddef>
#include <vector>

#ifdef MOBA_HAVE_CUDA
#include "kernels/cuda_runtime.h"
#endif

namespace moba::kernels {

const char* const kNoCudaBackend = "this build has no CUDA backend";

#ifdef MOBA_HAVE_CUDA
namespace {

// Inside a function returning const char*: propagate a failed step.
#define MOBA_STAGE_TRY(expr)                          \
  do {                                                \
    if (const char* moba_e_ = (expr)) return moba_e_; \
  } while (0)

const char* alloc(size_t bytes, DeviceBuffer* out) {
  *out = DeviceBuffer(bytes > 0 ? bytes : 4);
  return out->error();
}

// A device copy of `v` with the same strides, holding rows [row_begin, row_end) of every
// head (other rows are allocated and zeroed, not copied: callers read only the rows they name).
struct DeviceView {
  DeviceBuffer buf;
  TensorView view;
};
const char* upload(const TensorView& v, int64_t row_begin, int64_t row_end, DeviceView* d) {
  d->view = v;
  if (v.data == nullptr || v.n_heads == 0 || v.n_tokens == 0) return nullptr;
  const int64_t extent = (v.n_heads - 1) * v.stride_head + (v.n_tokens - 1) * v.stride_token + v.head_dim;
  MOBA_STAGE_TRY(alloc(static_cast<size_t>(extent) * sizeof(float), &d->buf));
  float* base = d->buf.as<float>();
  if (row_begin > 0 || row_end < v.n_tokens)  // rows not copied read as zeros, never as NaN garbage
    MOBA_STAGE_TRY(cuda_fill_bytes(base, 0, static_cast<size_t>(extent) * sizeof(float)));
  for (int64_t h = 0; h < v.n_heads; ++h) {
    if (row_end <= row_begin) break;
    const int64_t off = h * v.stride_head + row_begin * v.stride_token;
    const int64_t n = (row_end - row_begin - 1) * v.stride_token + v.head_dim;
    MOBA_STAGE_TRY(cuda_copy_to_device(base + off, v.data + off, static_cast<size_t>(n) * sizeof(float)));
  }
  d->view.data = base;
  return nullptr;
}

template <typename T>
const char* upload_array(const T* host, size_t n, DeviceBuffer* out) {
  MOBA_STAGE_TRY(alloc(n * sizeof(T), out));
  if (host) MOBA_STAGE_TRY(cuda_copy_to_device(out->get(), host, n * sizeof(T)));
  return nullptr;
}

template <typename T>
const char* download(T* host, const DeviceBuffer& b, size_t n) {
  return host ? cuda_copy_to_host(host, b.get(), n * sizeof(T)) : nullptr;
}

}  // namespace

const char* block_pool_cuda_from_host(const BlockPoolParams& p) {
  const size_t n = static_cast<size_t>(p.k.n_heads * block_count(p.k.n_tokens, p.block_size) * p.k.head_dim);
  DeviceView k;
  DeviceBuffer mean, mn, mx;
  MOBA_STAGE_TRY(upload(p.k, 0, p.k.n_tokens, &k));
  MOBA_STAGE_TRY(alloc(n * 4, &mean));
  MOBA_STAGE_TRY(alloc(p.min ? n * 4 : 0, &mn));
  MOBA_STAGE_TRY(alloc(p.max ? n * 4 : 0, &mx));
  BlockPoolParams q = p;
  q.k = k.view;
  q.mean = mean.as<float>();
  q.min = p.min ? mn.as<float>() : nullptr;
  q.max = p.max ? mx.as<float>() : nullptr;
  MOBA_STAGE_TRY(block_pool_cuda(q));
  MOBA_STAGE_TRY(cuda_synchronize());
  MOBA_STAGE_TRY(download(p.mean, mean, n));
  MOBA_STAGE_TRY(download(p.min, mn, n));
  return download(p.max, mx, n);
}

const char* kconv_cuda_from_host(const KconvParams& p) {
  const size_t n = static_cast<size_t>(p.k.n_heads * p.k.n_tokens * p.k.head_dim);
  const size_t n_w = static_cast<size_t>((p.weights_per_head ? p.k.n_heads : 1) * p.width * p.k.head_dim);
  DeviceView k;
  DeviceBuffer w, out;
  MOBA_STAGE_TRY(upload(p.k, 0, p.k.n_tokens, &k));
  MOBA_STAGE_TRY(upload_array(p.weights, p.weights ? n_w : 0, &w));
  MOBA_STAGE_TRY(alloc(n * 4, &out));
  KconvParams q = p;
  q.k = k.view;
  q.weights = p.weights ? w.as<float>() : nullptr;
  q.out = out.as<float>();
  MOBA_STAGE_TRY(kconv_cuda(q));
  MOBA_STAGE_TRY(cuda_synchronize());
  return download(p.out, out, n);
}

const char* gate_topk_cuda_from_host(const GateTopkParams& p) {
  const size_t n_kbar = static_cast<size_t>(p.n_kv_heads * block_count(p.q.n_tokens, p.block_size) * p.q.head_dim);
  const size_t n_sel = static_cast<size_t>(p.q.n_heads * p.q.n_tokens * p.top_k);
  DeviceView qd;
  DeviceBuffer kbar, sel, scores;
  MOBA_STAGE_TRY(upload(p.q, 0, p.q.n_tokens, &qd));
  MOBA_STAGE_TRY(upload_array(p.kbar, n_kbar, &kbar));
  MOBA_STAGE_TRY(alloc(n_sel * 4, &sel));
  MOBA_STAGE_TRY(alloc(p.selected_scores ? n_sel * 4 : 0, &scores));
  GateTopkParams q = p;
  q.q = Operand::of_dtype(qd.view, p.q.dtype);  // the dtype says how the values are computed
  q.kbar = kbar.as<float>();
  q.selected = sel.as<int32_t>();
  q.selected_scores = p.selected_scores ? scores.as<float>() : nullptr;
  MOBA_STAGE_TRY(gate_topk_cuda(q));
  MOBA_STAGE_TRY(cuda_synchronize());
  MOBA_STAGE_TRY(download(p.selected, sel, n_sel));
  return download(p.selected_scores, scores, n_sel);
}

const char* moba_attention_cuda_from_host(const MobaAttentionParams& p) {
  MOBA_STAGE_TRY(moba_attention_can_run(p));
  // q, k, v whole (the CUDA path choice and q's conversion are the whole sequence's); the
  // selections and outputs of the query window's R rows.
  const int64_t T = p.q.n_tokens, R = moba_attention_rows(p);
  const size_t n_out = static_cast<size_t>(p.q.n_heads * R * p.q.head_dim), n_lse = static_cast<size_t>(p.q.n_heads * R);
  DeviceView qd, kd, vd;
  DeviceBuffer sel, out, lse;
  MOBA_STAGE_TRY(upload(p.q, 0, T, &qd));
  MOBA_STAGE_TRY(upload(p.k, 0, T, &kd));
  MOBA_STAGE_TRY(upload(p.v, 0, T, &vd));
  MOBA_STAGE_TRY(upload_array(p.selected, static_cast<size_t>(p.q.n_heads * R * p.top_k), &sel));
  MOBA_STAGE_TRY(alloc(n_out * 4, &out));
  MOBA_STAGE_TRY(alloc(p.lse ? n_lse * 4 : 0, &lse));
  MobaAttentionParams q = p;
  q.q = Operand::of_dtype(qd.view, p.q.dtype);  // the dtype says how the values are computed
  q.k = Operand::of_dtype(kd.view, p.k.dtype);
  q.v = Operand::of_dtype(vd.view, p.v.dtype);
  q.selected = sel.as<int32_t>();
  q.out = out.as<float>();
  q.lse = p.lse ? lse.as<float>() : nullptr;
  MOBA_STAGE_TRY(moba_attention_cuda(q));
  MOBA_STAGE_TRY(cuda_synchronize());
  MOBA_STAGE_TRY(download(p.out, out, n_out));
  return download(p.lse, lse, n_lse);
}

const char* dense_pass_cuda_from_host(const DensePassParams& p) {
  const int64_t nq = p.q.n_heads, NQ = p.query_count, t_end = p.query_begin + p.query_count;
  // Queries of the range and the causal prefix of keys/values only.
  DeviceView qd, kd, vd;
  MOBA_STAGE_TRY(upload(p.q, p.query_begin, t_end, &qd));
  MOBA_STAGE_TRY(upload(p.k, 0, t_end, &kd));
  if (p.out) MOBA_STAGE_TRY(upload(p.v, 0, t_end, &vd));
  const size_t n_lse = static_cast<size_t>(nq * NQ), n_out = n_lse * static_cast<size_t>(p.q.head_dim),
               n_top = n_lse * static_cast<size_t>(p.top_n);
  DeviceBuffer lse, out, top_i, top_p;
  MOBA_STAGE_TRY(alloc(n_lse * 4, &lse));
  MOBA_STAGE_TRY(alloc(p.out ? n_out * 4 : 0, &out));
  MOBA_STAGE_TRY(alloc(p.top_n > 0 ? n_top * 4 : 0, &top_i));
  MOBA_STAGE_TRY(alloc(p.top_n > 0 && p.top_prob ? n_top * 4 : 0, &top_p));
  std::vector<DeviceBuffer> mass(static_cast<size_t>(p.n_block_sizes));
  std::vector<size_t> n_mass;
  DensePassParams q = p;
  q.q = Operand::of_dtype(qd.view, p.q.dtype);  // the dtype says how the values are computed
  q.k = Operand::of_dtype(kd.view, p.k.dtype);
  if (p.out) q.v = Operand::of_dtype(vd.view, p.v.dtype);
  q.lse = lse.as<float>();
  q.out = p.out ? out.as<float>() : nullptr;
  q.top_index = p.top_n > 0 ? top_i.as<int32_t>() : nullptr;
  q.top_prob = p.top_n > 0 && p.top_prob ? top_p.as<float>() : nullptr;
  for (int i = 0; i < p.n_block_sizes; ++i) {
    n_mass.push_back(n_lse * static_cast<size_t>(block_count(p.q.n_tokens, p.block_sizes[i])));
    MOBA_STAGE_TRY(alloc(n_mass.back() * 4, &mass[static_cast<size_t>(i)]));
    q.block_mass[i] = mass[static_cast<size_t>(i)].as<float>();
  }
  MOBA_STAGE_TRY(dense_pass_cuda(q));
  MOBA_STAGE_TRY(cuda_synchronize());
  MOBA_STAGE_TRY(download(p.lse, lse, n_lse));
  MOBA_STAGE_TRY(download(p.out, out, n_out));
  if (p.top_n > 0) {
    MOBA_STAGE_TRY(download(p.top_index, top_i, n_top));
    MOBA_STAGE_TRY(download(p.top_prob, top_p, n_top));
  }
  for (int i = 0; i < p.n_block_sizes; ++i)
    MOBA_STAGE_TRY(download(p.block_mass[i], mass[static_cast<size_t>(i)], n_mass[static_cast<size_t>(i)]));
  return nullptr;
}

#undef MOBA_STAGE_TRY

#else  // no CUDA backend

const char* block_pool_cuda_from_host(const BlockPoolParams&) { return kNoCudaBackend; }
const char* kconv_cuda_from_host(const KconvParams&) { return kNoCudaBackend; }
const char* gate_topk_cuda_from_host(const GateTopkParams&) { return kNoCudaBackend; }
const char* moba_attention_cuda_from_host(const MobaAttentionParams&) { return kNoCudaBackend; }
const char* dense_pass_cuda_from_host(const DensePassParams&) { return kNoCudaBackend; }

#endif

}  // namespace moba::kernels
