#pragma once
// The routing options `moba route` and `moba analyze` share (tie rule, GQA policy, pooling
// precision, the moba-kconv conv, the device): one parser, one record of what was used.
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "analysis/backend.h"
#include "analysis/router.h"
#include "experiments/args.h"

namespace moba::cli {

// The command's own value flags plus the routing ones parse_routing and parse_device read.
std::set<std::string> with_routing_flags(std::set<std::string> flags);

// --tie, --gqa, --pool-precision, --kconv (3 | 5), --kconv-apply, --precision exact|fast
// (default exact: the CUDA kernels compute in the dump's precision), --tau X in (0, 1] (the
// mass target of moba-threshold / oracle-topp, default 0.9). Throws UsageError.
// The kconv weights need the dump's head_dim: see load_routing_weights.
analysis::RoutingOptions parse_routing(const Args& args);

// --kconv-weights FILE, read for head_dim (or "uniform" when the flag is absent).
void load_routing_weights(const Args& args, int64_t head_dim, analysis::RoutingOptions& ro);

// --device cpu | cuda | auto (default cpu), resolved against this machine.
analysis::DeviceInfo parse_device(const Args& args);

// What was used, as (name, value) text pairs in a fixed order: tie, gqa, pool_precision,
// kconv_width, kconv_weights, kconv_apply, precision, tau. Recorded in run.json and as route.h5
// attributes (route writes tau only for the variable-budget routers).
// tau as text, round-trip exact ("%.17g").
std::string format_tau(double tau);

std::vector<std::pair<std::string, std::string>> routing_record(const analysis::RoutingOptions& ro);

}  // namespace moba::cli
