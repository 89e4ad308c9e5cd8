#pragma once
// Head-major tensors [n_heads, n_tokens, head_dim]. Values are held as fp32: every f16 and
// bf16 value widens exactly, and `dtype` remembers the source type (for pool-precision
// rounding and for the GPU path, which narrows back losslessly).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace moba {

// Non-owning strided view; strides are in elements. Rows are contiguous when stride_dim == 1.
struct TensorView {
  const float* data = nullptr;
  int64_t n_heads = 0, n_tokens = 0, head_dim = 0;
  int64_t stride_head = 0, stride_token = 0, stride_dim = 1;

  float at(int64_t h, int64_t t, int64_t d) const {
    return data[h * stride_head + t * stride_token + d * stride_dim];
  }
  const float* row(int64_t h, int64_t t) const { return data + h * stride_head + t * stride_token; }
  TensorView heads(int64_t head_begin, int64_t count) const {
    TensorView v = *this;
    v.data = data + head_begin * stride_head;
    v.n_heads = count;
    return v;
  }
};

// Blocks of 4 MiB and more aligned to 2 MiB and offered to the kernel for transparent huge
// pages: a KV group's fresh tensors (~100 MB at 32K tokens) then fault in a few dozen pages
// instead of ~25,000 (on a virtual machine ~10 us each: most of a first read's time).
void* allocate_large(size_t bytes);
void free_large(void* p, size_t bytes) noexcept;

template <class T>
struct LargePageAllocator {
  using value_type = T;
  LargePageAllocator() = default;
  template <class U>
  LargePageAllocator(const LargePageAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(allocate_large(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { free_large(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const LargePageAllocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const LargePageAllocator<U>&) const noexcept { return false; }
};

// A copy as a plain std::vector (for code that holds one).
template <class Alloc>
std::vector<float> to_std_vector(const std::vector<float, Alloc>& v) {
  return std::vector<float>(v.begin(), v.end());
}

// 16-bit elements as stored (DumpReader::read_raw16_into), in large pages as Tensor3's floats.
using Raw16 = std::vector<uint16_t, LargePageAllocator<uint16_t>>;

// Owning, contiguous [n_heads, n_tokens, head_dim].
struct Tensor3 {
  int64_t n_heads = 0, n_tokens = 0, head_dim = 0;
  DType dtype = DType::f32;  // element type in the source dump
  std::vector<float, LargePageAllocator<float>> data;

  Tensor3() = default;
  Tensor3(int64_t heads, int64_t tokens, int64_t dim, DType t = DType::f32)
      : n_heads(heads), n_tokens(tokens), head_dim(dim), dtype(t),
        data(static_cast<size_t>(heads * tokens * dim), 0.0f) {}

  // New dimensions over the same storage: its values are kept up to the new size (the rest
  // zero), and its allocation is reused where large enough (a reader refilling a buffer:
  // no fresh pages to fault in; DumpReader::read_into).
  void reshape(int64_t heads, int64_t tokens, int64_t dim, DType t) {
    n_heads = heads, n_tokens = tokens, head_dim = dim, dtype = t;
    data.resize(static_cast<size_t>(heads * tokens * dim));
  }

  float* row(int64_t h, int64_t t) { return data.data() + (h * n_tokens + t) * head_dim; }
  const float* row(int64_t h, int64_t t) const { return data.data() + (h * n_tokens + t) * head_dim; }
  TensorView view() const {
    return TensorView{data.data(), n_heads, n_tokens, head_dim, n_tokens * head_dim, head_dim, 1};
  }
};

}  // namespace moba
