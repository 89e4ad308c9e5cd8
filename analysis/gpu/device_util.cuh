#pragma once
// Host-side helpers of the device code in analysis/gpu (the GPU-resident analysis and moba
// route's device routing): checked CUDA calls, an owning device array, q/k/v uploads and their
// kernel operands, dynamic shared memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/operand.h"

namespace moba::analysis::gpu {

// Throws with the failed step and the CUDA error.
inline void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("GPU: ") + what + ": " + cudaGetErrorString(e));
}
inline void ck_op(const char* err, const char* what) {
  if (err) throw std::runtime_error(std::string("GPU: ") + what + ": " + err + ": " + kernels::cuda_last_error_detail());
}
inline void ck_launch(const char* what) { ck(cudaGetLastError(), what); }

// The current device's stream-ordered memory pool, set (once per device) to keep what is freed
// for the next allocation instead of giving it back at each synchronisation: a KV group's
// buffers become the next group's without cudaMalloc / cudaFree (a cudaFree waits for the whole
// device; B4's groups spent ~10 ms each allocating and freeing). Nor may an allocation reuse
// memory whose free on another stream has not been reached yet by making its stream wait for
// that one (cudaMemPoolReuseAllowInternalDependencies): the analysis' default stream would then
// wait for the previous head's attention, whose kernels free their scratch on their streams.
inline cudaMemPool_t keeping_pool() {
  int dev = 0;
  ck(cudaGetDevice(&dev), "cudaGetDevice");
  cudaMemPool_t pool = nullptr;
  ck(cudaDeviceGetDefaultMemPool(&pool, dev), "cudaDeviceGetDefaultMemPool");
  uint64_t threshold = 0;
  ck(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), "memory pool");
  if (threshold != UINT64_MAX) {
    threshold = UINT64_MAX;
    ck(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), "memory pool");
  }
  int internal = 1;
  ck(cudaMemPoolGetAttribute(pool, cudaMemPoolReuseAllowInternalDependencies, &internal), "memory pool");
  if (internal != 0) {
    internal = 0;
    ck(cudaMemPoolSetAttribute(pool, cudaMemPoolReuseAllowInternalDependencies, &internal), "memory pool");
  }
  return pool;
}

// Free device memory for sizing decisions: what the driver reports plus what the pool keeps
// unused (it is the next allocation's), so a group's sizes do not depend on the group before.
inline size_t device_free_bytes() {
  size_t free_bytes = 0, total_bytes = 0;
  ck(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  cudaMemPool_t pool = keeping_pool();
  uint64_t reserved = 0, used = 0;
  ck(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved), "memory pool");
  ck(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used), "memory pool");
  return free_bytes + static_cast<size_t>(reserved > used ? reserved - used : 0);
}

