// H5Output (core/h5_output.h): float32 / signed integer datasets of any rank, contiguous or
// chunked + compressed, with attributes, in a temporary HDF5 file renamed over the target on
// commit().
#include "core/h5_output.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>

#include "core/io/h5_util.h"

namespace moba {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "chunk_bytes lays out little-endian values");

namespace {
enum class Elem { f32, i32, f64 };

struct DatasetRec {
  Elem elem;
  std::vector<int64_t> shape;
  int64_t row_elems = 1;  // prod(shape[1:])
};

// Bytes of one stored element: float32, or a signed integer of `bits` (8, 16, 32).
size_t stored_bytes(bool f32, int bits) { return f32 ? 4 : size_t(bits / 8); }
size_t stored_bytes(Elem elem, int bits) { return elem == Elem::f64 ? 8 : stored_bytes(elem == Elem::f32, bits); }

hid_t file_type_of(Elem elem, int bits) {
  if (elem == Elem::f32) return H5T_IEEE_F32LE;
  if (elem == Elem::f64) return H5T_IEEE_F64LE;
  return bits == 8 ? H5T_STD_I8LE : bits == 16 ? H5T_STD_I16LE : H5T_STD_I32LE;
}

// One chunk of a compressed dataset as HDF5 stores it: rows [r0, r0 + chunk_rows) of `data`
// (past the last row: the fill value 0), in the stored type (little endian), byte-shuffled
// when `shuffle` (H5Z_filter_shuffle: byte j of every element, for j = 0 .. size - 1) and
// deflated (H5Z_filter_deflate: compress2 at `level`). Empty on failure.
std::vector<unsigned char> chunk_bytes(const H5Output::Item& it, int64_t row_elems, int64_t r0, int64_t chunk_rows) {
  const size_t size = stored_bytes(it.is_f32, it.stored_bits), n = size_t(chunk_rows * row_elems);
  const int64_t rows = std::min(chunk_rows, it.shape[0] - r0);
  const size_t have = size_t(rows * row_elems), first = size_t(r0 * row_elems);
  std::vector<unsigned char> raw(n * size, 0);
  if (it.is_f32) {
    std::memcpy(raw.data(), it.f32 + first, have * size);
  } else {
    for (size_t i = 0; i < have; ++i) {
      const auto v = static_cast<uint32_t>(it.i32[first + i]);  // two's complement, low bytes first
      for (size_t b = 0; b < size; ++b) raw[i * size + b] = static_cast<unsigned char>(v >> (8 * b));
    }
  }
  if (it.storage.shuffle && size > 1) {
    std::vector<unsigned char> sh(raw.size());
    for (size_t i = 0; i < n; ++i)
      for (size_t b = 0; b < size; ++b) sh[b * n + i] = raw[i * size + b];
    raw.swap(sh);
  }
  uLongf len = compressBound(uLong(raw.size()));
  std::vector<unsigned char> out(len);
  if (compress2(out.data(), &len, raw.data(), uLong(raw.size()), std::clamp(it.storage.deflate, 1, 9)) != Z_OK)
    return {};
  out.resize(len);
  return out;
}

// prod(shape[1:]) (negative dimensions count as 0), and the whole element count.
int64_t row_elems_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= std::max<int64_t>(0, shape[i]);
  return n;
}
int64_t elems_of(const std::vector<int64_t>& shape) {
  return shape.empty() ? 0 : std::max<int64_t>(0, shape[0]) * row_elems_of(shape);
}

// Contiguous datasets of at most this many bytes get the compact layout (H5Output::Impl::create).
constexpr int64_t kCompactBytes = 4096;

// The layout H5Output::Impl::create gives a dataset: chunked when the storage asks for it and
// the dataset has elements; deflated (after the optional shuffle) when, besides, a level is
// set and the library has the filter. write_batch prepares chunks for exactly the deflated ones.
bool chunked(const H5Storage& s, const std::vector<int64_t>& shape) {
  return s.chunk_rows > 0 && !shape.empty() && shape[0] > 0 && row_elems_of(shape) > 0;
}
bool deflated(const H5Storage& s, const std::vector<int64_t>& shape, bool deflate_avail) {
  return chunked(s, shape) && s.deflate > 0 && deflate_avail;
}

