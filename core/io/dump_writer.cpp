// DumpWriter (core/dump.h): HDF5 schema v1, chunked one head per chunk. Chunks are
// [1, tokens_per_chunk, head_dim] with tokens_per_chunk capped so a chunk is at most 1 MiB:
// a reader of one head (or of a run of tokens of one head) touches only its own chunks.
// Values are narrowed here (round to nearest even, core/dtype.h) and written in the stored
// type, so HDF5 performs no float conversion. commit() re-checks the layers with the
// readers' schema checks, so a writer can never produce a dump its readers reject.
#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

#include "core/dump.h"
#include "core/errors.h"
#include "core/json_writer.h"
#include "core/io/h5_util.h"
#include "core/io/reader_common.h"

namespace moba {

namespace {
constexpr int64_t kChunkBytes = int64_t(1) << 20;

struct LayerRecord {
  io::TensorDesc q, k, v, o, lse, planted;
};
}  // namespace

struct DumpWriter::Impl {
  explicit Impl(const std::string& path) : file(path) {}
  h5::TempFile file;
  std::map<int, LayerRecord> layers;
  int64_t token_ids_len = -1;

  const std::string& path() const { return file.target(); }
  void write_root(const std::string& path, const DumpMeta& meta);
  void check_open() const {
    if (file.committed()) throw std::logic_error(path() + ": dump already committed");
  }
  h5::Id layer_group(int layer) {
    if (layer < 0) throw std::logic_error(path() + ": negative layer index");
    h5::Id g = h5::require_group(file.get(), "/layers/" + std::to_string(layer));
    if (!g) throw std::runtime_error(path() + ": /layers/" + std::to_string(layer) + ": cannot create the group");
    return g;
  }
};

DumpWriter::DumpWriter(const std::string& path, const DumpMeta& meta) {
  auto lock = h5::h5_lock();
  impl_ = std::make_unique<Impl>(path);
  try {
    impl_->write_root(path, meta);
  } catch (...) {
    impl_.reset();  // removes the temporary file while the lock is held
    throw;
  }
}

// Root attributes of schema v1 plus the caller's extras.
void DumpWriter::Impl::write_root(const std::string& path, const DumpMeta& meta) {
  h5::Id root = h5::group_id(H5Gopen2(file.get(), "/", H5P_DEFAULT));
  bool ok = root && h5::write_attr_int(root.get(), "moba_dump_version", 1) &&
            h5::write_attr_string(root.get(), "model", meta.model) &&
            h5::write_attr_int(root.get(), "rope_applied", meta.rope_applied ? 1 : 0);
  if (ok && !meta.source.empty()) ok = h5::write_attr_string(root.get(), "source", meta.source);
  auto reserved = [&](const std::string& name) {
    if (name == "moba_dump_version" || name == "model" || name == "rope_applied" || name == "source")
      throw std::logic_error(path + ": extra attribute '" + name + "' would replace a schema attribute");
  };
  for (const auto& kv : meta.numeric_attributes) {
    reserved(kv.first);
    if (ok) ok = h5::write_attr_double(root.get(), kv.first, kv.second);
  }
  for (const auto& kv : meta.string_attributes) {
    reserved(kv.first);
    if (ok) ok = h5::write_attr_string(root.get(), kv.first, kv.second);
  }
  if (!ok) throw std::runtime_error(path + ": cannot write the root attributes");
}

DumpWriter::~DumpWriter() {
  auto lock = h5::h5_lock();
  impl_.reset();
}

void DumpWriter::write_tensor(int layer, TensorKind kind, const Tensor3& t, DType stored) {
  auto lock = h5::h5_lock();
  impl_->check_open();
  const std::string name = "/layers/" + std::to_string(layer) + "/" + tensor_kind_name(kind);
  const std::string& path = impl_->path();
  if (t.n_heads <= 0 || t.n_tokens <= 0 || t.head_dim <= 0 ||
      static_cast<int64_t>(t.data.size()) != t.n_heads * t.n_tokens * t.head_dim)
    throw std::logic_error(path + ": " + name + ": tensor shape and data size disagree or are empty");
  for (int64_t h = 0; h < t.n_heads; ++h) io::check_finite(path, name, t.row(h, 0), t.n_tokens, t.head_dim, h, 0);
  LayerRecord& rec = impl_->layers[layer];
  io::TensorDesc* desc = kind == TensorKind::q ? &rec.q : kind == TensorKind::k ? &rec.k : kind == TensorKind::v ? &rec.v : &rec.o;
  if (desc->present) throw std::logic_error(path + ": " + name + ": written twice");

  h5::Id group = impl_->layer_group(layer);
  h5::Id file_type;
  switch (stored) {
    case DType::f32: file_type = h5::type_id(H5Tcopy(H5T_IEEE_F32LE)); break;
    case DType::f16: file_type = h5::make_f16_type(); break;
    case DType::bf16: file_type = h5::type_id(H5Tcopy(H5T_STD_U16LE)); break;
  }
  const int64_t elem = dtype_size(stored);
  const int64_t tokens_per_chunk = std::max<int64_t>(1, std::min<int64_t>(t.n_tokens, kChunkBytes / (t.head_dim * elem)));
  const hsize_t dims[3] = {hsize_t(t.n_heads), hsize_t(t.n_tokens), hsize_t(t.head_dim)};
  const hsize_t chunk[3] = {1, hsize_t(tokens_per_chunk), hsize_t(t.head_dim)};
  h5::Id space = h5::space_id(H5Screate_simple(3, dims, nullptr));
  h5::Id dcpl = h5::plist_id(H5Pcreate(H5P_DATASET_CREATE));
  bool ok = file_type && space && dcpl && H5Pset_chunk(dcpl.get(), 3, chunk) >= 0;
  h5::Id d = ok ? h5::dataset_id(H5Dcreate2(group.get(), tensor_kind_name(kind), file_type.get(), space.get(),
                                            H5P_DEFAULT, dcpl.get(), H5P_DEFAULT))
                : h5::Id();
  if (!d) throw std::runtime_error(path + ": " + name + ": cannot create the dataset");
  if (stored == DType::bf16 && !h5::write_attr_string(d.get(), "dtype", "bfloat16"))
    throw std::runtime_error(path + ": " + name + ": cannot write the dtype attribute");

  // One chunk at a time: narrow into `staging`, write that hyperslab.
  std::vector<uint16_t> staging(stored == DType::f32 ? 0 : size_t(tokens_per_chunk * t.head_dim));
  for (int64_t h = 0; h < t.n_heads; ++h) {
    for (int64_t t0 = 0; t0 < t.n_tokens; t0 += tokens_per_chunk) {
      const int64_t rows = std::min(tokens_per_chunk, t.n_tokens - t0);
      const int64_t n = rows * t.head_dim;
      const float* src = t.row(h, t0);
      const void* buf = src;
      if (stored != DType::f32) {
        // Finite inputs may still overflow the narrow type (|x| > 65504 in f16): refuse, as
        // the readers would refuse the Inf.
        const uint16_t inf_exp = stored == DType::f16 ? 0x7c00u : 0x7f80u;
        for (int64_t i = 0; i < n; ++i) {
          const uint16_t x = stored == DType::f16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
          if ((x & inf_exp) == inf_exp)
            throw ValueError(path, name, "value " + format_shortest(src[i]) + " at head " + std::to_string(h) +
                                             ", token " + std::to_string(t0 + i / t.head_dim) + " overflows " +
                                             dtype_name(stored));
          staging[size_t(i)] = x;
        }
        buf = staging.data();
      }
      const hsize_t start[3] = {hsize_t(h), hsize_t(t0), 0}, count[3] = {1, hsize_t(rows), hsize_t(t.head_dim)};
      h5::Id fspace = h5::space_id(H5Dget_space(d.get()));
      h5::Id mspace = h5::space_id(H5Screate_simple(3, count, nullptr));  // the selection's shape: HDF5's fast path
      if (!fspace || !mspace ||
          H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr) < 0 ||
          H5Dwrite(d.get(), file_type.get(), mspace.get(), fspace.get(), H5P_DEFAULT, buf) < 0)
        h5::throw_write_failure(path + ": " + name);
    }
  }
  desc->present = true;
  desc->name = name;
  desc->dims = {t.n_heads, t.n_tokens, t.head_dim};
  desc->dtype = stored;
}

