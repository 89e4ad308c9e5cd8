#pragma once
// A configuration's whole selection from its nested-budget bands. The GPU analysis holds each
// (configuration, router)'s band only (the blocks its k adds to the next smaller k of its block
// size, analysis/gpu/analyze_gpu.cu); a kept selection is the union of the bands up to its own.
#include <cstdint>
#include <vector>

namespace moba::analysis {

// Rows [0, n_rows) of `out` ([n_rows, k], the host path's layout: blocks ascending, then -1):
// per row the valid (>= 0) entries of bands[0], bands[1], ..., bands[widths.size() - 1] (band x
// is [n_rows, widths[x]]; later bands are not read), at most k of them, sorted. Rows are independent (OpenMP for large merges).
void merge_selection_bands(const std::vector<std::vector<int32_t>>& bands, const std::vector<int>& widths,
                           int64_t n_rows, int k, int32_t* out);

}  // namespace moba::analysis
