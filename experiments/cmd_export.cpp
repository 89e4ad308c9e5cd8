// `moba export`: a `moba route` output's block selections in the layout another engine takes
// (FlashInfer BSR, FlexAttention BlockMask, FlashMoBA CSC, NSA block indices), written as
// safetensors so torch / numpy load it without this project. Layouts: docs/export.md.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "core/h5_input.h"
#include "core/json_writer.h"
#include "experiments/args.h"
#include "experiments/build_info.h"
#include "experiments/command.h"

namespace moba::cli {
namespace {

const char* const kUsage =
    "usage: moba export ROUTE.h5 --format FORMAT --out FILE.safetensors\n"
    "\n"
    "Writes the block selections of a `moba route` output (ROUTE.h5, `selected` int32\n"
    "[n_q_heads, n_tokens, top_k]) in another engine's sparse layout, as a safetensors file\n"
    "(little-endian tensors + a JSON header; loads with safetensors.torch.load_file or with\n"
    "json + numpy). Layouts, shapes and loading code: docs/export.md.\n"
    "\n"
    "  --format FORMAT   flashinfer-bsr  FlashInfer BlockSparseAttentionWrapper BSR per q head,\n"
    "                                    R = 1 query row x C = block_size key columns\n"
    "                    flex-blockmask  FlexAttention BlockMask (kv_num_blocks, kv_indices,\n"
    "                                    full_kv_*), Q and KV block = block_size (union of the\n"
    "                                    query block's selections) + `selected` for an exact mask_mod\n"
    "                    flashmoba-csc   FlashMoBA col_offsets / col_nnz / indices (per key block,\n"
    "                                    the ascending queries that selected it)\n"
    "                    nsa-indices     NSA block_indices [1, T, H, top_k] (-1 padded) and\n"
    "                                    block_counts; H = n_kv_heads if routed with --gqa shared,\n"
    "                                    else n_q_heads\n"
    "  --out FILE        output file (written atomically)\n";

const std::vector<std::string> kFormats = {"flashinfer-bsr", "flex-blockmask", "flashmoba-csc", "nsa-indices"};

// ---- safetensors writer -------------------------------------------------------------------

struct StTensor {
  std::string name, dtype;  // "I32", "I64"
  std::vector<int64_t> shape;
  std::string bytes;  // little-endian
};

template <typename T>
std::string le_bytes(const std::vector<T>& v) {
  std::string s(v.size() * sizeof(T), '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    const auto u = static_cast<std::make_unsigned_t<T>>(v[i]);
    for (size_t b = 0; b < sizeof(T); ++b) s[i * sizeof(T) + b] = static_cast<char>((u >> (8 * b)) & 0xff);
  }
  return s;
}

StTensor i32(const std::string& name, std::vector<int64_t> shape, const std::vector<int32_t>& v) {
  return {name, "I32", std::move(shape), le_bytes(v)};
}
StTensor i64(const std::string& name, std::vector<int64_t> shape, const std::vector<int64_t>& v) {
  return {name, "I64", std::move(shape), le_bytes(v)};
}

// 8-byte little-endian header length, the JSON header (padded with spaces to 8 bytes), data.
std::string safetensors_bytes(const std::vector<StTensor>& tensors, const std::map<std::string, std::string>& meta) {
  std::string header = "{\"__metadata__\":{";
  bool first = true;
  for (const auto& [k, v] : meta) {
    header += (first ? "" : ",") + json_string(k) + ":" + json_string(v);
    first = false;
  }
  header += "}";
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    std::string shape;
    for (const int64_t n : t.shape) shape += (shape.empty() ? "" : ",") + std::to_string(n);
    header += "," + json_string(t.name) + ":{\"dtype\":\"" + t.dtype + "\",\"shape\":[" + shape +
              "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::string out;
  const uint64_t n = header.size();
  for (int b = 0; b < 8; ++b) out += static_cast<char>((n >> (8 * b)) & 0xff);
  out += header;
  for (const auto& t : tensors) out += t.bytes;
  return out;
}

// ---- the route file -----------------------------------------------------------------------

struct Route {
  int64_t H = 0, H_kv = 0, T = 0, K = 0, B = 0, NB = 0;
  bool gqa_shared = false;
  std::vector<int32_t> selected;  // [H, T, K]
  std::map<std::string, std::string> attrs;
  int32_t at(int64_t h, int64_t t, int64_t j) const { return selected[static_cast<size_t>((h * T + t) * K + j)]; }
};

Route read_route(const std::string& path) {
  const H5Input f(path);
  Route r;
  r.attrs = f.attributes("/");
  if (!r.attrs.count("moba_route_version"))
    throw FormatError(path, "moba_route_version", "not a `moba route` output (no moba_route_version attribute; "
                                                  "make one with `moba route DUMP ... --out ROUTE.h5`)");
  if (!f.has_dataset("/selected")) throw MissingFieldError(path, "/selected", "dataset absent");
  auto num = [&](const char* name) -> int64_t {
    const auto v = f.attribute_number("/", name);
    if (!v || *v < 0 || *v != std::floor(*v)) throw MissingFieldError(path, std::string("/@") + name, "integer attribute absent");
    return static_cast<int64_t>(*v);
  };
  if (const int64_t version = num("moba_route_version"); version != 1)
    throw FormatError(path, "/@moba_route_version", std::to_string(version) + " is not a version this moba reads (1)");
  std::vector<int64_t> shape;
  r.selected = f.read_i32("/selected", &shape);
  if (shape.size() != 3) throw ShapeError(path, "/selected", "expected rank 3 [n_q_heads, n_tokens, top_k]");
  r.H = shape[0], r.T = shape[1], r.K = shape[2];
  r.B = num("block_size");
  r.H_kv = num("n_kv_heads");
  if (r.B < 1) throw ValueError(path, "/@block_size", "must be >= 1");
  if (r.H_kv < 1 || r.H % r.H_kv != 0) throw ValueError(path, "/@n_kv_heads", "does not divide n_q_heads");
  if (num("n_tokens") != r.T || num("n_q_heads") != r.H || num("top_k") != r.K)
    throw ShapeError(path, "/selected", "shape disagrees with the n_q_heads / n_tokens / top_k attributes");
  r.NB = (r.T + r.B - 1) / r.B;
  if (const int64_t n_blocks = num("n_blocks"); n_blocks != r.NB)
    throw ValueError(path, "/@n_blocks", std::to_string(n_blocks) + " disagrees with n_tokens " + std::to_string(r.T) +
                                             " and block_size " + std::to_string(r.B) + " (" + std::to_string(r.NB) +
                                             " blocks)");
  r.gqa_shared = f.attribute("/", "gqa").value_or("per-head") == "shared";
  for (int64_t h = 0; h < r.H; ++h)
    for (int64_t t = 0; t < r.T; ++t)
      for (int64_t j = 0; j < r.K; ++j) {
        const int32_t s = r.at(h, t, j);
        if (s < -1 || s > t / r.B)
          throw ValueError(path, "/selected", "head " + std::to_string(h) + " token " + std::to_string(t) +
                                                  ": block " + std::to_string(s) + " is not -1 or a causal block");
      }
  return r;
}

// The valid (non -1) blocks of query t of head h, ascending, without duplicates.
std::vector<int32_t> blocks_of(const Route& r, int64_t h, int64_t t) {
  std::vector<int32_t> b;
  for (int64_t j = 0; j < r.K; ++j)
    if (r.at(h, t, j) >= 0) b.push_back(r.at(h, t, j));
  std::sort(b.begin(), b.end());
  b.erase(std::unique(b.begin(), b.end()), b.end());
  return b;
}

int32_t to_i32(int64_t v, const std::string& what) {
  if (v > std::numeric_limits<int32_t>::max()) throw InputError("", what, "exceeds int32 (" + std::to_string(v) + ")");
  return static_cast<int32_t>(v);
}

// ---- formats ------------------------------------------------------------------------------

std::vector<StTensor> flashinfer_bsr(const Route& r, std::map<std::string, std::string>& meta) {
  const int64_t M = r.NB * r.B;  // padded so that M and N are multiples of R and C
  std::vector<int32_t> indptr(static_cast<size_t>(r.H * (M + 1)), 0), indices;
  std::vector<int64_t> head_offsets(static_cast<size_t>(r.H + 1), 0);
  for (int64_t h = 0; h < r.H; ++h) {
    const size_t base = indices.size();
    for (int64_t t = 0; t < M; ++t) {
      if (t < r.T)
        for (const int32_t b : blocks_of(r, h, t)) indices.push_back(b);
      indptr[static_cast<size_t>(h * (M + 1) + t + 1)] = to_i32(static_cast<int64_t>(indices.size() - base), "indptr");
    }
    head_offsets[static_cast<size_t>(h + 1)] = static_cast<int64_t>(indices.size());
  }
  meta["R"] = "1";
  meta["C"] = std::to_string(r.B);
  meta["M"] = std::to_string(M);
  meta["N"] = std::to_string(M);
  meta["mask_mode"] = "causal";
  return {i32("indptr", {r.H, M + 1}, indptr), i32("indices", {static_cast<int64_t>(indices.size())}, indices),
          i64("head_offsets", {r.H + 1}, head_offsets)};
}

std::vector<StTensor> flex_blockmask(const Route& r, std::map<std::string, std::string>& meta) {
  const int64_t NB = r.NB;
  std::vector<int32_t> kv_num(static_cast<size_t>(r.H * NB), 0), kv_idx(static_cast<size_t>(r.H * NB * NB), 0);
  std::vector<int32_t> full_num(kv_num.size(), 0), full_idx(kv_idx.size(), 0);
  std::vector<int64_t> count(static_cast<size_t>(NB));
  for (int64_t h = 0; h < r.H; ++h)
    for (int64_t qb = 0; qb < NB; ++qb) {
      std::fill(count.begin(), count.end(), 0);
      const int64_t t0 = qb * r.B, t1 = std::min(r.T, t0 + r.B);
      for (int64_t t = t0; t < t1; ++t)
        for (const int32_t b : blocks_of(r, h, t)) ++count[static_cast<size_t>(b)];
      const size_t row = static_cast<size_t>(h * NB + qb);
      for (int64_t b = 0; b < NB; ++b) {
        const int64_t c = count[static_cast<size_t>(b)];
        if (c == 0) continue;
        // Full: every query of the block selected it and it lies wholly in their past.
        if (c == t1 - t0 && b < qb)
          full_idx[row * NB + static_cast<size_t>(full_num[row]++)] = static_cast<int32_t>(b);
        else
          kv_idx[row * NB + static_cast<size_t>(kv_num[row]++)] = static_cast<int32_t>(b);
      }
    }
  meta["Q_BLOCK_SIZE"] = std::to_string(r.B);
  meta["KV_BLOCK_SIZE"] = std::to_string(r.B);
  meta["seq_lengths"] = std::to_string(r.T);
  return {i32("kv_num_blocks", {1, r.H, NB}, kv_num), i32("kv_indices", {1, r.H, NB, NB}, kv_idx),
          i32("full_kv_num_blocks", {1, r.H, NB}, full_num), i32("full_kv_indices", {1, r.H, NB, NB}, full_idx),
          i32("selected", {r.H, r.T, r.K}, r.selected)};
}

std::vector<StTensor> flashmoba_csc(const Route& r, std::map<std::string, std::string>& meta) {
  const int64_t NB = r.NB;
  std::vector<int32_t> nnz(static_cast<size_t>(r.H * NB), 0);
  for (int64_t h = 0; h < r.H; ++h)
    for (int64_t t = 0; t < r.T; ++t)
      for (const int32_t b : blocks_of(r, h, t)) ++nnz[static_cast<size_t>(h * NB + b)];
  std::vector<int64_t> offsets(nnz.size(), 0);
  int64_t total = 0;
  for (size_t i = 0; i < nnz.size(); ++i) offsets[i] = total, total += nnz[i];
  std::vector<int32_t> indices(static_cast<size_t>(total));
  std::vector<int64_t> fill = offsets;
  for (int64_t h = 0; h < r.H; ++h)
    for (int64_t t = 0; t < r.T; ++t)  // ascending t: each column's list comes out sorted
      for (const int32_t b : blocks_of(r, h, t)) indices[static_cast<size_t>(fill[static_cast<size_t>(h * NB + b)]++)] = to_i32(t, "query");
  meta["lg_block_n"] = std::to_string(r.B);
  meta["moba_topk"] = std::to_string(r.K);
  return {i64("col_offsets", {1, r.H, NB}, offsets), i32("col_nnz", {1, r.H, NB}, nnz),
          i32("indices", {total}, indices)};
}

std::vector<StTensor> nsa_indices(const Route& r, const std::string& path, std::map<std::string, std::string>& meta) {
  const int64_t group = r.H / r.H_kv;
  const bool per_kv = r.gqa_shared;
  if (per_kv)  // one selection per KV group: every head of a group must agree
    for (int64_t h = 0; h < r.H; ++h)
      for (int64_t t = 0; t < r.T; ++t)
        if (blocks_of(r, h, t) != blocks_of(r, h - h % group, t))
          throw ValueError(path, "/selected", "routed with --gqa shared but heads " + std::to_string(h - h % group) +
                                                  " and " + std::to_string(h) + " differ at token " + std::to_string(t));
  const int64_t Ho = per_kv ? r.H_kv : r.H;
  std::vector<int32_t> idx(static_cast<size_t>(r.T * Ho * r.K), -1), counts(static_cast<size_t>(r.T * Ho), 0);
  for (int64_t t = 0; t < r.T; ++t)
    for (int64_t ho = 0; ho < Ho; ++ho) {
      const auto b = blocks_of(r, per_kv ? ho * group : ho, t);
      counts[static_cast<size_t>(t * Ho + ho)] = static_cast<int32_t>(b.size());
      std::copy(b.begin(), b.end(), idx.begin() + (t * Ho + ho) * r.K);
    }
  meta["heads"] = per_kv ? "kv" : "q";
  meta["block_size"] = std::to_string(r.B);
  meta["kv_repeat"] = per_kv ? "1" : std::to_string(group);
  return {i32("block_indices", {1, r.T, Ho, r.K}, idx), i32("block_counts", {1, r.T, Ho}, counts)};
}

int run_export(const std::vector<std::string>& argv) {
  const Args args(argv, {"format", "out"}, {"help"});
  if (args.flag("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args.positional().size() != 1) throw UsageError("expected exactly one ROUTE.h5 argument (see --help)");
  const std::string format = args.required("format");
  if (std::find(kFormats.begin(), kFormats.end(), format) == kFormats.end())
    throw UsageError("--format '" + format + "' is not one of flashinfer-bsr, flex-blockmask, flashmoba-csc, nsa-indices");
  const std::string out_path = args.required("out");
  const std::string path = args.positional()[0];
  check_output_file("--out", out_path, {path});
  const Route r = read_route(path);

  std::map<std::string, std::string> meta;
  std::vector<StTensor> tensors;
  if (format == "flashinfer-bsr") tensors = flashinfer_bsr(r, meta);
  else if (format == "flex-blockmask") tensors = flex_blockmask(r, meta);
  else if (format == "flashmoba-csc") tensors = flashmoba_csc(r, meta);
  else tensors = nsa_indices(r, path, meta);

  meta["format"] = format;
  meta["moba_export_version"] = "1";
  meta["route_file"] = path;
  meta["block_size"] = std::to_string(r.B);
  meta["top_k"] = std::to_string(r.K);
  meta["n_tokens"] = std::to_string(r.T);
  meta["n_blocks"] = std::to_string(r.NB);
  meta["n_q_heads"] = std::to_string(r.H);
  meta["n_kv_heads"] = std::to_string(r.H_kv);
  meta["gqa"] = r.gqa_shared ? "shared" : "per-head";
  for (const char* a : {"layer", "router", "tie", "model", "dump"})
    if (r.attrs.count(a)) meta[std::string("route_") + a] = r.attrs.at(a);
  meta["git_commit"] = build_commit_label();
  write_file_atomic(out_path, safetensors_bytes(tensors, meta));
  std::printf("exported %s (%lld q heads x %lld tokens, B %lld, k %lld) as %s -> %s\n", path.c_str(),
              static_cast<long long>(r.H), static_cast<long long>(r.T), static_cast<long long>(r.B),
              static_cast<long long>(r.K), format.c_str(), out_path.c_str());
  return 0;
}

const Command kExport("export", "a route's selections as FlashInfer / Flex / FlashMoBA / NSA tensors", run_export);

}  // namespace
}  // namespace moba::cli
