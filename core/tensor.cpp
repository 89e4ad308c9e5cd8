#include "core/tensor.h"

#include <cstdlib>
#include <new>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace moba {

namespace {
constexpr size_t kLargeBytes = size_t(4) << 20;
constexpr size_t kHugePage = size_t(2) << 20;
}  // namespace

void* allocate_large(size_t bytes) {
  if (bytes < kLargeBytes) return ::operator new(bytes);
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = std::aligned_alloc(kHugePage, rounded);
  if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  madvise(p, rounded, MADV_HUGEPAGE);  // a hint: without transparent huge pages, nothing changes
#endif
  return p;
}

void free_large(void* p, size_t bytes) noexcept {
  if (bytes < kLargeBytes)
    ::operator delete(p);
  else
    std::free(p);
}

}  // namespace moba
