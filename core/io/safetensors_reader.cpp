// safetensors reader (https://github.com/huggingface/safetensors, "Format"): 8-byte
// little-endian header length N, N bytes of JSON header, then the byte buffer. The header
// maps tensor names to {dtype, shape, data_offsets: [begin, end)} relative to the buffer,
// plus an optional "__metadata__" string->string map.
//
// The file is memory-mapped read-only; reading one head copies (and widens) only that
// head's bytes, so only those pages become resident. Everything in the header is checked
// before any value is read: length within the file, JSON, dtype, shape, offsets in range,
// byte size == prod(shape) x dtype size, no two tensors overlapping.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "core/errors.h"
#include "core/io/json_mini.h"
#include "core/io/reader_common.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian; this reader assumes a little-endian host");

namespace moba::io {
namespace {

constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;  // the reference implementation's limit

struct Entry {
  std::string name;
  std::string dtype_text;      // as in the header: "F32", "BF16", ...
  int elem_size = 0;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0; // byte range within the data buffer
};

// Element sizes of the dtypes safetensors defines; 0 for an unknown name.
int safetensors_dtype_size(const std::string& d) {
  static const std::map<std::string, int> sizes = {
      {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2},
      {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"F64", 8}, {"I64", 8}, {"U64", 8}};
  auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

std::string shape_text(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

// The open file and its read-only mapping; released even when the reader's constructor throws.
struct Mapping {
  int fd = -1;
  void* addr = MAP_FAILED;
  size_t size = 0;
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr != MAP_FAILED) munmap(addr, size);
    if (fd >= 0) close(fd);
  }
};

class SafetensorsDumpReader final : public DumpReader {
 public:
  explicit SafetensorsDumpReader(const std::string& path);
  const DumpInfo& info() const override { return info_; }
  void read_into(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads, Tensor3* out) override;
  using DumpReader::read;
  std::vector<int32_t> read_token_ids() override;
  std::vector<int32_t> read_planted(int layer) override;

 private:
  void parse_header(uint64_t header_len);
  Entry parse_entry(const std::string& name, const json::Value& v, uint64_t data_size);
  TensorDesc desc_of(const std::string& name, bool floating) const;
  std::vector<int32_t> read_ints(const Entry& e, int64_t lo, int64_t hi) const;
  const unsigned char* data_of(const Entry& e) const { return data_ + e.begin; }

