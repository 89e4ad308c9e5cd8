// `moba convert DUMP --out OUT.h5 [--dtype keep|f32|f16|bf16] [--quiet]`
//
// Re-writes any readable dump (HDF5 schema v1 in any accepted encoding and layout, or
// safetensors) as canonical HDF5 schema v1: head-major, chunked per head, q/k/v/o in the
// chosen dtype (default: the source's), plus planted and token_ids. Root metadata is kept;
// extra root attributes are carried over as text. Values are read (and validated) one
// tensor at a time, so memory is one layer's largest tensor. The output appears only when
// complete: on any error nothing is left at OUT.
#include <cstdio>
#include <string>
#include <vector>

#include "core/dump.h"
#include "core/errors.h"
#include "core/progress.h"
#include "experiments/args.h"
#include "experiments/command.h"

namespace moba::cli {
namespace {

const char* kUsage =
    "usage: moba convert DUMP --out OUT.h5 [--dtype keep|f32|f16|bf16] [--quiet]\n"
    "  Re-writes a dump (HDF5 or safetensors) as canonical HDF5 schema v1.\n"
    "  --dtype   element type of q/k/v/o in OUT (default keep: the source's)\n";

int run_convert(const std::vector<std::string>& argv) {
  for (const auto& a : argv)
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  const Args args(argv, {"out", "dtype"}, {"quiet"});
  if (args.positional().size() != 1) throw UsageError(std::string("expected one DUMP argument\n") + kUsage);
  const std::string out_path = args.required("out");
  const std::string dtype_arg = args.choice("dtype", "keep", {"keep", "f32", "f16", "bf16", "float32", "float16", "bfloat16"});
  check_output_file("--out", out_path, {args.positional()[0]});

  auto reader = open_dump(args.positional()[0]);
  const DumpInfo& info = reader->info();
  DumpMeta meta;
  meta.model = info.model;
  meta.source = info.source;
  meta.rope_applied = info.rope_applied;
  meta.string_attributes = info.attributes;

  int64_t total = 0;
  for (const auto& l : info.layers) total += l.has_o ? 4 : 3;
  Progress progress("convert", total, args.flag("quiet"));
  DumpWriter writer(out_path, meta);
  for (const auto& l : info.layers) {
    const DType stored = dtype_arg == "keep" ? l.dtype : dtype_from_name(dtype_arg);
    for (TensorKind kind : {TensorKind::q, TensorKind::k, TensorKind::v, TensorKind::o}) {
      if (kind == TensorKind::o && !l.has_o) continue;
      writer.write_tensor(l.index, kind, reader->read(l.index, kind), stored);
      progress.advance();
    }
    if (l.has_planted) writer.write_planted(l.index, l.n_q_heads, l.n_tokens, reader->read_planted(l.index));
  }
  if (info.has_token_ids) writer.write_token_ids(reader->read_token_ids());
  writer.commit();
  progress.finish();
  return 0;
}

const Command kConvert("convert", "re-write a dump (HDF5/safetensors) as canonical HDF5 schema v1", run_convert);

}  // namespace
}  // namespace moba::cli
