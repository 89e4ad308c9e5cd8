#pragma once
// Device helpers for code that must not include CUDA headers (analysis/backend, moba bench,
// tests). Declared only when the build has the CUDA backend (MOBA_HAVE_CUDA); implemented in
// kernels/cuda/cuda_runtime.cu. Every function returns nullptr or a static message naming
// the failed CUDA call with file and line (cuda_last_error_detail() adds the CUDA error).
#ifdef MOBA_HAVE_CUDA
#include <cstddef>
#include <string>

#include "kernels/backend.h"  // cuda_device_available, cuda_device_name, cuda_last_error_detail

namespace moba::kernels {

// Owning device allocation (stream-ordered pool of the current device, so that the pool's
// high-water mark counts it). Move-only. Allocation failure leaves it empty and sets
// `error()`.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <typename T> T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }
  const char* error() const { return error_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  const char* error_ = nullptr;
};

const char* cuda_copy_to_device(void* dst, const void* src, size_t bytes);
const char* cuda_copy_to_host(void* dst, const void* src, size_t bytes);
const char* cuda_fill_bytes(void* dst, int byte, size_t bytes);
const char* cuda_synchronize();

// Peak device memory: bytes in use in the default pool's high-water mark since the last reset.
const char* cuda_peak_memory_reset();
size_t cuda_peak_memory_bytes();

// Event timer on the default stream: start(), stop(), then elapsed_ms() synchronizes.
class CudaTimer {
 public:
  CudaTimer();
  ~CudaTimer();
  CudaTimer(const CudaTimer&) = delete;
  CudaTimer& operator=(const CudaTimer&) = delete;
  const char* start();
  const char* stop();
  float elapsed_ms();  // NaN on failure

 private:
  void* begin_ = nullptr;
  void* end_ = nullptr;
};

}  // namespace moba::kernels
#endif  // MOBA_HAVE_CUDA
