// HDF5 schema v1 reader (DESIGN.md §2). Opening reads metadata only (attributes, shapes,
// types); values are read on demand, one head and a bounded run of tokens per H5Dread, via
// hyperslab selections, so reading one head touches only that head's bytes on disk and
// holds at most the requested Tensor3 plus a 4 MiB staging buffer in memory.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <map>
#include <utility>

#include "core/errors.h"
#include "core/io/h5_util.h"
#include "core/io/reader_common.h"

namespace moba::io {
namespace {

constexpr int64_t kStagingBytes = int64_t(4) << 20;  // per H5Dread call

// How a dataset's elements are stored and read.
struct DsetMeta {
  TensorDesc desc;     // logical dims, dtype, name
  bool thd = false;    // file dims are [n_tokens, n_heads, head_dim] (or [n_tokens, n_heads])
  bool raw16 = false;  // read 2-byte elements raw (LE) and widen with widen(); else NATIVE_FLOAT
};

std::string describe_type(hid_t t) {
  const size_t size = H5Tget_size(t);
  const std::string bits = std::to_string(size * 8);
  switch (H5Tget_class(t)) {
    case H5T_INTEGER: return (H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int") + bits;
    case H5T_FLOAT: return "float" + bits;
    case H5T_STRING: return "string";
    case H5T_OPAQUE: return "opaque(" + std::to_string(size) + " bytes)";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "vlen";
    case H5T_REFERENCE: return "reference";
    case H5T_BITFIELD: return "bitfield";
    default: return "unknown type";
  }
}

bool float_fields_are(hid_t t, size_t spos, size_t epos, size_t esize, size_t mpos, size_t msize) {
  size_t s, e, es, m, ms;
  if (H5Tget_fields(t, &s, &e, &es, &m, &ms) < 0) return false;
  return s == spos && e == epos && es == esize && m == mpos && ms == msize;
}

class Hdf5DumpReader final : public DumpReader {
 public:
  explicit Hdf5DumpReader(const std::string& path) {
    auto lock = h5::h5_lock();
    try {
      init(path);
    } catch (...) {
      file_.reset();  // closed while the lock is held
      throw;
    }
  }
  ~Hdf5DumpReader() override {
    auto lock = h5::h5_lock();
    file_.reset();
  }
  const DumpInfo& info() const override { return info_; }
  void read_into(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads, Tensor3* out) override;
  bool read_raw16_into(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads, Raw16* out) override;
  using DumpReader::read;
  std::vector<int32_t> read_token_ids() override;
  std::vector<int32_t> read_planted(int layer) override;

 private:
  void init(const std::string& path);
  // Metadata of dataset `name` (absolute path); desc.present == false when absent.
  // `kind`: 0 = q/k/v/o (float, rank 3), 1 = lse (float, rank 2), 2 = integer (planted, token_ids).
  DsetMeta describe(const std::string& name, int kind);
  void check_storage_written(hid_t d, hid_t space, const std::string& name, const std::vector<hsize_t>& dims) const;
  std::string root_string(hid_t root, const char* name, bool required);
  int64_t root_int(hid_t root, const char* name);
  std::vector<int32_t> read_ints(const std::string& name, int64_t n, int64_t lo, int64_t hi);
  h5::Id open_dataset(const std::string& name);
  // A slice's rows, a bounded run of tokens per H5Dread: size(meta, n_tokens, head_dim,
  // rows_per_call) once (without the lock), then per run H5Dread into target(meta, h, t0) as
  // 2-byte raw (raw16 tensors) or NATIVE_FLOAT, and check(meta, name, h, t0, rows) without the
  // lock. raw16_only: false, nothing read, for a tensor that is not stored in 16 bits.
  template <typename Size, typename Target, typename Check>
  bool read_rows(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads, bool raw16_only, Size&& size,
                 Target&& target, Check&& check);

  DumpInfo info_;
  h5::Id file_;
  std::map<std::pair<int, int>, DsetMeta> tensors_;  // (layer, TensorKind) -> dataset
};

void Hdf5DumpReader::init(const std::string& path) {
  info_.path = path;
  info_.format = "hdf5";
  file_ = h5::file_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!file_) throw FormatError(path, "", "cannot open as HDF5: the file is truncated or corrupt");
  h5::Id root = h5::group_id(H5Gopen2(file_.get(), "/", H5P_DEFAULT));
  if (!root) throw FormatError(path, "/", "cannot open the root group: corrupt file");

  info_.version = root_int(root.get(), "moba_dump_version");
  if (info_.version != 1)
    throw FormatError(path, "moba_dump_version",
                      "unsupported schema version " + std::to_string(info_.version) + " (this build reads 1)");
  info_.model = root_string(root.get(), "model", true);
  const int64_t rope = root_int(root.get(), "rope_applied");
  if (rope != 0 && rope != 1)
    throw FormatError(path, "rope_applied", "must be 0 or 1, got " + std::to_string(rope));
  info_.rope_applied = rope == 1;
  info_.source = root_string(root.get(), "source", false);
  for (const std::string& name : h5::attr_names(root.get())) {
    if (name == "moba_dump_version" || name == "model" || name == "rope_applied" || name == "source") continue;
    h5::AttrValue v;
    if (h5::read_attr(root.get(), name, &v)) info_.attributes[name] = v.text;
  }

  if (!h5::path_exists(file_.get(), "/layers")) throw MissingFieldError(path, "/layers", "group is missing");
  h5::Id layers = h5::object_id(H5Oopen(file_.get(), "/layers", H5P_DEFAULT));
  if (!layers || H5Iget_type(layers.get()) != H5I_GROUP)
    throw FormatError(path, "/layers", "is not a group");
  H5G_info_t ginfo;
  if (H5Gget_info(layers.get(), &ginfo) < 0) throw FormatError(path, "/layers", "cannot list the group: corrupt file");
  for (hsize_t i = 0; i < ginfo.nlinks; ++i) {
    char buf[256] = {0};
    if (H5Lget_name_by_idx(layers.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, buf, sizeof buf, H5P_DEFAULT) < 0)
      throw FormatError(path, "/layers", "cannot list the group: corrupt file");
    const std::string name = buf;
    const std::string gpath = "/layers/" + name;
    const int index = parse_layer_name(name);
    if (index < 0) throw FormatError(path, gpath, "layer groups must be named by decimal index (0, 1, ...)");
    h5::Id g = h5::object_id(H5Oopen(file_.get(), gpath.c_str(), H5P_DEFAULT));
    if (!g || H5Iget_type(g.get()) != H5I_GROUP) throw FormatError(path, gpath, "is not a group");
    const DsetMeta q = describe(gpath + "/q", 0), k = describe(gpath + "/k", 0), v = describe(gpath + "/v", 0),
                   o = describe(gpath + "/o", 0), lse = describe(gpath + "/lse", 1),
                   planted = describe(gpath + "/planted", 2);
    info_.layers.push_back(check_layer(path, index, q.desc, k.desc, v.desc, o.desc, lse.desc, planted.desc));
    tensors_[{index, int(TensorKind::q)}] = q;
    tensors_[{index, int(TensorKind::k)}] = k;
    tensors_[{index, int(TensorKind::v)}] = v;
    if (o.desc.present) tensors_[{index, int(TensorKind::o)}] = o;
  }
  int64_t token_ids_len = -1;
  const DsetMeta ids = describe("/token_ids", 2);
  if (ids.desc.present) {
    if (ids.desc.dims.size() != 1)
      throw ShapeError(path, "/token_ids", "rank " + std::to_string(ids.desc.dims.size()) + ", expected 1 [n_tokens]");
    token_ids_len = ids.desc.dims[0];
    info_.has_token_ids = true;
  }
  check_dump(&info_, token_ids_len);
}

int64_t Hdf5DumpReader::root_int(hid_t root, const char* name) {
  h5::AttrValue v;
  if (!h5::read_attr(root, name, &v)) throw MissingFieldError(info_.path, name, "required root attribute is missing");
  if (v.kind == h5::AttrValue::Kind::integer) return v.i;
  // A whole floating-point value in int64 range (checked before converting: the cast of an
  // out-of-range or NaN double is undefined).
  if (v.kind == h5::AttrValue::Kind::real && std::isfinite(v.r) && std::fabs(v.r) < 9.2e18 && v.r == std::trunc(v.r))
    return static_cast<int64_t>(v.r);
  if (v.kind == h5::AttrValue::Kind::text) return parse_int_field(info_.path, name, v.text);
  throw FormatError(info_.path, name, "expected an integer attribute, found " + v.text);
}

std::string Hdf5DumpReader::root_string(hid_t root, const char* name, bool required) {
  h5::AttrValue v;
  if (!h5::read_attr(root, name, &v)) {
    if (required) throw MissingFieldError(info_.path, name, "required root attribute is missing");
    return "";
  }
  if (v.kind != h5::AttrValue::Kind::text)
    throw FormatError(info_.path, name, "expected a string attribute, found " + v.text);
  return v.text;
}

// A dataset whose storage was never (fully) written reads as its fill value: a truncated
// write, or a header that claims a shape the file does not hold (a 4 KB file "of" 2^36 values).
// Chunked: every chunk the shape implies is in the file (H5Dget_space_status cannot tell:
// it compares compressed bytes with the full size); contiguous: its storage is allocated.
void Hdf5DumpReader::check_storage_written(hid_t d, hid_t space, const std::string& name,
                                           const std::vector<hsize_t>& dims) const {
  if (dims.empty() || std::any_of(dims.begin(), dims.end(), [](hsize_t x) { return x == 0; })) return;
  h5::Id plist = h5::plist_id(H5Dget_create_plist(d));
  if (!plist) return;
  const H5D_layout_t layout = H5Pget_layout(plist.get());
  bool written = true;
  if (layout == H5D_CHUNKED) {
    std::vector<hsize_t> chunk(dims.size());
    if (H5Pget_chunk(plist.get(), static_cast<int>(chunk.size()), chunk.data()) != static_cast<int>(dims.size()))
      return;
    hsize_t expected = 1, present = 0;
    for (size_t i = 0; i < dims.size(); ++i) {
      if (chunk[i] == 0) return;
      const hsize_t n = (dims[i] + chunk[i] - 1) / chunk[i];
      if (expected > (hsize_t{1} << 62) / n) return;  // too many to count: the reads will tell
      expected *= n;
    }
    if (H5Dget_num_chunks(d, space, &present) < 0) return;
    written = present >= expected;
  } else if (layout == H5D_CONTIGUOUS) {
    written = H5Dget_storage_size(d) > 0;
  }
  if (!written)
    throw FormatError(info_.path, name,
                      "its data was never (fully) written: the file does not hold the shape its header claims "
                      "(a truncated write?)");
}

DsetMeta Hdf5DumpReader::describe(const std::string& name, int kind) {
  DsetMeta m;
  m.desc.name = name;
  if (!h5::path_exists(file_.get(), name)) return m;
  h5::Id obj = h5::object_id(H5Oopen(file_.get(), name.c_str(), H5P_DEFAULT));
  if (!obj || H5Iget_type(obj.get()) != H5I_DATASET) throw FormatError(info_.path, name, "is not a dataset");
  const hid_t d = obj.get();
  m.desc.present = true;
  h5::Id space = h5::space_id(H5Dget_space(d));
  h5::Id type = h5::type_id(H5Dget_type(d));
  if (!space || !type) throw FormatError(info_.path, name, "cannot read the dataset header: corrupt file");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) throw FormatError(info_.path, name, "cannot read the dataspace: corrupt file");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  for (hsize_t x : dims) m.desc.dims.push_back(static_cast<int64_t>(x));
  check_storage_written(d, space.get(), name, dims);

