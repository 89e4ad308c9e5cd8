// Format-independent parts of dump reading: open_dump's content sniffing, the schema v1
// checks both readers share, and the small conversions they use.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "core/errors.h"
#include "core/json_writer.h"
#include "core/io/reader_common.h"

namespace moba {

const char* tensor_kind_name(TensorKind k) {
  switch (k) {
    case TensorKind::q: return "q";
    case TensorKind::k: return "k";
    case TensorKind::v: return "v";
    case TensorKind::o: return "o";
  }
  return "?";
}

const LayerInfo& DumpInfo::layer(int index) const {
  for (const auto& l : layers)
    if (l.index == index) return l;
  std::string have;
  for (const auto& l : layers) have += (have.empty() ? "" : ", ") + std::to_string(l.index);
  throw MissingFieldError(path, "/layers/" + std::to_string(index),
                          "no such layer (the dump has layers " + have + ")");
}

bool uniform_layers(const DumpInfo& info) {
  for (const auto& l : info.layers) {
    const auto& f = info.layers.front();
    if (l.n_q_heads != f.n_q_heads || l.n_kv_heads != f.n_kv_heads || l.head_dim != f.head_dim || l.dtype != f.dtype)
      return false;
  }
  return true;
}

void add_dump_info_json(const DumpInfo& info, JsonObject& o) {
  std::vector<std::string> indices, layers;
  for (const LayerInfo& l : info.layers) {
    indices.push_back(std::to_string(l.index));
    layers.push_back(JsonObject()
                         .add_integer("index", l.index)
                         .add_integer("n_q_heads", l.n_q_heads)
                         .add_integer("n_kv_heads", l.n_kv_heads)
                         .add_integer("n_tokens", l.n_tokens)
                         .add_integer("head_dim", l.head_dim)
                         .add_string("dtype", dtype_name(l.dtype))
                         .add_bool("has_o", l.has_o)
                         .add_bool("has_lse", l.has_lse)
                         .add_bool("has_planted", l.has_planted)
                         .str());
  }
  JsonObject attributes;
  for (const auto& kv : info.attributes) attributes.add_string(kv.first, kv.second);
  o.add_string("file", info.path)
      .add_string("format", info.format)
      .add_integer("version", info.version)
      .add_string("model", info.model)
      .add_string("source", info.source)
      .add_bool("rope_applied", info.rope_applied)
      .add_bool("has_token_ids", info.has_token_ids)
      .add_integer("n_layers", static_cast<int64_t>(info.layers.size()))
      .add_raw("layer_indices", json_array(indices));
  if (info.layers.empty()) return;
  const LayerInfo& f = info.layers.front();
  o.add_integer("n_tokens", f.n_tokens);
  if (uniform_layers(info)) {
    o.add_integer("n_q_heads", f.n_q_heads)
        .add_integer("n_kv_heads", f.n_kv_heads)
        .add_integer("head_dim", f.head_dim)
        .add_string("dtype", dtype_name(f.dtype));
  }
  o.add_raw("layers", json_array(layers)).add_raw("attributes", attributes.str());
}

std::string layout_warning(const DumpInfo& info) {
  for (const LayerInfo& l : info.layers)
    if (l.n_q_heads > l.n_tokens)
      return "/layers/" + std::to_string(l.index) + "/q: " + std::to_string(l.n_q_heads) + " heads x " +
             std::to_string(l.n_tokens) + " tokens: more heads than tokens, as when a token-major [T, H, D] "
             "tensor is read as [H, T, D]; if so, mark it with the dataset attribute layout = \"thd\" "
             "(docs/dump-format.md)";
  return "";
}

Tensor3 DumpReader::read(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads) {
  Tensor3 out;
  read_into(layer, kind, head_begin, n_heads, &out);
  return out;
}

Tensor3 DumpReader::read(int layer, TensorKind kind) {
  const LayerInfo& l = info().layer(layer);
  return read(layer, kind, 0, io::heads_of(l, kind));
}

// Sniffs the first bytes: HDF5 signature (at 0, or after a user block at 512, 1024, ...),
// zip magic (npz), or a safetensors header (8-byte length then '{').
std::unique_ptr<DumpReader> open_dump(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw FileNotFoundError(path, "", std::string("cannot open: ") + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw FileNotFoundError(path, "", "is a directory, not a dump file");
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw FileNotFoundError(path, "", std::string("cannot open: ") + std::strerror(errno));
  unsigned char head[9] = {0};
  const size_t got = std::fread(head, 1, sizeof head, f);
  static const unsigned char hdf5_sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  bool hdf5 = got >= 8 && std::memcmp(head, hdf5_sig, 8) == 0;
  for (long off = 512; !hdf5 && off + 8 <= static_cast<long>(st.st_size); off *= 2) {
    unsigned char sig[8];
    if (std::fseek(f, off, SEEK_SET) != 0 || std::fread(sig, 1, 8, f) != 8) break;
    hdf5 = std::memcmp(sig, hdf5_sig, 8) == 0;
  }
  std::fclose(f);
  if (got == 0) throw FormatError(path, "", "empty file: not a dump (HDF5 or safetensors)");
  if (hdf5) return io::open_hdf5_dump(path);
  if (got >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4)
    throw FormatError(path, "", "npz dumps are not supported yet; convert to HDF5 or safetensors");
  if (got == 9 && head[8] == '{') return io::open_safetensors_dump(path);
  throw FormatError(path, "",
                    "not a dump: neither HDF5 (no signature) nor safetensors (no JSON header); npz is not supported");
}

namespace io {

static std::string dims_text(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

static void check_rank(const std::string& file, const TensorDesc& t, size_t rank, const char* expected) {
  if (t.dims.size() != rank)
    throw ShapeError(file, t.name, "rank " + std::to_string(t.dims.size()) + " (shape " + dims_text(t.dims) +
                                       "), expected " + std::to_string(rank) + " " + expected);
  for (int64_t d : t.dims)
    if (d <= 0) throw ShapeError(file, t.name, "empty dimension in shape " + dims_text(t.dims));
}

LayerInfo check_layer(const std::string& file, int index, const TensorDesc& q, const TensorDesc& k,
                      const TensorDesc& v, const TensorDesc& o, const TensorDesc& lse,
                      const TensorDesc& planted) {
  for (const TensorDesc* t : {&q, &k, &v})
    if (!t->present) throw MissingFieldError(file, t->name, "required tensor is missing");
  check_rank(file, q, 3, "[n_q_heads, n_tokens, head_dim]");
  check_rank(file, k, 3, "[n_kv_heads, n_tokens, head_dim]");
  check_rank(file, v, 3, "[n_kv_heads, n_tokens, head_dim]");
  for (const TensorDesc* t : {&k, &v}) {
    if (t->dims[1] != q.dims[1])
      throw ShapeError(file, t->name, "n_tokens " + std::to_string(t->dims[1]) + " differs from " + q.name +
                                          "'s " + std::to_string(q.dims[1]));
    if (t->dims[2] != q.dims[2])
      throw ShapeError(file, t->name, "head_dim " + std::to_string(t->dims[2]) + " differs from " + q.name +
                                          "'s " + std::to_string(q.dims[2]));
  }
  if (v.dims[0] != k.dims[0])
    throw ShapeError(file, v.name, "n_kv_heads " + std::to_string(v.dims[0]) + " differs from " + k.name +
                                       "'s " + std::to_string(k.dims[0]));
  if (q.dims[0] % k.dims[0] != 0)
    throw ShapeError(file, q.name, "n_q_heads " + std::to_string(q.dims[0]) + " is not a multiple of n_kv_heads " +
                                       std::to_string(k.dims[0]) + " (" + k.name + ")");
  for (const TensorDesc* t : {&k, &v})
    if (t->dtype != q.dtype)
      throw DTypeError(file, t->name, std::string("element type ") + dtype_name(t->dtype) + " differs from " +
                                          q.name + "'s " + dtype_name(q.dtype));
  LayerInfo info;
  info.index = index;
  info.n_q_heads = q.dims[0];
  info.n_kv_heads = k.dims[0];
  info.n_tokens = q.dims[1];
  info.head_dim = q.dims[2];
  info.dtype = q.dtype;
  if (o.present) {
    check_rank(file, o, 3, "[n_q_heads, n_tokens, head_dim]");
    if (o.dims != q.dims)
      throw ShapeError(file, o.name, "shape " + dims_text(o.dims) + " differs from " + q.name + "'s " + dims_text(q.dims));
    info.has_o = true;
  }
  const std::vector<int64_t> ht = {q.dims[0], q.dims[1]};
  for (const TensorDesc* t : {&lse, &planted}) {
    if (!t->present) continue;
    check_rank(file, *t, 2, "[n_q_heads, n_tokens]");
    if (t->dims != ht)
      throw ShapeError(file, t->name, "shape " + dims_text(t->dims) + ", expected [n_q_heads, n_tokens] = " + dims_text(ht));
  }
  info.has_lse = lse.present;
  info.has_planted = planted.present;
  return info;
}

void check_dump(DumpInfo* info, int64_t token_ids_len) {
  if (info->layers.empty()) throw MissingFieldError(info->path, "/layers", "the dump has no layers");
  std::sort(info->layers.begin(), info->layers.end(),
            [](const LayerInfo& a, const LayerInfo& b) { return a.index < b.index; });
  const LayerInfo& first = info->layers.front();
  for (const auto& l : info->layers) {
    if (l.n_tokens != first.n_tokens)
      throw ShapeError(info->path, "/layers/" + std::to_string(l.index),
                       "n_tokens " + std::to_string(l.n_tokens) + " differs from layer " +
                           std::to_string(first.index) + "'s " + std::to_string(first.n_tokens) +
                           " (one sequence per file)");
  }
  if (token_ids_len >= 0 && token_ids_len != first.n_tokens)
    throw ShapeError(info->path, "token_ids",
                     "length " + std::to_string(token_ids_len) + " differs from n_tokens " + std::to_string(first.n_tokens));
}

void check_finite(const std::string& file, const std::string& dataset, const float* rows, int64_t n_rows,
                  int64_t head_dim, int64_t head, int64_t token_begin) {
  const int64_t n = n_rows * head_dim;
  for (int64_t i = 0; i < n; ++i) {
    if (std::fabs(rows[i]) < kMaxAbsValue) continue;  // false for NaN too
    const int64_t token = token_begin + i / head_dim, dim = i % head_dim;
    const std::string at = " at head " + std::to_string(head) + ", token " + std::to_string(token) + ", dim " +
                           std::to_string(dim);
    if (!std::isfinite(rows[i])) throw ValueError(file, dataset, std::string(std::isnan(rows[i]) ? "NaN" : "Inf") + at);
    throw ValueError(file, dataset, "value " + format_shortest(rows[i]) + at + ": beyond +-2^27 (1.3e8), where "
                                    "attention scores and their moments leave float32's range");
  }
}

void check_head_range(const std::string& file, const std::string& dataset, int64_t head_begin, int64_t n_heads,
                      int64_t total_heads) {
  if (head_begin < 0 || n_heads < 0 || head_begin > total_heads || n_heads > total_heads - head_begin) {
    std::ostringstream s;
    s << file << ": " << dataset << ": heads [" << head_begin << ", " << head_begin + n_heads
      << ") are out of range: the tensor has " << total_heads << " heads";
    throw UsageError(s.str());
  }
}

int64_t heads_of(const LayerInfo& layer, TensorKind kind) {
  return (kind == TensorKind::k || kind == TensorKind::v) ? layer.n_kv_heads : layer.n_q_heads;
}

void widen(DType t, const void* src, int64_t n, float* dst) {
  const unsigned char* p = static_cast<const unsigned char*>(src);
  switch (t) {
    case DType::f32:
      std::memcpy(dst, p, static_cast<size_t>(n) * 4);
      return;
    case DType::f16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return;
    case DType::bf16:  // bf16_to_f32 inline: the high half of the float's bits (vectorises)
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        const uint32_t u = static_cast<uint32_t>(h) << 16;
        std::memcpy(dst + i, &u, 4);
      }
      return;
  }
}

bool any_out_of_range16(DType t, const uint16_t* p, int64_t n) {
  // bfloat16: |x| >= 2^27 (biased exponent >= 127 + 27), NaN and Inf above it; float16: its
  // largest finite value is 65504, so only NaN and Inf (exponent bits all ones).
  const uint16_t limit = t == DType::bf16 ? uint16_t((127 + 27) << 7) : uint16_t(0x7c00);
  unsigned any = 0;
  for (int64_t i = 0; i < n; ++i) any |= (p[i] & 0x7fff) >= limit;
  return any != 0;
}

int64_t parse_int_field(const std::string& file, const std::string& field, const std::string& text) {
  if (text == "true" || text == "True") return 1;
  if (text == "false" || text == "False") return 0;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw FormatError(file, field, "'" + text + "' is not an integer");
  return v;
}

int parse_layer_name(const std::string& s) {
  if (s.empty() || s.size() > 6) return -1;
  if (s.size() > 1 && s[0] == '0') return -1;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace io
}  // namespace moba
