// Device helpers (kernels/cuda_runtime.h) and the shared fp32 -> 16-bit conversion.
#include "kernels/cuda_runtime.h"
#include "kernels/backend.h"

#include <cmath>
#include <string>
#include <utility>

#include "kernels/cuda/cuda_util.cuh"

namespace moba::kernels {
namespace cuda_detail {
namespace {
thread_local cudaError_t g_last_error = cudaSuccess;

// [heads, tokens, dim] fp32 strided -> contiguous 16-bit; one thread per element.
__global__ void convert_to_16_kernel(const float* __restrict__ src, int64_t tokens, int64_t dim,
                                     int64_t stride_head, int64_t stride_token, ElemKind kind,
                                     uint16_t* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = i % dim, row = i / dim, t = row % tokens, h = row / tokens;
    const float x = src[h * stride_head + t * stride_token + c];
    dst[i] = kind == kF16 ? __half_as_ushort(__float2half_rn(x))
                          : __bfloat16_as_ushort(__float2bfloat16_rn(x));
  }
}

const char* launch_convert_to_16(const float* src, int64_t heads, int64_t tokens, int64_t dim,
                                 int64_t stride_head, int64_t stride_token, ElemKind kind,
                                 uint16_t* dst, cudaStream_t stream) {
  const int64_t n = heads * tokens * dim;
  if (n == 0) return nullptr;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65536);
  convert_to_16_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      src, tokens, dim, stride_head, stride_token, kind, dst, n);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}
// Contiguous 16-bit -> fp32, exact (the inverse of convert_to_16 on 16-bit values).
__global__ void convert_from_16_kernel(const uint16_t* __restrict__ src, ElemKind kind, float* __restrict__ dst,
                                       int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = kind == kF16 ? __half2float(__ushort_as_half(src[i])) : __uint_as_float(static_cast<unsigned>(src[i]) << 16);
}

// max |x| of a strided view as float bits (non-negative floats order as unsigned; NaN skipped).
__global__ void max_abs_kernel(const float* __restrict__ src, int64_t tokens, int64_t dim, int64_t stride_head,
                               int64_t stride_token, unsigned* max_bits, int64_t n) {
  float m = 0.0f;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = i % dim, row = i / dim, t = row % tokens, h = row / tokens;
    m = fmaxf(m, fabsf(src[h * stride_head + t * stride_token + c]));
  }
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if (threadIdx.x % 32 == 0) atomicMax(max_bits, __float_as_uint(m));
}

// x * 2^-e split into fp16 hi + lo, e chosen from max |x| so that the scaled max is < 2^14
// (finite, and every value >= 2^-17 of the max keeps hi and lo normal: x = (hi + lo) 2^e
// within 2^-22 |x|). e goes to *exp_out.
__global__ void convert_split_kernel(const float* __restrict__ src, int64_t tokens, int64_t dim,
                                     int64_t stride_head, int64_t stride_token, const unsigned* max_bits,
                                     int* exp_out, uint16_t* __restrict__ hi, uint16_t* __restrict__ lo, int64_t n) {
  const float mx = __uint_as_float(*max_bits);
  int x = 0;
  if (mx > 0.0f && isfinite(mx)) frexpf(mx, &x);  // mx = f 2^x, f in [0.5, 1)
  const int e = mx > 0.0f && isfinite(mx) ? x - 14 : 0;
  if (blockIdx.x == 0 && threadIdx.x == 0) *exp_out = e;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = i % dim, row = i / dim, t = row % tokens, h = row / tokens;
    const float xs = ldexpf(src[h * stride_head + t * stride_token + c], -e);  // exact (power of two)
    const __half xh = __float2half_rn(xs);
    hi[i] = __half_as_ushort(xh);
    lo[i] = __half_as_ushort(__float2half_rn(xs - __half2float(xh)));  // xs - hi: exact in fp32
  }
}
}  // namespace

const char* record_failure(cudaError_t e, const char* where) {
  g_last_error = e;
  return where;
}

const char* convert_to_16(const float* src, int64_t heads, int64_t tokens, int64_t dim,
                          int64_t stride_head, int64_t stride_token, ElemKind kind, uint16_t* dst,
                          cudaStream_t stream) {
  if (kind != kF16 && kind != kBF16) return "convert_to_16: target must be f16 or bf16";
  return launch_convert_to_16(src, heads, tokens, dim, stride_head, stride_token, kind, dst, stream);
}

const char* convert_from_16(const uint16_t* src, int64_t n, ElemKind kind, float* dst, cudaStream_t stream) {
  if (kind != kF16 && kind != kBF16) return "convert_from_16: source must be f16 or bf16";
  if (n == 0) return nullptr;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65536);
  convert_from_16_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(src, kind, dst, n);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

