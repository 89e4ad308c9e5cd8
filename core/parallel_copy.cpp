// parallel_copy (core/parallel_copy.h).
#include "core/parallel_copy.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

namespace moba {

namespace {
constexpr size_t kSplitBytes = size_t{1} << 20;  // below this, one memcpy
constexpr int kCopyThreads = 4;                  // enough to saturate a socket's copy bandwidth
}  // namespace

void parallel_copy(void* dst, const void* src, size_t bytes) {
  const int threads = std::min(kCopyThreads, omp_get_max_threads());
  if (bytes < kSplitBytes || threads < 2 || omp_in_parallel()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  // Pieces of whole 64-byte lines, the last one taking the rest.
  const size_t piece = (bytes / static_cast<size_t>(threads) + 63) / 64 * 64;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int i = 0; i < threads; ++i) {
    const size_t b0 = std::min(bytes, piece * static_cast<size_t>(i)), b1 = std::min(bytes, b0 + piece);
    if (b1 > b0) std::memcpy(static_cast<char*>(dst) + b0, static_cast<const char*>(src) + b0, b1 - b0);
  }
}

}  // namespace moba
