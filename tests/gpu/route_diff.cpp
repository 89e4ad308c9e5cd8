// moba_route_diff REF.h5 GOT.h5 [MAX_OUT_REL MAX_LSE]: compares two `moba route --with-output`
// files of the same dump and layer (e.g. --device cpu vs --device cuda; tests/gpu/
// precision_check.sh). Prints one line: rows whose selections differ (as sets: near-ties of
// the gate scores), and over the other rows the max row-relative output error
// ||o_got - o_ref|| / ||o_ref|| (the metric of tests/tolerances.h exact_row), the max
// absolute output error, the max |lse_got - lse_ref| (equal infinities count as 0). With the
// two bounds, exits 1 when either is exceeded (or a row's values are not finite where the
// reference's are), else 0; 2 on bad input.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include "core/h5_input.h"

int main(int argc, char** argv) {
  if (argc != 3 && argc != 5) {
    std::fprintf(stderr, "usage: moba_route_diff REF.h5 GOT.h5 [MAX_OUT_REL MAX_LSE]\n");
    return 2;
  }
  try {
    const moba::H5Input ref(argv[1]), got(argv[2]);
    std::vector<int64_t> so, sl, ss, so2, ss2;
    const auto o_ref = ref.read_f32("/output", &so), o_got = got.read_f32("/output", &so2);
    const auto l_ref = ref.read_f32("/lse", &sl), l_got = got.read_f32("/lse");
    const auto s_ref = ref.read_i32("/selected", &ss), s_got = got.read_i32("/selected", &ss2);
    if (so != so2 || ss != ss2 || so.size() != 3 || ss.size() != 3 || l_got.size() != l_ref.size()) {
      std::fprintf(stderr, "moba_route_diff: the files' shapes differ\n");
      return 2;
    }
    const int64_t rows = so[0] * so[1], d = so[2], k = ss[2];
    int64_t differing = 0, bad = 0;
    double out_rel = 0, out_abs = 0, lse_abs = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const std::set<int32_t> a(s_ref.begin() + r * k, s_ref.begin() + (r + 1) * k);
      const std::set<int32_t> b(s_got.begin() + r * k, s_got.begin() + (r + 1) * k);
      if (a != b) {
        ++differing;
        continue;
      }
      double e = 0, n = 0;
      for (int64_t i = 0; i < d; ++i) {
        const double x = double(o_got[r * d + i]) - o_ref[r * d + i];
        if (!std::isfinite(x) && std::isfinite(o_ref[r * d + i])) ++bad;
        e += x * x;
        n += double(o_ref[r * d + i]) * o_ref[r * d + i];
        out_abs = std::max(out_abs, std::fabs(x));
      }
      out_rel = std::max(out_rel, n > 0 ? std::sqrt(e / n) : (e > 0 ? INFINITY : 0.0));
      const float lr = l_ref[r], lg = l_got[r];
      if (lr == lg) continue;  // equal, or the same infinity
      if (!std::isfinite(lg) && std::isfinite(lr)) ++bad;
      lse_abs = std::max(lse_abs, std::fabs(double(lg) - lr));
    }
    std::printf("rows %lld, selection differs %lld, output row-rel %.3g, output abs %.3g, lse abs %.3g%s",
                static_cast<long long>(rows), static_cast<long long>(differing), out_rel, out_abs, lse_abs,
                bad ? ", NON-FINITE values" : "");
    if (argc == 5) {
      const double max_rel = std::stod(argv[3]), max_lse = std::stod(argv[4]);
      const bool ok = bad == 0 && out_rel <= max_rel && lse_abs <= max_lse;
      std::printf("  [%s: row-rel <= %g, lse <= %g]\n", ok ? "ok" : "FAIL", max_rel, max_lse);
      return ok ? 0 : 1;
    }
    std::printf("\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moba_route_diff: %s\n", e.what());
    return 2;
  }
}