std::string parent_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}
std::string name_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// Groups kept open by H5Output::Impl::group_at before it closes them all and starts again.
constexpr size_t kOpenGroups = 256;
}  // namespace

int64_t H5Output::Item::elements() const { return elems_of(shape); }

struct H5Output::Impl {
  explicit Impl(const std::string& path) : file(path), deflate_avail(H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {}
  h5::TempFile file;
  bool deflate_avail;  // the library has the deflate filter
  std::map<std::string, DatasetRec> datasets;
  // Groups by absolute path, kept open: a configuration's attributes and datasets are found from
  // its group, and a group from its parent's (an absolute path walks every level from the root,
  // an existence check each prefix: most of a head's many small writes, before). Declared after
  // `file`, so closed before it.
  std::map<std::string, h5::Id> groups;

  // The group at `path`, created with its parents where absent.
  hid_t group_at(const std::string& path) {
    if (auto it = groups.find(path); it != groups.end()) return it->second.get();
    h5::Id g;
    if (path == "/") {
      g = h5::group_id(H5Gopen2(file.get(), "/", H5P_DEFAULT));
    } else {
      const hid_t parent = group_at(parent_of(path));
      const std::string name = name_of(path);
      if (H5Lexists(parent, name.c_str(), H5P_DEFAULT) > 0) {
        g = h5::group_id(H5Gopen2(parent, name.c_str(), H5P_DEFAULT));
      } else {
        g = h5::create_group(parent, name);
      }
    }
    if (!g) throw std::runtime_error(where(path) + ": cannot open or create the group");
    return groups.emplace(path, std::move(g)).first->second.get();
  }
  // At the start of an operation (never within one: its handles stay valid to its end).
  void trim_groups() {
    if (groups.size() >= kOpenGroups) groups.clear();
  }

  std::string where(const std::string& dataset) const { return file.target() + ": " + dataset; }

  void check_open() const {
    if (file.committed()) throw std::logic_error(file.target() + ": output already committed");
  }

  // Returns the new dataset, open (write and write_chunks take it instead of reopening it).
  h5::Id create(const std::string& name, const std::vector<int64_t>& shape, Elem elem, int bits = 32,
                const H5Storage& storage = {}) {
    check_open();
    if (name.empty() || name[0] != '/' || name == "/")
      throw std::logic_error(where(name) + ": dataset names are absolute paths like /layers/0/selected");
    if (shape.empty() || shape.size() > 32) throw std::logic_error(where(name) + ": rank must be 1..32");
    if (datasets.count(name)) throw std::logic_error(where(name) + ": dataset written twice");
    DatasetRec rec{elem, shape, 1};
    trim_groups();
    std::vector<hsize_t> dims;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] < 0) throw std::logic_error(where(name) + ": negative dimension");
      dims.push_back(hsize_t(shape[i]));
      if (i > 0) rec.row_elems *= shape[i];
    }
    const hid_t group = group_at(parent_of(name));
    h5::Id space = h5::space_id(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
    const hid_t type = file_type_of(elem, bits);
    h5::Id dcpl = h5::plist_id(H5Pcreate(H5P_DATASET_CREATE));
    bool ok = space && dcpl;
    if (ok && chunked(storage, shape)) {
      std::vector<hsize_t> chunk = dims;
      chunk[0] = hsize_t(std::min(storage.chunk_rows, shape[0]));
      ok = H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()) >= 0;
      if (ok && deflated(storage, shape, deflate_avail)) {
        if (storage.shuffle) ok = H5Pset_shuffle(dcpl.get()) >= 0;
        ok = ok && H5Pset_deflate(dcpl.get(), unsigned(std::clamp(storage.deflate, 1, 9))) >= 0;
      }
    } else if (ok && elems_of(shape) * int64_t(stored_bytes(elem, bits)) <= kCompactBytes) {
      // Small contiguous datasets (bucket curves, SNR histograms) live in their object header:
      // no separate raw-data block and write. Readers see the same dataset.
      ok = H5Pset_layout(dcpl.get(), H5D_COMPACT) >= 0;
    }
    h5::Id d = ok ? h5::dataset_id(H5Dcreate2(group, name_of(name).c_str(), type, space.get(), H5P_DEFAULT,
                                              dcpl.get(), H5P_DEFAULT))
                  : h5::Id();
    if (!d) throw std::runtime_error(where(name) + ": cannot create the dataset");
    datasets[name] = rec;
    return d;
  }

  // Rows [row_begin, row_begin + n_rows) of dataset `name`; `open`: the dataset when the caller
  // holds it open, else it is opened here.
  void write(const std::string& name, int64_t row_begin, int64_t n_rows, const void* data, Elem elem,
             hid_t open = H5I_INVALID_HID) {
    check_open();
    auto it = datasets.find(name);
    if (it == datasets.end()) throw std::logic_error(where(name) + ": write to a dataset never created");
    const DatasetRec& rec = it->second;
    if (rec.elem != elem) throw std::logic_error(where(name) + ": element type differs from the dataset's");
    if (row_begin < 0 || n_rows < 0 || row_begin + n_rows > rec.shape[0])
      throw std::logic_error(where(name) + ": rows out of range");
    if (n_rows == 0 || rec.row_elems == 0) return;
    const h5::Id reopened = open >= 0 ? h5::Id() : h5::dataset_id(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT));
    const hid_t d = open >= 0 ? open : reopened.get();
    h5::Id fspace = d >= 0 ? h5::space_id(H5Dget_space(d)) : h5::Id();
    std::vector<hsize_t> start(rec.shape.size(), 0), count;
    for (int64_t x : rec.shape) count.push_back(hsize_t(x));
    start[0] = hsize_t(row_begin);
    count[0] = hsize_t(n_rows);
    // The memory space has the selection's shape (a flat one makes HDF5 map element by element).
    h5::Id mspace = h5::space_id(H5Screate_simple(int(count.size()), count.data(), nullptr));
    const hid_t mem_type =
        elem == Elem::f32 ? H5T_NATIVE_FLOAT : elem == Elem::f64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT32;
    if (!fspace || !mspace ||
        H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0 ||
        H5Dwrite(d, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, data) < 0)
      h5::throw_write_failure(where(name));
  }

  // Writes chunks[i] (prepared by chunk_bytes) as chunk i of dataset `name`, open as `d`,
  // unfiltered by HDF5.
  void write_chunks(const std::string& name, const h5::Id& d, int64_t chunk_rows,
                    const std::vector<std::vector<unsigned char>>& chunks) {
    const DatasetRec& rec = datasets.at(name);
    std::vector<hsize_t> offset(rec.shape.size(), 0);
    for (size_t i = 0; i < chunks.size(); ++i) {
      offset[0] = hsize_t(int64_t(i) * chunk_rows);
      if (chunks[i].empty()) throw std::runtime_error(where(name) + ": compressing a chunk failed (out of memory?)");
      if (!d || H5Dwrite_chunk(d.get(), H5P_DEFAULT, 0, offset.data(), chunks[i].size(), chunks[i].data()) < 0)
        h5::throw_write_failure(where(name));
    }
  }

  // The group or dataset `object`, created as a group if absent.
  h5::Id open_object(const std::string& object) {
    check_open();
    if (object.empty() || object[0] != '/') throw std::logic_error(where(object) + ": object paths are absolute");
    trim_groups();
    if (object == "/") {
      h5::Id o = h5::object_id(H5Oopen(group_at("/"), ".", H5P_DEFAULT));
      if (o) return o;
    } else {
      const hid_t parent = group_at(parent_of(object));
      const std::string name = name_of(object);
      if (H5Lexists(parent, name.c_str(), H5P_DEFAULT) <= 0) group_at(object);  // a new group
      h5::Id o = h5::object_id(H5Oopen(parent, name.c_str(), H5P_DEFAULT));
      if (o) return o;
    }
    throw std::runtime_error(where(object) + ": cannot open or create the object");
  }
};

