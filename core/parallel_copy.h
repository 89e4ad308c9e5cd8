#pragma once
// memcpy with a few threads for large copies (host memory bandwidth: one thread copies at
// ~5-8 GB/s on the GPU machines; a KV group's upload copies ~100 MB into pinned chunks on the
// critical path of the GPU analysis).
#include <cstddef>

namespace moba {

// Copies `bytes` from src to dst (not overlapping), as memcpy; above ~1 MB in kCopyThreads
// pieces side by side (OpenMP), where the caller is not itself inside a parallel region.
void parallel_copy(void* dst, const void* src, size_t bytes);

}  // namespace moba