  h5::AttrValue layout;
  if (kind != 2 && h5::read_attr(d, "layout", &layout)) {
    if (layout.kind != h5::AttrValue::Kind::text || (layout.text != "htd" && layout.text != "thd"))
      throw FormatError(info_.path, name, "layout attribute '" + layout.text + "' is neither \"htd\" nor \"thd\"");
    m.thd = layout.text == "thd";
    if (m.thd && m.desc.dims.size() >= 2) std::swap(m.desc.dims[0], m.desc.dims[1]);
  }

  const hid_t t = type.get();
  const H5T_class_t cls = H5Tget_class(t);
  const size_t size = H5Tget_size(t);
  if (kind == 2) {
    if (cls != H5T_INTEGER)
      throw DTypeError(info_.path, name, "element type " + describe_type(t) + ", expected an integer type");
    return m;
  }
  h5::AttrValue dtype_attr;
  const bool has_dtype_attr = h5::read_attr(d, "dtype", &dtype_attr);
  std::string declared;
  if (has_dtype_attr) {
    declared = dtype_attr.text;
    if (dtype_attr.kind != h5::AttrValue::Kind::text ||
        (declared != "bfloat16" && declared != "bf16" && declared != "float16" && declared != "float32"))
      throw DTypeError(info_.path, name, "unknown dtype attribute '" + declared +
                                             "' (expected bfloat16, float16 or float32)");
  }
  const bool declared_bf16 = declared == "bfloat16" || declared == "bf16";
  if (cls == H5T_FLOAT && size == 4 && float_fields_are(t, 31, 23, 8, 0, 23)) {
    m.desc.dtype = DType::f32;
  } else if (cls == H5T_FLOAT && size == 2 && float_fields_are(t, 15, 10, 5, 0, 10)) {
    m.desc.dtype = DType::f16;
    m.raw16 = true;
  } else if (cls == H5T_FLOAT && size == 2 && float_fields_are(t, 15, 7, 8, 0, 7)) {
    m.desc.dtype = DType::bf16;
    m.raw16 = true;
  } else if ((cls == H5T_INTEGER || cls == H5T_OPAQUE) && size == 2 && declared_bf16) {
    m.desc.dtype = DType::bf16;
    m.raw16 = true;
  } else if ((cls == H5T_INTEGER || cls == H5T_OPAQUE) && size == 2) {
    throw DTypeError(info_.path, name, "element type " + describe_type(t) +
                                           " needs the dataset attribute dtype=\"bfloat16\" to be read as bfloat16");
  } else {
    throw DTypeError(info_.path, name, "element type " + describe_type(t) +
                                           " is not allowed (float32, float16, or bfloat16 stored as uint16)");
  }
  // "bf16" is bfloat16's alias; a bfloat16 declaration on float32 or float16 data contradicts it too.
  if (has_dtype_attr && (declared_bf16 ? m.desc.dtype != DType::bf16 : declared != dtype_name(m.desc.dtype)))
    throw DTypeError(info_.path, name, "dtype attribute '" + declared + "' contradicts the stored element type " +
                                           describe_type(t));
  if (kind == 1) m.desc.dtype = DType::f32;  // lse: any float type, not part of q/k/v's dtype
  return m;
}

h5::Id Hdf5DumpReader::open_dataset(const std::string& name) {
  h5::Id d = h5::dataset_id(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT));
  if (!d) throw FormatError(info_.path, name, "cannot open the dataset: corrupt file");
  return d;
}