// Writes an int32 dataset `name` (rank 1 or 2) in one call.
static void write_int32_dataset(hid_t loc, const std::string& file, const std::string& name, const char* link,
                                const std::vector<hsize_t>& dims, const int32_t* data) {
  h5::Id space = h5::space_id(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
  h5::Id d = space ? h5::dataset_id(H5Dcreate2(loc, link, H5T_STD_I32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                                               H5P_DEFAULT))
                   : h5::Id();
  if (!d || H5Dwrite(d.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    throw std::runtime_error(file + ": " + name + ": write failed");
}

void DumpWriter::write_planted(int layer, int64_t n_q_heads, int64_t n_tokens, const std::vector<int32_t>& planted) {
  auto lock = h5::h5_lock();
  impl_->check_open();
  const std::string name = "/layers/" + std::to_string(layer) + "/planted";
  if (n_q_heads <= 0 || n_tokens <= 0 || static_cast<int64_t>(planted.size()) != n_q_heads * n_tokens)
    throw std::logic_error(impl_->path() + ": " + name + ": size disagrees with [n_q_heads, n_tokens]");
  for (size_t i = 0; i < planted.size(); ++i)
    if (planted[i] < -1 || planted[i] >= n_tokens)
      throw std::logic_error(impl_->path() + ": " + name + ": value " + std::to_string(planted[i]) + " out of range");
  LayerRecord& rec = impl_->layers[layer];
  if (rec.planted.present) throw std::logic_error(impl_->path() + ": " + name + ": written twice");
  h5::Id group = impl_->layer_group(layer);
  write_int32_dataset(group.get(), impl_->path(), name, "planted", {hsize_t(n_q_heads), hsize_t(n_tokens)}, planted.data());
  rec.planted = io::TensorDesc{true, name, {n_q_heads, n_tokens}, DType::f32};
}

void DumpWriter::write_token_ids(const std::vector<int32_t>& ids) {
  auto lock = h5::h5_lock();
  impl_->check_open();
  if (ids.empty()) throw std::logic_error(impl_->path() + ": token_ids: empty");
  if (impl_->token_ids_len >= 0) throw std::logic_error(impl_->path() + ": token_ids: written twice");
  h5::Id root = h5::group_id(H5Gopen2(impl_->file.get(), "/", H5P_DEFAULT));
  write_int32_dataset(root.get(), impl_->path(), "/token_ids", "token_ids", {hsize_t(ids.size())}, ids.data());
  impl_->token_ids_len = static_cast<int64_t>(ids.size());
}

void DumpWriter::commit() {
  auto lock = h5::h5_lock();
  impl_->check_open();
  DumpInfo info;
  info.path = impl_->path();
  for (auto& kv : impl_->layers) {
    LayerRecord& r = kv.second;
    const std::string base = "/layers/" + std::to_string(kv.first) + "/";
    for (auto* p : {&r.q, &r.k, &r.v, &r.o, &r.lse, &r.planted})
      if (p->name.empty()) p->name = base + (p == &r.q ? "q" : p == &r.k ? "k" : p == &r.v ? "v" : p == &r.o ? "o" : p == &r.lse ? "lse" : "planted");
    info.layers.push_back(io::check_layer(info.path, kv.first, r.q, r.k, r.v, r.o, r.lse, r.planted));
  }
  io::check_dump(&info, impl_->token_ids_len);
  impl_->file.commit();
}

}  // namespace moba