const char* convert_to_f16_split(const float* src, int64_t heads, int64_t tokens, int64_t dim,
                                 int64_t stride_head, int64_t stride_token, uint16_t* hi, uint16_t* lo,
                                 unsigned* max_bits, int* exp_out, cudaStream_t stream) {
  MOBA_CUDA_TRY(cudaMemsetAsync(max_bits, 0, sizeof(unsigned), stream));
  const int64_t n = heads * tokens * dim;
  if (n == 0) return nullptr;  // *exp_out keeps the caller's 0
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65536);
  max_abs_kernel<<<static_cast<unsigned>(std::min<int64_t>(blocks, 1024)), threads, 0, stream>>>(
      src, tokens, dim, stride_head, stride_token, max_bits, n);
  MOBA_CUDA_LAUNCH_CHECK();
  convert_split_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(src, tokens, dim, stride_head,
                                                                              stride_token, max_bits, exp_out, hi,
                                                                              lo, n);
  MOBA_CUDA_LAUNCH_CHECK();
  return nullptr;
}

}  // namespace cuda_detail

using cuda_detail::record_failure;

bool cuda_create_context() {
  if (cudaFree(nullptr) == cudaSuccess) return true;
  cudaGetLastError();
  return false;
}

bool cuda_device_available() { return cuda_device_count() > 0 && cuda_create_context(); }

std::string cuda_device_name() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return cuda_device_name(dev);
}

int cuda_device_count() {
  // Asked once: the visible devices do not change within a process (and later callers do not
  // wait for a context another thread is making).
  static const int n = [] {
    int c = 0;
    if (cudaGetDeviceCount(&c) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return c;
  }();
  return n;
}

std::string cuda_device_name(int device) {
  cudaDeviceProp prop{};
  if (device < 0 || device >= cuda_device_count() || cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return prop.name;
}

namespace {
// CUDA's version integers: 1000 * major + 10 * minor.
std::string version_text(int v) {
  return v > 0 ? std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10) : "";
}
}  // namespace

std::string cuda_driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) cudaGetLastError();
  return version_text(v);
}

std::string cuda_runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) cudaGetLastError();
  return version_text(v);
}

std::string cuda_last_error_detail() {
  return std::string(cudaGetErrorName(cuda_detail::g_last_error)) + ": " +
         cudaGetErrorString(cuda_detail::g_last_error);
}

DeviceBuffer::DeviceBuffer(size_t bytes) {
  if (bytes == 0) return;
  const cudaError_t e = cudaMallocAsync(&ptr_, bytes, nullptr);
  if (e != cudaSuccess) {
    ptr_ = nullptr;
    error_ = record_failure(e, __FILE__ ": cudaMallocAsync");
    return;
  }
  const cudaError_t s = cudaStreamSynchronize(nullptr);
  if (s != cudaSuccess) error_ = record_failure(s, __FILE__ ": cudaStreamSynchronize");
  bytes_ = bytes;
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) {
    cudaFreeAsync(ptr_, nullptr);
    cudaStreamSynchronize(nullptr);
  }
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)), error_(o.error_) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFreeAsync(ptr_, nullptr);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    error_ = o.error_;
  }
  return *this;
}

const char* cuda_copy_to_device(void* dst, const void* src, size_t bytes) {
  MOBA_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  return nullptr;
}
const char* cuda_copy_to_host(void* dst, const void* src, size_t bytes) {
  MOBA_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  return nullptr;
}
const char* cuda_fill_bytes(void* dst, int byte, size_t bytes) {
  MOBA_CUDA_TRY(cudaMemset(dst, byte, bytes));
  return nullptr;
}
const char* cuda_synchronize() {
  MOBA_CUDA_TRY(cudaDeviceSynchronize());
  return nullptr;
}

const char* cuda_peak_memory_reset() {
  int dev = 0;
  cudaMemPool_t pool;
  MOBA_CUDA_TRY(cudaGetDevice(&dev));
  MOBA_CUDA_TRY(cudaDeviceGetDefaultMemPool(&pool, dev));
  uint64_t zero = 0;
  MOBA_CUDA_TRY(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
  return nullptr;
}

size_t cuda_peak_memory_bytes() {
  int dev = 0;
  cudaMemPool_t pool;
  uint64_t v = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetDefaultMemPool(&pool, dev) != cudaSuccess ||
      cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &v) != cudaSuccess)
    return 0;
  return static_cast<size_t>(v);
}

CudaTimer::CudaTimer() {
  cudaEvent_t a = nullptr, b = nullptr;
  if (cudaEventCreate(&a) == cudaSuccess) begin_ = a;
  if (cudaEventCreate(&b) == cudaSuccess) end_ = b;
}
CudaTimer::~CudaTimer() {
  if (begin_) cudaEventDestroy(static_cast<cudaEvent_t>(begin_));
  if (end_) cudaEventDestroy(static_cast<cudaEvent_t>(end_));
}
const char* CudaTimer::start() {
  if (!begin_) return "CudaTimer: cudaEventCreate failed";
  MOBA_CUDA_TRY(cudaEventRecord(static_cast<cudaEvent_t>(begin_), nullptr));
  return nullptr;
}
const char* CudaTimer::stop() {
  if (!end_) return "CudaTimer: cudaEventCreate failed";
  MOBA_CUDA_TRY(cudaEventRecord(static_cast<cudaEvent_t>(end_), nullptr));
  return nullptr;
}
float CudaTimer::elapsed_ms() {
  float ms = NAN;
  if (!begin_ || !end_ || cudaEventSynchronize(static_cast<cudaEvent_t>(end_)) != cudaSuccess ||
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(begin_), static_cast<cudaEvent_t>(end_)) != cudaSuccess)
    return NAN;
  return ms;
}

}  // namespace moba::kernels