void Hdf5DumpReader::read_into(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads, Tensor3* out_p) {
  Tensor3& out = *out_p;
  std::vector<uint16_t> staging;
  read_rows(layer, kind, head_begin, n_heads, false,
            [&](const DsetMeta& m, int64_t n_tokens, int64_t head_dim, int64_t rows_per_call) {
              out.reshape(n_heads, n_tokens, head_dim, m.desc.dtype);
              staging.resize(m.raw16 ? static_cast<size_t>(rows_per_call * head_dim) : 0);
            },
            [&](const DsetMeta& m, int64_t h, int64_t t0) -> void* {
              return m.raw16 ? static_cast<void*>(staging.data()) : static_cast<void*>(out.row(h - head_begin, t0));
            },
            [&](const DsetMeta& m, const std::string& name, int64_t h, int64_t t0, int64_t rows) {
              float* dst = out.row(h - head_begin, t0);
              if (m.raw16) widen(m.desc.dtype, staging.data(), rows * out.head_dim, dst);
              check_finite(info_.path, name, dst, rows, out.head_dim, h, t0);
            });
}

bool Hdf5DumpReader::read_raw16_into(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads, Raw16* out) {
  int64_t dim = 0, tokens = 0;
  std::vector<float> widened;  // only for a piece holding a NaN or Inf: read_into's error
  return read_rows(layer, kind, head_begin, n_heads, true,
                   [&](const DsetMeta&, int64_t n_tokens, int64_t head_dim, int64_t) {
                     tokens = n_tokens, dim = head_dim;
                     out->resize(static_cast<size_t>(n_heads * n_tokens * head_dim));
                   },
                   [&](const DsetMeta&, int64_t h, int64_t t0) -> void* {
                     return out->data() + ((h - head_begin) * tokens + t0) * dim;
                   },
                   [&](const DsetMeta& m, const std::string& name, int64_t h, int64_t t0, int64_t rows) {
                     const uint16_t* p = out->data() + ((h - head_begin) * tokens + t0) * dim;
                     if (!any_out_of_range16(m.desc.dtype, p, rows * dim)) return;
                     widened.resize(static_cast<size_t>(rows * dim));
                     widen(m.desc.dtype, p, rows * dim, widened.data());
                     check_finite(info_.path, name, widened.data(), rows, dim, h, t0);
                   });
}