H5Output::H5Output(const std::string& path) {
  auto lock = h5::h5_lock();
  impl_ = std::make_unique<Impl>(path);
}

H5Output::~H5Output() {
  auto lock = h5::h5_lock();
  impl_.reset();
}

const std::string& H5Output::path() const { return impl_->file.target(); }

H5Storage compressed_storage(int64_t row_elems) {
  H5Storage s;
  s.chunk_rows = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, row_elems));
  s.deflate = 4;
  return s;
}

int int_bits_for(int64_t lo, int64_t hi) {
  if (lo >= std::numeric_limits<int8_t>::min() && hi <= std::numeric_limits<int8_t>::max()) return 8;
  if (lo >= std::numeric_limits<int16_t>::min() && hi <= std::numeric_limits<int16_t>::max()) return 16;
  if (lo >= std::numeric_limits<int32_t>::min() && hi <= std::numeric_limits<int32_t>::max()) return 32;
  return 0;
}

void H5Output::write_f32(const std::string& dataset, const std::vector<int64_t>& shape, const float* data,
                         const H5Storage& storage) {
  write_batch({Item::floats(dataset, shape, data, storage)});
}

void H5Output::write_i32(const std::string& dataset, const std::vector<int64_t>& shape, const int32_t* data,
                         const H5Storage& storage) {
  write_int(dataset, shape, data, 32, storage);
}

