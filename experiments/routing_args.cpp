#include "experiments/routing_args.h"

#include <cmath>
#include <cstdio>

#include "core/errors.h"

namespace moba::cli {

std::string format_tau(double tau) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", tau);
  return buf;
}

std::set<std::string> with_routing_flags(std::set<std::string> flags) {
  flags.insert({"tie", "gqa", "pool-precision", "kconv", "kconv-weights", "kconv-apply", "device", "precision", "tau"});
  return flags;
}

analysis::RoutingOptions parse_routing(const Args& args) {
  analysis::RoutingOptions ro;
  ro.tie = analysis::tie_from_name(args.choice("tie", "recent", {"recent", "older"}));
  ro.gqa = analysis::gqa_from_name(args.choice("gqa", "per-head", {"per-head", "shared"}));
  ro.pool_fp32 = analysis::pool_fp32_from_name(args.choice("pool-precision", "dump", {"dump", "fp32"}));
  ro.kconv_width = static_cast<int>(parse_int("--kconv", args.str("kconv", "3"), 3, 5));
  if (ro.kconv_width != 3 && ro.kconv_width != 5) throw UsageError("--kconv: width must be 3 or 5");
  ro.kconv_both = args.choice("kconv-apply", "routing", {"routing", "both"}) == "both";
  ro.kconv_weights_source = "uniform";
  ro.precision = args.choice("precision", "exact", {"exact", "fast"}) == "fast" ? kernels::Precision::fast
                                                                             : kernels::Precision::exact;
  ro.tau = args.number("tau", 0.9, -HUGE_VAL, HUGE_VAL);
  if (!(ro.tau > 0.0 && ro.tau <= 1.0))
    throw UsageError("--tau: " + args.str("tau", "") + " is out of range (0, 1] (the mass target)");
  return ro;
}

void load_routing_weights(const Args& args, int64_t head_dim, analysis::RoutingOptions& ro) {
  if (!args.has("kconv-weights")) return;
  ro.kconv_weights_source = args.str("kconv-weights", "");
  ro.kconv_weights = analysis::load_kconv_weights(ro.kconv_weights_source, ro.kconv_width, head_dim);
}

analysis::DeviceInfo parse_device(const Args& args) {
  return analysis::resolve_device(args.choice("device", "cpu", {"cpu", "cuda", "auto"}));
}

std::vector<std::pair<std::string, std::string>> routing_record(const analysis::RoutingOptions& ro) {
  return {{"tie", analysis::tie_name(ro.tie)},
          {"gqa", analysis::gqa_name(ro.gqa)},
          {"pool_precision", analysis::pool_precision_name(ro.pool_fp32)},
          {"kconv_width", std::to_string(ro.kconv_width)},
          {"kconv_weights", ro.kconv_weights_source},
          {"kconv_apply", ro.kconv_both ? "both" : "routing"},
          {"precision", kernels::precision_name(ro.precision)},
          {"tau", format_tau(ro.tau)}};
}

}  // namespace moba::cli