// An owning device array, from the device's memory pool (keeping_pool) in the order of the
// legacy default stream: work on other streams that uses it must be ordered after its
// allocation, and that work must be through before it is freed (the analysis' attention and
// reduction streams: AttnStreams::ready and the events analyze_group_gpu waits for).
template <typename T>
class Dev {
 public:
  Dev() = default;
  explicit Dev(size_t n) { resize(n); }
  ~Dev() { release(); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  Dev(Dev&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  Dev& operator=(Dev&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_, n_ = o.n_;
      o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  // Grows (contents lost) when n exceeds the capacity; a new allocation is ordered on `stream`.
  void resize(size_t n, cudaStream_t stream = cudaStreamLegacy) {
    if (n <= n_ && p_) return;
    release();
    static thread_local int pool_device = -1;  // keeping_pool set for this thread's device
    int dev = 0;
    ck(cudaGetDevice(&dev), "cudaGetDevice");
    if (dev != pool_device) keeping_pool(), pool_device = dev;
    ck(cudaMallocAsync(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T), stream), "cudaMallocAsync");
    n_ = n;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  void zero() { ck(cudaMemsetAsync(p_, 0, n_ * sizeof(T), cudaStreamLegacy), "cudaMemsetAsync"); }
  void upload(const T* host, size_t n) {
    resize(n);
    ck(cudaMemcpy(p_, host, n * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> download(size_t n) const {
    std::vector<T> h(n);
    if (n) ck(cudaMemcpy(h.data(), p_, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }

 private:
  void release() {
    if (p_) cudaFreeAsync(p_, cudaStreamLegacy);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

// An owning pinned host array (cudaHostAlloc, portable: for any device's copies), for
// device-to-host copies that stay asynchronous: the GPU analysis' per-head results, read once
// the copies' event has passed.
template <typename T>
class HostPinned {
 public:
  HostPinned() = default;
  ~HostPinned() {
    if (p_) cudaFreeHost(p_);
  }
  HostPinned(const HostPinned&) = delete;
  HostPinned& operator=(const HostPinned&) = delete;
  // Grows (contents lost) when n exceeds the capacity.
  void resize(size_t n) {
    if (n <= n_ && p_) return;
    if (p_) cudaFreeHost(p_);
    p_ = nullptr, n_ = 0;
    ck(cudaHostAlloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T), cudaHostAllocPortable),
       "cudaHostAlloc");
    n_ = n;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  const T& operator[](size_t i) const { return p_[i]; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// The process-wide T, made on first use and never destroyed: its users (leases, kept heads'
// assemblies) may still run during static destruction.
template <typename T>
T& never_destroyed() {
  static auto* x = new T;
  return *x;
}

// Objects lent out and kept for the process's life, per key (a device): take() an idle one, or
// nullptr when none; give() it back. Pinned host memory is pooled so (its allocation and free
// are implicit synchronisations of the whole device). The pool is never destroyed: leases may
// end during static destruction.
template <typename T>
class IdlePool {
 public:
  static T* take(int key) {
    State& s = never_destroyed<State>();
    std::lock_guard<std::mutex> lock(s.mutex);
    std::vector<T*>& idle = s.idle[key];
    if (idle.empty()) return nullptr;
    T* x = idle.back();
    idle.pop_back();
    return x;
  }
  static void give(int key, T* x) {
    State& s = never_destroyed<State>();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.idle[key].push_back(x);
  }

 private:
  struct State {
    std::mutex mutex;
    std::map<int, std::vector<T*>> idle;
  };
};

// Pinned staging for host <-> device copies. From pageable memory the driver stages a copy
// itself while holding the context's lock: on B4 a KV group's 64 MB q, uploaded by the thread
// that read it, held the analysing thread's kernel launches for ~10 ms with the device idle
// (kernels/cuda/NOTES.md, nineteenth session), and a kept head's arrays came back at ~1 GB/s.
// Through these pinned chunks the host copy runs without the lock and the driver only queues
// each chunk's DMA.
//
// A lease takes a set of chunks of the current device from a process-wide pool (IdlePool) and
// gives it back when it ends, once the DMAs from its chunks are through. Sets are made on first need and
// kept for the process's life (the driver frees pinned memory at exit).
class StagingLease {
 public:
  static constexpr size_t kChunkBytes = size_t{2} << 20;
  static constexpr int kChunks = 2;
  StagingLease() {
    ck(cudaGetDevice(&device_), "cudaGetDevice");
    s_ = IdlePool<Set>::take(device_);
    if (s_) return;
    auto fresh = std::make_unique<Set>();
    for (int i = 0; i < kChunks; ++i)
      if (cudaHostAlloc(&fresh->buf[i], kChunkBytes, cudaHostAllocPortable) != cudaSuccess ||
          cudaEventCreateWithFlags(&fresh->done[i], cudaEventDisableTiming) != cudaSuccess) {
        cudaGetLastError();  // no pinned memory to be had: the caller copies from pageable memory
        for (int j = 0; j <= i; ++j) {
          if (fresh->buf[j]) cudaFreeHost(fresh->buf[j]);
          if (fresh->done[j]) cudaEventDestroy(fresh->done[j]);
        }
        return;
      }
    s_ = fresh.release();
  }
  ~StagingLease() {
    if (!s_) return;
    // Left by an exception (a failed CUDA call between a chunk's DMA and its event), a chunk may
    // still be read by a DMA: the set is not given back (leaked) rather than reused.
    if (std::uncaught_exceptions() > exceptions_) return;
    for (int i = 0; i < kChunks; ++i) cudaEventSynchronize(s_->done[i]);  // never recorded: done at once
    IdlePool<Set>::give(device_, s_);
  }
  StagingLease(const StagingLease&) = delete;
  StagingLease& operator=(const StagingLease&) = delete;
  bool ok() const { return s_ != nullptr; }
  // Sends `bytes` (at most kChunkBytes) to `dst` through the next chunk, in the order of `stream`:
  // waits for that chunk's previous DMA, lets fill(chunk) write the bytes, queues the DMA.
  template <typename Fill>
  void send(void* dst, size_t bytes, Fill&& fill, cudaStream_t stream) {
    const int i = next_;
    next_ = (next_ + 1) % kChunks;
    ck(cudaEventSynchronize(s_->done[i]), "upload staging");
    fill(static_cast<char*>(s_->buf[i]));
    ck(cudaMemcpyAsync(dst, s_->buf[i], bytes, cudaMemcpyHostToDevice, stream), "upload q/k/v");
    ck(cudaEventRecord(s_->done[i], stream), "event record");
  }
  // Copies `bytes` from device `src` to host `dst` through the chunks, in the order of `stream`
  // (the DMAs of kChunks chunks in flight while earlier chunks are copied out); returns once
  // `dst` holds them.
  void receive(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
    size_t issued = 0, done = 0;
    int first = next_;  // the chunk of the oldest copy in flight
    while (done < bytes) {
      for (; issued < bytes && issued - done < kChunks * kChunkBytes; issued += kChunkBytes) {
        const int i = next_;
        next_ = (next_ + 1) % kChunks;
        ck(cudaEventSynchronize(s_->done[i]), "download staging");
        ck(cudaMemcpyAsync(s_->buf[i], static_cast<const char*>(src) + issued, std::min(kChunkBytes, bytes - issued),
                           cudaMemcpyDeviceToHost, stream),
           "download arrays");
        ck(cudaEventRecord(s_->done[i], stream), "event record");
      }
      const size_t n = std::min(kChunkBytes, bytes - done);
      ck(cudaEventSynchronize(s_->done[first]), "download arrays");
      std::memcpy(static_cast<char*>(dst) + done, s_->buf[first], n);
      first = (first + 1) % kChunks;
      done += n;
    }
  }

 private:
  struct Set {
    void* buf[kChunks] = {};
    cudaEvent_t done[kChunks] = {};
  };
  int device_ = 0, next_ = 0;
  const int exceptions_ = std::uncaught_exceptions();  // in flight when the lease began
  Set* s_ = nullptr;
};

// `total` contiguous bytes from host `src` to device `dst` in the order of `stream`, as
// upload_view copies a contiguous view (through pinned chunks on a stream of its own).
inline void upload_bytes(void* dst, const void* src, size_t total, cudaStream_t stream) {
  if (stream != cudaStreamLegacy && stream != nullptr) {
    StagingLease lease;
    if (lease.ok()) {
      char* d = static_cast<char*>(dst);
      const auto* s = static_cast<const char*>(src);
      for (size_t b0 = 0; b0 < total; b0 += StagingLease::kChunkBytes) {
        const size_t n = std::min(StagingLease::kChunkBytes, total - b0);
        lease.send(d + b0, n, [&](char* buf) { std::memcpy(buf, s + b0, n); }, stream);
      }
      return;
    }
  }
  ck(cudaMemcpyAsync(dst, src, total, cudaMemcpyHostToDevice, stream), "upload q/k/v");
}

// A [heads, T, d] host view copied to a contiguous device fp32 tensor, in the order of `stream`
// (the host's values are copied before the call returns: its memory may then be reused). A
// contiguous view on a stream other than the legacy default one (a KV group's upload by the
// thread that read it) goes through pinned chunks (StagingLease); the call then also waits for
// the last chunks' DMAs, so such a stream should not be busy with other work. Otherwise, or
// without pinned memory, the copy is from the pageable memory directly.
inline void upload_view(const TensorView& v, Dev<float>* out, cudaStream_t stream = cudaStreamLegacy) {
  const int64_t H = v.n_heads, T = v.n_tokens, d = v.head_dim;
  out->resize(static_cast<size_t>(H * T * d), stream);
  if (v.stride_token == d && v.stride_head == T * d) {
    upload_bytes(out->get(), v.data, static_cast<size_t>(H * T * d) * 4, stream);
    return;
  }
  for (int64_t h = 0; h < H; ++h)
    ck(cudaMemcpy2DAsync(out->get() + h * T * d, static_cast<size_t>(d) * 4, v.data + h * v.stride_head,
                         static_cast<size_t>(v.stride_token) * 4, static_cast<size_t>(d) * 4, static_cast<size_t>(T),
                         cudaMemcpyHostToDevice, stream),
       "upload q/k/v");
}

// A contiguous device fp32 [H, T, d] tensor as a kernels Operand (kernels/operand.h Precision):
// its 16-bit copy (lossless for a dump of that dtype) for 16-bit dumps, else the fp32 values;
// under fast an f16 dump's fp32 values as f32 (the kernels round them to bf16; bf16 dumps
// keep their copy: the same values).
struct DevOperand {
  Dev<float> f32;
  Dev<uint16_t> h16;
  int64_t H = 0, T = 0, d = 0;
  DType dtype = DType::f32;
  void set(const TensorView& v, DType dump_dtype, cudaStream_t stream = cudaStreamLegacy) {
    H = v.n_heads, T = v.n_tokens, d = v.head_dim;
    dtype = dump_dtype;
    upload_view(v, &f32, stream);
    make16(stream);
  }
  // The same from a 16-bit dump's values as stored (DumpReader::read_raw16_into): the 16-bit
  // copy uploaded as it is (half the bytes of fp32), the fp32 one widened on the device, both
  // bit for bit what set() makes of the widened floats.
  void set16(const uint16_t* host, int64_t heads, int64_t tokens, int64_t dim, DType dump_dtype,
             cudaStream_t stream = cudaStreamLegacy) {
    H = heads, T = tokens, d = dim;
    dtype = dump_dtype;
    const auto n = static_cast<size_t>(H * T * d);
    h16.resize(n, stream);
    upload_bytes(h16.get(), host, n * sizeof(uint16_t), stream);
    f32.resize(n, stream);
    ck_op(kernels::cuda_detail::convert_from_16(h16.get(), static_cast<int64_t>(n), kernels::cuda_detail::kind_of(dtype),
                                                f32.get(), stream),
          "widen 16-bit");
  }
  void make16(cudaStream_t stream = cudaStreamLegacy) {
    if (dtype == DType::f32) return;
    h16.resize(static_cast<size_t>(H * T * d), stream);
    ck_op(kernels::cuda_detail::convert_to_16(f32.get(), H, T, d, T * d, d, kernels::cuda_detail::kind_of(dtype),
                                              h16.get(), stream),
          "convert to 16-bit");
  }
  TensorView view32(int64_t head = 0, int64_t n = -1) const {
    TensorView t;
    t.data = f32.get() + head * T * d;
    t.n_heads = n < 0 ? H : n;
    t.n_tokens = T;
    t.head_dim = d;
    t.stride_head = T * d;
    t.stride_token = d;
    return t;
  }
  kernels::Operand operand(kernels::Precision prec, int64_t head = 0, int64_t n = 1) const {
    const TensorView v = view32(head, n);
    if (dtype == DType::f32 || (prec == kernels::Precision::fast && dtype == DType::f16)) return kernels::Operand(v);
    return kernels::Operand::device16(v, h16.get() + head * T * d, dtype);
  }
  // The fp32 values typed with the dump dtype (beside fp32 conv keys: the kernels take such a
  // mix as fp32 under exact, as bf16 under fast).
  kernels::Operand typed(kernels::Precision prec, int64_t head = 0, int64_t n = 1) const {
    return kernels::Operand::of_dtype(view32(head, n), prec == kernels::Precision::exact ? dtype : DType::f32);
  }
};

// Lets `kernel` use `bytes` of dynamic shared memory on the current device (an attribute of
// each device's context; set once per kernel, device and size).
inline void allow_smem(const void* kernel, size_t bytes) {
  struct Done {
    const void* kernel;
    int device;
    size_t bytes;
  };
  thread_local std::vector<Done> done;
  int dev = 0;
  ck(cudaGetDevice(&dev), "cudaGetDevice");
  for (const Done& x : done)
    if (x.kernel == kernel && x.device == dev && x.bytes >= bytes) return;
  ck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
     "dynamic shared memory");
  done.push_back({kernel, dev, bytes});
}

// The row selector's tiers (THREADS x IPT blocks a row; rows of up to kMaxRowBlocks, block_rows.h):
// calls f(std::integral_constant<int, THREADS>, std::integral_constant<int, IPT>) with the
// smallest tier that holds c_max routable blocks.
template <typename F>
void by_row_tier(int64_t c_max, F&& f) {
  using std::integral_constant;
  if (c_max <= 512)
    f(integral_constant<int, 128>{}, integral_constant<int, 4>{});
  else if (c_max <= 2048)
    f(integral_constant<int, 256>{}, integral_constant<int, 8>{});
  else if (c_max <= 4096)
    f(integral_constant<int, 512>{}, integral_constant<int, 8>{});
  else if (c_max <= 8192)
    f(integral_constant<int, 512>{}, integral_constant<int, 16>{});
  else
    f(integral_constant<int, 1024>{}, integral_constant<int, 16>{});
}

}  // namespace moba::analysis::gpu