void H5Output::write_int(const std::string& dataset, const std::vector<int64_t>& shape, const int32_t* data,
                         int stored_bits, const H5Storage& storage) {
  write_batch({Item::ints(dataset, shape, data, stored_bits, storage)});
}

// An integer item's stored width is 8, 16 or 32 bits and holds every value (nothing is clipped).
void H5Output::check_fits(const Item& it) const {
  const int bits = it.stored_bits;
  if (bits != 8 && bits != 16 && bits != 32)
    throw std::logic_error(impl_->where(it.dataset) + ": stored integer width must be 8, 16 or 32 bits");
  if (bits == 32) return;
  const int64_t n = elems_of(it.shape);
  const int64_t lo = -(int64_t(1) << (bits - 1)), hi = (int64_t(1) << (bits - 1)) - 1;
  for (int64_t i = 0; i < n; ++i)
    if (it.i32[i] < lo || it.i32[i] > hi)
      throw std::logic_error(impl_->where(it.dataset) + ": value " + std::to_string(it.i32[i]) + " does not fit int" +
                             std::to_string(bits));
}

void H5Output::write_batch(const std::vector<Item>& items) {
  // The deflated items (the layout create gives them) go by prepared chunks.
  const auto chunk_rows = [](const Item& it) { return std::min(it.storage.chunk_rows, it.shape[0]); };
  std::vector<std::pair<size_t, int64_t>> jobs;  // (item, first row of the chunk)
  std::vector<std::vector<std::vector<unsigned char>>> chunks(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    const int64_t n = elems_of(it.shape);
    if (it.is_f32 ? (it.i32 || (n > 0 && !it.f32)) : (it.f32 || (n > 0 && !it.i32)))
      throw std::logic_error(impl_->where(it.dataset) + ": a batch item's values must match its type");
    if (!it.is_f32) check_fits(it);
    if (!deflated(it.storage, it.shape, impl_->deflate_avail)) continue;
    const int64_t cr = chunk_rows(it);
    chunks[i].resize(size_t((it.shape[0] + cr - 1) / cr));
    for (int64_t r = 0; r < it.shape[0]; r += cr) jobs.emplace_back(i, r);
  }
  // A team only for two chunks or more: most batches (bucket curves, histograms) have none,
  // and a parallel region per small write cost more than the write.
#pragma omp parallel for schedule(dynamic) if (jobs.size() > 1)
  for (int64_t j = 0; j < int64_t(jobs.size()); ++j) {
    const Item& it = items[jobs[size_t(j)].first];
    const int64_t r = jobs[size_t(j)].second, cr = chunk_rows(it);
    chunks[jobs[size_t(j)].first][size_t(r / cr)] = chunk_bytes(it, row_elems_of(it.shape), r, cr);
  }
  // The library's lock item by item, not for the whole batch: a kept head's batch (B4: 264
  // datasets, ~30 ms of HDF5 calls) would otherwise hold up the dump's reads on another thread.
  for (size_t i = 0; i < items.size(); ++i) {
    auto lock = h5::h5_lock();
    const Item& it = items[i];
    const Elem elem = it.is_f32 ? Elem::f32 : Elem::i32;
    const h5::Id d = impl_->create(it.dataset, it.shape, elem, it.is_f32 ? 32 : it.stored_bits, it.storage);
    if (!chunks[i].empty())
      impl_->write_chunks(it.dataset, d, chunk_rows(it), chunks[i]);
    else if (it.is_f32)
      impl_->write(it.dataset, 0, it.shape[0], it.f32, elem, d.get());
    else
      impl_->write(it.dataset, 0, it.shape[0], it.i32, elem, d.get());
  }
}