  DumpInfo info_;
  Mapping map_;
  const unsigned char* data_ = nullptr;  // start of the byte buffer
  std::map<std::string, Entry> entries_;
};

SafetensorsDumpReader::SafetensorsDumpReader(const std::string& path) {
  info_.path = path;
  info_.format = "safetensors";
  map_.fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (map_.fd < 0) throw FileNotFoundError(path, "", std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (fstat(map_.fd, &st) != 0) throw FileNotFoundError(path, "", std::string("cannot stat: ") + std::strerror(errno));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) throw FormatError(path, "header", "file of " + std::to_string(size) + " bytes is too short for a safetensors header");
  map_.size = static_cast<size_t>(size);
  map_.addr = mmap(nullptr, map_.size, PROT_READ, MAP_PRIVATE, map_.fd, 0);
  if (map_.addr == MAP_FAILED) throw FormatError(path, "", std::string("cannot map the file: ") + std::strerror(errno));
  const unsigned char* bytes = static_cast<const unsigned char*>(map_.addr);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8)
    throw FormatError(path, "header", "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                                          std::to_string(size) + " bytes)");
  if (header_len > kMaxHeaderBytes)
    throw FormatError(path, "header", "header length " + std::to_string(header_len) + " exceeds the 100 MiB limit");
  data_ = bytes + 8 + header_len;
  parse_header(header_len);
}

Entry SafetensorsDumpReader::parse_entry(const std::string& name, const json::Value& v, uint64_t data_size) {
  const std::string& path = info_.path;
  Entry e;
  e.name = name;
  const json::Value* dtype = v.find("dtype");
  const json::Value* shape = v.find("shape");
  const json::Value* offsets = v.find("data_offsets");
  if (v.type != json::Value::Type::object || !dtype || !shape || !offsets)
    throw FormatError(path, name, "header entry needs dtype, shape and data_offsets");
  if (dtype->type != json::Value::Type::string) throw FormatError(path, name, "dtype is not a string");
  e.dtype_text = dtype->text;
  e.elem_size = safetensors_dtype_size(e.dtype_text);
  if (e.elem_size == 0) throw DTypeError(path, name, "unknown dtype '" + e.dtype_text + "'");
  if (shape->type != json::Value::Type::array) throw FormatError(path, name, "shape is not an array");
  uint64_t n_elems = 1;
  bool overflow = false;
  for (const auto& d : shape->items) {
    uint64_t x;
    if (!d.as_u64(&x) || x > uint64_t(INT64_MAX)) throw FormatError(path, name, "shape entries must be non-negative integers");
    e.shape.push_back(static_cast<int64_t>(x));
    if (x != 0 && n_elems > UINT64_MAX / x) overflow = true;
    n_elems *= x;
  }
  if (offsets->type != json::Value::Type::array || offsets->items.size() != 2 || !offsets->items[0].as_u64(&e.begin) ||
      !offsets->items[1].as_u64(&e.end))
    throw FormatError(path, name, "data_offsets must be two non-negative integers [begin, end]");
  if (e.begin > e.end || e.end > data_size)
    throw FormatError(path, name, "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                                      ") are out of range: the data section holds " + std::to_string(data_size) + " bytes");
  const uint64_t esz = static_cast<uint64_t>(e.elem_size);
  if (overflow || (n_elems != 0 && n_elems > UINT64_MAX / esz) || n_elems * esz != e.end - e.begin)
    throw FormatError(path, name, "byte size " + std::to_string(e.end - e.begin) + " does not match shape " +
                                      shape_text(e.shape) + " x " + e.dtype_text + " (" +
                                      (overflow ? std::string("overflow") : std::to_string(n_elems * esz)) + " bytes)");
  return e;
}

void SafetensorsDumpReader::parse_header(uint64_t header_len) {
  const std::string& path = info_.path;
  const std::string text(static_cast<const char*>(map_.addr) + 8, static_cast<size_t>(header_len));
  json::Value root;
  std::string err;
  if (!json::parse(text, &root, &err)) throw FormatError(path, "header", "invalid JSON: " + err);
  if (root.type != json::Value::Type::object) throw FormatError(path, "header", "is not a JSON object");
  const uint64_t data_size = map_.size - 8 - header_len;

  std::map<std::string, std::string> meta;
  for (const auto& m : root.members) {
    if (m.first == "__metadata__") {
      if (m.second.type != json::Value::Type::object) throw FormatError(path, "__metadata__", "is not an object");
      for (const auto& kv : m.second.members) {
        if (kv.second.type != json::Value::Type::string)
          throw FormatError(path, "__metadata__." + kv.first, "metadata values must be strings");
        meta[kv.first] = kv.second.text;
      }
      continue;
    }
    entries_[m.first] = parse_entry(m.first, m.second, data_size);
  }

  // No two non-empty byte ranges may overlap.
  std::vector<const Entry*> by_begin;
  for (const auto& kv : entries_)
    if (kv.second.end > kv.second.begin) by_begin.push_back(&kv.second);
  std::sort(by_begin.begin(), by_begin.end(), [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_begin.size(); ++i) {
    const Entry& a = *by_begin[i - 1];
    const Entry& b = *by_begin[i];
    if (b.begin < a.end)
      throw FormatError(path, b.name, "data_offsets [" + std::to_string(b.begin) + ", " + std::to_string(b.end) +
                                          ") overlap tensor " + a.name + " [" + std::to_string(a.begin) + ", " +
                                          std::to_string(a.end) + ")");
  }

  auto meta_field = [&](const char* key, bool required) -> std::string {
    auto it = meta.find(key);
    if (it != meta.end()) return it->second;
    if (required) throw MissingFieldError(path, std::string("__metadata__.") + key, "required metadata entry is missing");
    return "";
  };
  info_.version = parse_int_field(path, "__metadata__.moba_dump_version", meta_field("moba_dump_version", true));
  if (info_.version != 1)
    throw FormatError(path, "__metadata__.moba_dump_version",
                      "unsupported schema version " + std::to_string(info_.version) + " (this build reads 1)");
  info_.model = meta_field("model", true);
  const int64_t rope = parse_int_field(path, "__metadata__.rope_applied", meta_field("rope_applied", true));
  if (rope != 0 && rope != 1)
    throw FormatError(path, "__metadata__.rope_applied", "must be 0 or 1, got " + std::to_string(rope));
  info_.rope_applied = rope == 1;
  info_.source = meta_field("source", false);
  for (const auto& kv : meta)
    if (kv.first != "moba_dump_version" && kv.first != "model" && kv.first != "rope_applied" && kv.first != "source")
      info_.attributes[kv.first] = kv.second;

  // Layers: every "layers.<L>.<tensor>" name.
  std::map<int, bool> layer_seen;
  for (const auto& kv : entries_) {
    const std::string& n = kv.first;
    if (n.compare(0, 7, "layers.") != 0) continue;
    const size_t dot = n.find('.', 7);
    if (dot == std::string::npos) continue;
    const int index = parse_layer_name(n.substr(7, dot - 7));
    if (index < 0) throw FormatError(path, n, "layer names must be layers.<decimal index>.<tensor>");
    layer_seen[index] = true;
  }
  for (const auto& kv : layer_seen) {
    const std::string p = "layers." + std::to_string(kv.first) + ".";
    info_.layers.push_back(check_layer(path, kv.first, desc_of(p + "q", true), desc_of(p + "k", true),
                                       desc_of(p + "v", true), desc_of(p + "o", true), desc_of(p + "lse", true),
                                       desc_of(p + "planted", false)));
  }
  int64_t token_ids_len = -1;
  if (entries_.count("token_ids")) {
    const TensorDesc ids = desc_of("token_ids", false);
    if (ids.dims.size() != 1)
      throw ShapeError(path, "token_ids", "rank " + std::to_string(ids.dims.size()) + ", expected 1 [n_tokens]");
    token_ids_len = ids.dims[0];
    info_.has_token_ids = true;
  }
  if (info_.layers.empty()) throw MissingFieldError(path, "layers.0.q", "the dump has no layers.<L>.q/k/v tensors");
  check_dump(&info_, token_ids_len);
}

TensorDesc SafetensorsDumpReader::desc_of(const std::string& name, bool floating) const {
  TensorDesc d;
  d.name = name;
  auto it = entries_.find(name);
  if (it == entries_.end()) return d;
  const Entry& e = it->second;
  d.present = true;
  d.dims = e.shape;
  if (floating) {
    if (e.dtype_text == "F32") d.dtype = DType::f32;
    else if (e.dtype_text == "F16") d.dtype = DType::f16;
    else if (e.dtype_text == "BF16") d.dtype = DType::bf16;
    else throw DTypeError(info_.path, name, "dtype " + e.dtype_text + " is not allowed (F32, F16 or BF16)");
  } else if (e.dtype_text != "I32" && e.dtype_text != "I64") {
    throw DTypeError(info_.path, name, "dtype " + e.dtype_text + " is not allowed (I32 or I64)");
  }
  return d;
}

void SafetensorsDumpReader::read_into(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads, Tensor3* out_p) {
  const LayerInfo& l = info_.layer(layer);
  const std::string name = "layers." + std::to_string(layer) + "." + tensor_kind_name(kind);
  auto it = entries_.find(name);
  if (it == entries_.end()) throw MissingFieldError(info_.path, name, "tensor is not in the dump");
  const Entry& e = it->second;
  check_head_range(info_.path, name, head_begin, n_heads, heads_of(l, kind));
  const DType dtype = desc_of(name, true).dtype;
  const int64_t n_tokens = e.shape[1], head_dim = e.shape[2];
  Tensor3& out = *out_p;
  out.reshape(n_heads, n_tokens, head_dim, dtype);
  // Widen in runs of at most 4 MiB of source, then drop those source pages from this
  // process's resident set (they stay in the page cache): peak memory is the output slice
  // plus one run, not the mapped file.
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const int64_t rows_per_run = std::max<int64_t>(1, (int64_t(4) << 20) / (head_dim * e.elem_size));
  for (int64_t h = head_begin; h < head_begin + n_heads; ++h) {
    for (int64_t t0 = 0; t0 < n_tokens; t0 += rows_per_run) {
      const int64_t rows = std::min(rows_per_run, n_tokens - t0);
      float* dst = out.row(h - head_begin, t0);
      const unsigned char* src = data_of(e) + (h * n_tokens + t0) * head_dim * e.elem_size;
      widen(dtype, src, rows * head_dim, dst);
      const uintptr_t lo = (reinterpret_cast<uintptr_t>(src) + page - 1) / page * page;
      const uintptr_t hi = (reinterpret_cast<uintptr_t>(src) + size_t(rows * head_dim * e.elem_size)) / page * page;
      if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
      check_finite(info_.path, name, dst, rows, head_dim, h, t0);
    }
  }
}

std::vector<int32_t> SafetensorsDumpReader::read_ints(const Entry& e, int64_t lo, int64_t hi) const {
  int64_t n = 1;
  for (int64_t d : e.shape) n *= d;
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int64_t v;
    if (e.elem_size == 4) {
      int32_t x;
      std::memcpy(&x, data_of(e) + 4 * i, 4);
      v = x;
    } else {
      std::memcpy(&v, data_of(e) + 8 * i, 8);
    }
    if (v < lo || v > hi)
      throw ValueError(info_.path, e.name, "value " + std::to_string(v) + " at flat index " + std::to_string(i) +
                                               " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    out[size_t(i)] = static_cast<int32_t>(v);
  }
  return out;
}

std::vector<int32_t> SafetensorsDumpReader::read_token_ids() {
  auto it = entries_.find("token_ids");
  if (it == entries_.end()) return {};
  return read_ints(it->second, INT32_MIN, INT32_MAX);
}

std::vector<int32_t> SafetensorsDumpReader::read_planted(int layer) {
  const LayerInfo& l = info_.layer(layer);
  auto it = entries_.find("layers." + std::to_string(layer) + ".planted");
  if (it == entries_.end()) return {};
  return read_ints(it->second, -1, l.n_tokens - 1);
}

}  // namespace

std::unique_ptr<DumpReader> open_safetensors_dump(const std::string& path) {
  return std::make_unique<SafetensorsDumpReader>(path);
}

}  // namespace moba::io