template <typename Size, typename Target, typename Check>
bool Hdf5DumpReader::read_rows(int layer, TensorKind kind, int64_t head_begin, int64_t n_heads, bool raw16_only,
                               Size&& size, Target&& target, Check&& check) {
  auto lock = h5::h5_lock();
  const LayerInfo& l = info_.layer(layer);
  const std::string name = "/layers/" + std::to_string(layer) + "/" + tensor_kind_name(kind);
  auto it = tensors_.find({layer, int(kind)});
  if (it == tensors_.end()) throw MissingFieldError(info_.path, name, "tensor is not in the dump");
  const DsetMeta& m = it->second;
  if (raw16_only && !m.raw16) return false;
  check_head_range(info_.path, name, head_begin, n_heads, heads_of(l, kind));
  const int64_t n_tokens = m.desc.dims[1], head_dim = m.desc.dims[2];
  const int64_t elem = m.raw16 ? 2 : 4;
  const int64_t rows_per_call = std::max<int64_t>(1, std::min<int64_t>(n_tokens, kStagingBytes / (head_dim * elem)));
  // The library's lock is held for HDF5 calls only: the allocation, the widening and the
  // finiteness check run without it, so analysis.h5 writes on other threads are not held up
  // by a prefetched read (and every h5::Id below is closed with the lock held).
  lock.unlock();
  size(m, n_tokens, head_dim, rows_per_call);
  if (n_heads == 0) return true;
  lock.lock();

  h5::Id d = open_dataset(name);
  h5::Id fspace = h5::space_id(H5Dget_space(d.get()));
  h5::Id mem_type;
  if (m.raw16) {
    // The stored 2-byte type, made little-endian: HDF5 swaps bytes if the file is big-endian.
    h5::Id ft = h5::type_id(H5Dget_type(d.get()));
    mem_type = h5::type_id(ft ? H5Tcopy(ft.get()) : -1);
    if (mem_type && H5Tget_class(mem_type.get()) != H5T_OPAQUE) H5Tset_order(mem_type.get(), H5T_ORDER_LE);
  }
  if (!fspace || (m.raw16 && !mem_type)) throw FormatError(info_.path, name, "cannot read the dataset header");
  for (int64_t h = head_begin; h < head_begin + n_heads; ++h) {
    for (int64_t t0 = 0; t0 < n_tokens; t0 += rows_per_call) {
      const int64_t rows = std::min(rows_per_call, n_tokens - t0);
      hsize_t start[3], count[3];
      if (m.thd) {
        start[0] = hsize_t(t0), start[1] = hsize_t(h), start[2] = 0;
        count[0] = hsize_t(rows), count[1] = 1, count[2] = hsize_t(head_dim);
      } else {
        start[0] = hsize_t(h), start[1] = hsize_t(t0), start[2] = 0;
        count[0] = 1, count[1] = hsize_t(rows), count[2] = hsize_t(head_dim);
      }
      bool ok = false;
      {
        // The memory space has the selection's shape: a flat one sends HDF5 down its
        // element-by-element mapping path (~30 MB/s instead of the disk's speed).
        h5::Id mspace = h5::space_id(H5Screate_simple(3, count, nullptr));
        herr_t status = H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
        if (status >= 0 && mspace)
          status = H5Dread(d.get(), m.raw16 ? mem_type.get() : H5T_NATIVE_FLOAT, mspace.get(), fspace.get(),
                           H5P_DEFAULT, target(m, h, t0));
        ok = status >= 0 && mspace;
      }
      if (!ok)
        throw FormatError(info_.path, name, "read failed at head " + std::to_string(h) + ", tokens " +
                                                std::to_string(t0) + ".." + std::to_string(t0 + rows - 1) +
                                                ": the file is truncated or corrupt");
      lock.unlock();
      std::exception_ptr bad;
      try {
        check(m, name, h, t0, rows);
      } catch (...) {
        bad = std::current_exception();
      }
      lock.lock();
      if (bad) std::rethrow_exception(bad);
    }
  }
  return true;
}

