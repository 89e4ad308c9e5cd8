// libFuzzer target: the command-line parser (experiments/args.h) and the routing options
// route and analyze share (experiments/routing_args.h). The bytes are NUL-separated argv
// entries. Bad flags and values must end in UsageError.
#include <cstdint>
#include <string>
#include <vector>

#include "core/errors.h"
#include "experiments/args.h"
#include "experiments/routing_args.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> argv(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) argv.emplace_back();
    else argv.back() += static_cast<char>(data[i]);
  }
  try {
    const moba::cli::Args args(argv, moba::cli::with_routing_flags({"block-sizes", "top-k", "sparsity", "out", "layer"}),
                               {"quiet", "json"});
    (void)args.int_list("block-sizes", {16}, 1, INT32_MAX);
    (void)args.number_list("sparsity", {}, 0.0, 0.999999);
    (void)args.integer("layer", 0, 0, INT32_MAX);
    (void)args.str_list("top-k", {});
    (void)moba::cli::parse_routing(args);
  } catch (const moba::UsageError&) {
  }
  return 0;
}
