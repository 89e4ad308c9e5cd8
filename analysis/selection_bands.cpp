// Nested-budget bands merged into whole selections (analysis/selection_bands.h).
#include "analysis/selection_bands.h"

#include <algorithm>

namespace moba::analysis {

void merge_selection_bands(const std::vector<std::vector<int32_t>>& bands, const std::vector<int>& widths,
                           int64_t n_rows, int k, int32_t* out) {
  // Threads for large merges only: a team started from the GPU analysis' own thread, beside the
  // summary threads' teams, cost more than a 32K-row merge of a few blocks a row (B4: 0.07 s of
  // downloads became 0.22 s); B6's kept head (131K rows, up to 4096 blocks): 0.54 -> 0.38 s.
#pragma omp parallel for schedule(static) if (n_rows * static_cast<int64_t>(k) >= (int64_t{1} << 22))
  for (int64_t r = 0; r < n_rows; ++r) {
    int32_t* row = out + r * k;
    int n = 0;
    for (size_t x = 0; x < widths.size() && x < bands.size(); ++x)
      for (int e = 0; e < widths[x]; ++e) {
        const int32_t b = bands[x][static_cast<size_t>(r * widths[x] + e)];
        if (b >= 0 && n < k) row[n++] = b;
      }
    std::sort(row, row + n);  // routable blocks < the current block: it sorts last
    std::fill(row + n, row + k, -1);
  }
}

}  // namespace moba::analysis