std::vector<int32_t> Hdf5DumpReader::read_ints(const std::string& name, int64_t n, int64_t lo, int64_t hi) {
  h5::Id d = open_dataset(name);
  std::vector<int32_t> out(static_cast<size_t>(n));
  // Read as int64 first so out-of-range values are reported, not clamped by HDF5.
  const int64_t block = int64_t(1) << 20;
  std::vector<int64_t> buf(static_cast<size_t>(std::min(n, block)));
  h5::Id fspace = h5::space_id(H5Dget_space(d.get()));
  if (!fspace) throw FormatError(info_.path, name, "cannot read the dataset header");
  const int rank = H5Sget_simple_extent_ndims(fspace.get());
  for (int64_t begin = 0; begin < n; begin += block) {
    const int64_t count = std::min(block, n - begin);
    // The row-major flat range [begin, begin + count): one hyperslab for rank 1, one per
    // (partial) row for rank 2.
    herr_t status;
    const hsize_t mcount = hsize_t(count);
    h5::Id mspace = h5::space_id(H5Screate_simple(1, &mcount, nullptr));
    if (rank == 1) {
      const hsize_t start = hsize_t(begin);
      status = H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &start, nullptr, &mcount, nullptr);
      if (status >= 0) status = H5Dread(d.get(), H5T_NATIVE_INT64, mspace.get(), fspace.get(), H5P_DEFAULT, buf.data());
    } else {
      hsize_t dims[2];
      H5Sget_simple_extent_dims(fspace.get(), dims, nullptr);
      status = 0;
      for (int64_t i = 0; i < count && status >= 0;) {
        const int64_t flat = begin + i;
        const hsize_t row = hsize_t(flat) / dims[1], col = hsize_t(flat) % dims[1];
        const hsize_t take = std::min<hsize_t>(dims[1] - col, hsize_t(count - i));
        const hsize_t start[2] = {row, col}, cnt[2] = {1, take};
        h5::Id ms = h5::space_id(H5Screate_simple(1, &take, nullptr));
        status = H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, cnt, nullptr);
        if (status >= 0) status = H5Dread(d.get(), H5T_NATIVE_INT64, ms.get(), fspace.get(), H5P_DEFAULT, buf.data() + i);
        i += int64_t(take);
      }
    }
    if (status < 0) throw FormatError(info_.path, name, "read failed: the file is truncated or corrupt");
    for (int64_t i = 0; i < count; ++i) {
      const int64_t v = buf[size_t(i)];
      if (v < lo || v > hi)
        throw ValueError(info_.path, name, "value " + std::to_string(v) + " at flat index " + std::to_string(begin + i) +
                                               " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
      out[size_t(begin + i)] = static_cast<int32_t>(v);
    }
  }
  return out;
}

std::vector<int32_t> Hdf5DumpReader::read_token_ids() {
  auto lock = h5::h5_lock();
  if (!info_.has_token_ids) return {};
  return read_ints("/token_ids", info_.layers.front().n_tokens, INT32_MIN, INT32_MAX);
}

std::vector<int32_t> Hdf5DumpReader::read_planted(int layer) {
  auto lock = h5::h5_lock();
  const LayerInfo& l = info_.layer(layer);
  if (!l.has_planted) return {};
  return read_ints("/layers/" + std::to_string(layer) + "/planted", l.n_q_heads * l.n_tokens, -1, l.n_tokens - 1);
}

}  // namespace

std::unique_ptr<DumpReader> open_hdf5_dump(const std::string& path) {
  return std::make_unique<Hdf5DumpReader>(path);
}

}  // namespace moba::io
