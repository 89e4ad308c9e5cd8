// Backend dispatch (analysis/backend.h). The CPU branch calls the reference directly. The
// CUDA branch (MOBA_HAVE_CUDA) copies the inputs of one call to device buffers
// (kernels/cuda_runtime.h), runs the `*_cuda` twin on the default stream, synchronises and
// copies the outputs back: correct for every caller, with host<->device traffic per call
// (a chunked analysis re-uploads the prefix of q/k/v it needs for each chunk; keeping a KV
// group resident on the device is the next step for long dumps).
#include "analysis/backend.h"

#include <omp.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "core/errors.h"
#include "kernels/backend.h"
#ifdef MOBA_HAVE_CUDA
#include "kernels/cuda_runtime.h"
#endif

namespace moba::analysis {
namespace {

void check(const char* reason, const char* op) {
  if (reason) throw std::logic_error(std::string(op) + ": invalid parameters: " + reason);
}

#ifdef MOBA_HAVE_CUDA
[[noreturn]] void cuda_failed(const char* op, const char* what) {
  throw std::runtime_error(std::string(op) + " (cuda): " + what + ": " + kernels::cuda_last_error_detail());
}

void cuda_check(const char* op, const char* err) {
  if (err) cuda_failed(op, err);
}

kernels::DeviceBuffer alloc(const char* op, size_t bytes) {
  kernels::DeviceBuffer b(bytes > 0 ? bytes : 4);
  if (b.error()) cuda_failed(op, b.error());
  return b;
}

// A device copy of `v` with the same strides, holding rows [row_begin, row_end) of every head
// (other rows are allocated, not copied: callers read only the rows they name).
struct DeviceView {
  kernels::DeviceBuffer buf;
  TensorView view;
};
DeviceView upload(const char* op, const TensorView& v, int64_t row_begin, int64_t row_end) {
  DeviceView d;
  d.view = v;
  if (v.data == nullptr || v.n_heads == 0 || v.n_tokens == 0) return d;
  const int64_t extent = (v.n_heads - 1) * v.stride_head + (v.n_tokens - 1) * v.stride_token + v.head_dim;
  d.buf = alloc(op, static_cast<size_t>(extent) * sizeof(float));
  float* base = d.buf.as<float>();
  if (row_begin > 0 || row_end < v.n_tokens)  // rows not copied read as zeros, never as NaN garbage
    cuda_check(op, kernels::cuda_fill_bytes(base, 0, static_cast<size_t>(extent) * sizeof(float)));
  for (int64_t h = 0; h < v.n_heads; ++h) {
    if (row_end <= row_begin) break;
    const int64_t off = h * v.stride_head + row_begin * v.stride_token;
    const int64_t n = (row_end - row_begin - 1) * v.stride_token + v.head_dim;
    cuda_check(op, kernels::cuda_copy_to_device(base + off, v.data + off, static_cast<size_t>(n) * sizeof(float)));
  }
  d.view.data = base;
  return d;
}

template <typename T>
kernels::DeviceBuffer upload_array(const char* op, const T* host, size_t n) {
  kernels::DeviceBuffer b = alloc(op, n * sizeof(T));
  if (host) cuda_check(op, kernels::cuda_copy_to_device(b.get(), host, n * sizeof(T)));
  return b;
}

template <typename T>
void download(const char* op, T* host, const kernels::DeviceBuffer& b, size_t n) {
  if (host) cuda_check(op, kernels::cuda_copy_to_host(host, b.get(), n * sizeof(T)));
}
#endif

#ifndef MOBA_HAVE_CUDA
[[noreturn]] void no_cuda(const char* fn) {
  throw std::logic_error(std::string(fn) + ": Device::cuda in a build without the CUDA backend");
}
#endif

int gpu_count() {
#ifdef MOBA_HAVE_CUDA
  return kernels::cuda_device_count();
#else
  return 0;
#endif
}

}  // namespace

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

DeviceInfo resolve_device(const std::string& request) {
  if (request != "cpu" && request != "cuda" && request != "auto")
    throw UsageError("--device: '" + request + "' is not one of cpu|cuda|auto");
  const bool want_cuda = request == "cuda";
  const bool cuda_ok = kernels::cuda_compiled() && gpu_count() > 0;
  if (want_cuda && !kernels::cuda_compiled())
    throw UsageError("--device cuda: CUDA requested but this build has no CUDA backend");
  if (want_cuda && !cuda_ok) throw UsageError("--device cuda: no GPU found");
  DeviceInfo info;
  if (request != "cpu" && cuda_ok) {
    info.device = Device::cuda;
#ifdef MOBA_HAVE_CUDA
    info.description = "cuda (" + kernels::cuda_device_name() + ")";
#endif
  } else {
    info.device = Device::cpu;
    info.description = "cpu (" + std::to_string(omp_get_max_threads()) + " threads)";
  }
  return info;
}

void run_block_pool(const kernels::BlockPoolParams& p, Device d) {
  check(kernels::block_pool_can_run(p), "block_pool");
  if (d == Device::cpu) return kernels::block_pool_cpu(p);
#ifdef MOBA_HAVE_CUDA
  const char* op = "block_pool";
  const size_t n = static_cast<size_t>(p.k.n_heads * kernels::block_count(p.k.n_tokens, p.block_size) * p.k.head_dim);
  DeviceView k = upload(op, p.k, 0, p.k.n_tokens);
  kernels::DeviceBuffer mean = alloc(op, n * 4), mn = alloc(op, p.min ? n * 4 : 0), mx = alloc(op, p.max ? n * 4 : 0);
  kernels::BlockPoolParams q = p;
  q.k = k.view;
  q.mean = mean.as<float>();
  q.min = p.min ? mn.as<float>() : nullptr;
  q.max = p.max ? mx.as<float>() : nullptr;
  cuda_check(op, kernels::block_pool_cuda(q));
  cuda_check(op, kernels::cuda_synchronize());
  download(op, p.mean, mean, n);
  download(op, p.min, mn, n);
  download(op, p.max, mx, n);
#else
  no_cuda(__func__);
#endif
}

void run_kconv(const kernels::KconvParams& p, Device d) {
  check(kernels::kconv_can_run(p), "kconv");
  if (d == Device::cpu) return kernels::kconv_cpu(p);
#ifdef MOBA_HAVE_CUDA
  const char* op = "kconv";
  const size_t n = static_cast<size_t>(p.k.n_heads * p.k.n_tokens * p.k.head_dim);
  const size_t n_w = static_cast<size_t>((p.weights_per_head ? p.k.n_heads : 1) * p.width * p.k.head_dim);
  DeviceView k = upload(op, p.k, 0, p.k.n_tokens);
  kernels::DeviceBuffer w = upload_array(op, p.weights, p.weights ? n_w : 0), out = alloc(op, n * 4);
  kernels::KconvParams q = p;
  q.k = k.view;
  q.weights = p.weights ? w.as<float>() : nullptr;
  q.out = out.as<float>();
  cuda_check(op, kernels::kconv_cuda(q));
  cuda_check(op, kernels::cuda_synchronize());
  download(op, p.out, out, n);
#else
  no_cuda(__func__);
#endif
}

void run_gate_topk(const kernels::GateTopkParams& p, Device d) {
  check(kernels::gate_topk_can_run(p), "gate_topk");
  if (d == Device::cpu) return kernels::gate_topk_cpu(p);
#ifdef MOBA_HAVE_CUDA
  const char* op = "gate_topk";
  const size_t n_kbar = static_cast<size_t>(p.n_kv_heads * kernels::block_count(p.q.n_tokens, p.block_size) * p.q.head_dim);
  const size_t n_sel = static_cast<size_t>(p.q.n_heads * p.q.n_tokens * p.top_k);
  DeviceView qd = upload(op, p.q, 0, p.q.n_tokens);
  kernels::DeviceBuffer kbar = upload_array(op, p.kbar, n_kbar), sel = alloc(op, n_sel * 4),
                        scores = alloc(op, p.selected_scores ? n_sel * 4 : 0);
  kernels::GateTopkParams q = p;
  q.q = qd.view;
  q.kbar = kbar.as<float>();
  q.selected = sel.as<int32_t>();
  q.selected_scores = p.selected_scores ? scores.as<float>() : nullptr;
  cuda_check(op, kernels::gate_topk_cuda(q));
  cuda_check(op, kernels::cuda_synchronize());
  download(op, p.selected, sel, n_sel);
  download(op, p.selected_scores, scores, n_sel);
#else
  no_cuda(__func__);
#endif
}

void run_moba_attention(const kernels::MobaAttentionParams& p, Device d) {
  check(kernels::moba_attention_can_run(p), "moba_attention");
  if (d == Device::cpu) return kernels::moba_attention_cpu(p);
#ifdef MOBA_HAVE_CUDA
  const char* op = "moba_attention";
  const int64_t T = p.q.n_tokens;
  const size_t n_out = static_cast<size_t>(p.q.n_heads * T * p.q.head_dim), n_lse = static_cast<size_t>(p.q.n_heads * T);
  DeviceView qd = upload(op, p.q, 0, T), kd = upload(op, p.k, 0, T), vd = upload(op, p.v, 0, T);
  kernels::DeviceBuffer sel = upload_array(op, p.selected, static_cast<size_t>(p.q.n_heads * T * p.top_k)),
                        out = alloc(op, n_out * 4), lse = alloc(op, p.lse ? n_lse * 4 : 0);
  kernels::MobaAttentionParams q = p;
  q.q = qd.view;
  q.k = kd.view;
  q.v = vd.view;
  q.selected = sel.as<int32_t>();
  q.out = out.as<float>();
  q.lse = p.lse ? lse.as<float>() : nullptr;
  cuda_check(op, kernels::moba_attention_cuda(q));
  cuda_check(op, kernels::cuda_synchronize());
  download(op, p.out, out, n_out);
  download(op, p.lse, lse, n_lse);
#else
  no_cuda(__func__);
#endif
}

void run_dense_pass(const kernels::DensePassParams& p, Device d) {
  check(kernels::dense_pass_can_run(p), "dense_pass");
  if (d == Device::cpu) return kernels::dense_pass_cpu(p);
#ifdef MOBA_HAVE_CUDA
  const char* op = "dense_pass";
  const int64_t nq = p.q.n_heads, NQ = p.query_count, t_end = p.query_begin + p.query_count;
  // Queries of the range and the causal prefix of keys/values only.
  DeviceView qd = upload(op, p.q, p.query_begin, t_end), kd = upload(op, p.k, 0, t_end);
  DeviceView vd = p.out ? upload(op, p.v, 0, t_end) : DeviceView();
  const size_t n_lse = static_cast<size_t>(nq * NQ), n_out = n_lse * static_cast<size_t>(p.q.head_dim),
               n_top = n_lse * static_cast<size_t>(p.top_n);
  kernels::DeviceBuffer lse = alloc(op, n_lse * 4), out = alloc(op, p.out ? n_out * 4 : 0),
                        top_i = alloc(op, p.top_n > 0 ? n_top * 4 : 0),
                        top_p = alloc(op, p.top_n > 0 && p.top_prob ? n_top * 4 : 0);
  std::vector<kernels::DeviceBuffer> mass;
  std::vector<size_t> n_mass;
  kernels::DensePassParams q = p;
  q.q = qd.view;
  q.k = kd.view;
  if (p.out) q.v = vd.view;
  q.lse = lse.as<float>();
  q.out = p.out ? out.as<float>() : nullptr;
  q.top_index = p.top_n > 0 ? top_i.as<int32_t>() : nullptr;
  q.top_prob = p.top_n > 0 && p.top_prob ? top_p.as<float>() : nullptr;
  for (int i = 0; i < p.n_block_sizes; ++i) {
    n_mass.push_back(n_lse * static_cast<size_t>(kernels::block_count(p.q.n_tokens, p.block_sizes[i])));
    mass.push_back(alloc(op, n_mass.back() * 4));
    q.block_mass[i] = mass.back().as<float>();
  }
  cuda_check(op, kernels::dense_pass_cuda(q));
  cuda_check(op, kernels::cuda_synchronize());
  download(op, p.lse, lse, n_lse);
  download(op, p.out, out, n_out);
  if (p.top_n > 0) {
    download(op, p.top_index, top_i, n_top);
    download(op, p.top_prob, top_p, n_top);
  }
  for (int i = 0; i < p.n_block_sizes; ++i) download(op, p.block_mass[i], mass[i], n_mass[i]);
#else
  no_cuda(__func__);
#endif
}

}  // namespace moba::analysis