void H5Output::write_f64(const std::string& dataset, const std::vector<int64_t>& shape, const double* data) {
  if (elems_of(shape) > 0 && !data) throw std::logic_error(impl_->where(dataset) + ": no values");
  auto lock = h5::h5_lock();
  const h5::Id d = impl_->create(dataset, shape, Elem::f64);
  impl_->write(dataset, 0, shape.empty() ? 0 : shape[0], data, Elem::f64, d.get());
}

void H5Output::create_f32(const std::string& dataset, const std::vector<int64_t>& shape) {
  auto lock = h5::h5_lock();
  impl_->create(dataset, shape, Elem::f32);
}

void H5Output::create_i32(const std::string& dataset, const std::vector<int64_t>& shape) {
  auto lock = h5::h5_lock();
  impl_->create(dataset, shape, Elem::i32);
}

void H5Output::write_rows(const std::string& dataset, int64_t row_begin, int64_t n_rows, const float* data) {
  auto lock = h5::h5_lock();
  impl_->write(dataset, row_begin, n_rows, data, Elem::f32);
}

void H5Output::write_rows(const std::string& dataset, int64_t row_begin, int64_t n_rows, const int32_t* data) {
  auto lock = h5::h5_lock();
  impl_->write(dataset, row_begin, n_rows, data, Elem::i32);
}

void H5Output::set_string(const std::string& object, const std::string& name, const std::string& value) {
  auto lock = h5::h5_lock();
  h5::Id o = impl_->open_object(object);
  if (!h5::write_attr_string(o.get(), name, value))
    throw std::runtime_error(impl_->where(object) + ": cannot write attribute " + name);
}

void H5Output::set_number(const std::string& object, const std::string& name, double value) {
  auto lock = h5::h5_lock();
  h5::Id o = impl_->open_object(object);
  if (!h5::write_attr_double(o.get(), name, value))
    throw std::runtime_error(impl_->where(object) + ": cannot write attribute " + name);
}

void H5Output::set_numbers(const std::string& object, const std::vector<std::pair<std::string, double>>& values) {
  auto lock = h5::h5_lock();
  h5::Id o = impl_->open_object(object);
  for (const auto& [name, value] : values)
    if (!h5::write_attr_double(o.get(), name, value))
      throw std::runtime_error(impl_->where(object) + ": cannot write attribute " + name);
}
void H5Output::set_integer(const std::string& object, const std::string& name, int64_t value) {
  auto lock = h5::h5_lock();
  h5::Id o = impl_->open_object(object);
  if (!h5::write_attr_int(o.get(), name, value))
    throw std::runtime_error(impl_->where(object) + ": cannot write attribute " + name);
}

void H5Output::commit() {
  auto lock = h5::h5_lock();
  impl_->groups.clear();
  impl_->file.commit();
}

}  // namespace moba
