// H5Output (core/h5_output.h): float32 / signed integer datasets of any rank, contiguous or
// chunked + compressed, with attributes, in a temporary HDF5 file renamed over the target on
// commit().
#include "core/h5_output.h"

#include <algorithm>
#include <limits>
#include <map>
#include <stdexcept>

#include "core/io/h5_util.h"

namespace moba {

namespace {
enum class Elem { f32, i32 };

struct DatasetRec {
  Elem elem;
  std::vector<int64_t> shape;
  int64_t row_elems = 1;  // prod(shape[1:])
};

hid_t file_type_of(Elem elem, int bits) {
  if (elem == Elem::f32) return H5T_IEEE_F32LE;
  return bits == 8 ? H5T_STD_I8LE : bits == 16 ? H5T_STD_I16LE : H5T_STD_I32LE;
}

std::string parent_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}
}  // namespace

struct H5Output::Impl {
  explicit Impl(const std::string& path) : file(path) {}
  h5::TempFile file;
  std::map<std::string, DatasetRec> datasets;

  std::string where(const std::string& dataset) const { return file.target() + ": " + dataset; }

  void check_open() const {
    if (file.committed()) throw std::logic_error(file.target() + ": output already committed");
  }

  void create(const std::string& name, const std::vector<int64_t>& shape, Elem elem, int bits = 32,
              const H5Storage& storage = {}) {
    check_open();
    if (name.empty() || name[0] != '/' || name == "/")
      throw std::logic_error(where(name) + ": dataset names are absolute paths like /layers/0/selected");
    if (shape.empty() || shape.size() > 32) throw std::logic_error(where(name) + ": rank must be 1..32");
    if (datasets.count(name)) throw std::logic_error(where(name) + ": dataset written twice");
    DatasetRec rec{elem, shape, 1};
    std::vector<hsize_t> dims;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] < 0) throw std::logic_error(where(name) + ": negative dimension");
      dims.push_back(hsize_t(shape[i]));
      if (i > 0) rec.row_elems *= shape[i];
    }
    h5::Id group = h5::require_group(file.get(), parent_of(name));
    h5::Id space = h5::space_id(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
    const hid_t type = file_type_of(elem, bits);
    h5::Id dcpl = h5::plist_id(H5Pcreate(H5P_DATASET_CREATE));
    bool ok = group && space && dcpl;
    if (ok && storage.chunk_rows > 0 && shape[0] > 0 && rec.row_elems > 0) {
      std::vector<hsize_t> chunk = dims;
      chunk[0] = hsize_t(std::min(storage.chunk_rows, shape[0]));
      ok = H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()) >= 0;
      if (ok && storage.deflate > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
        if (storage.shuffle) ok = H5Pset_shuffle(dcpl.get()) >= 0;
        ok = ok && H5Pset_deflate(dcpl.get(), unsigned(std::clamp(storage.deflate, 1, 9))) >= 0;
      }
    }
    h5::Id d = ok ? h5::dataset_id(H5Dcreate2(file.get(), name.c_str(), type, space.get(), H5P_DEFAULT, dcpl.get(),
                                              H5P_DEFAULT))
                  : h5::Id();
    if (!d) throw std::runtime_error(where(name) + ": cannot create the dataset");
    datasets[name] = rec;
  }

  void write(const std::string& name, int64_t row_begin, int64_t n_rows, const void* data, Elem elem) {
    check_open();
    auto it = datasets.find(name);
    if (it == datasets.end()) throw std::logic_error(where(name) + ": write to a dataset never created");
    const DatasetRec& rec = it->second;
    if (rec.elem != elem) throw std::logic_error(where(name) + ": element type differs from the dataset's");
    if (row_begin < 0 || n_rows < 0 || row_begin + n_rows > rec.shape[0])
      throw std::logic_error(where(name) + ": rows out of range");
    if (n_rows == 0 || rec.row_elems == 0) return;
    h5::Id d = h5::dataset_id(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT));
    h5::Id fspace = d ? h5::space_id(H5Dget_space(d.get())) : h5::Id();
    std::vector<hsize_t> start(rec.shape.size(), 0), count;
    for (int64_t x : rec.shape) count.push_back(hsize_t(x));
    start[0] = hsize_t(row_begin);
    count[0] = hsize_t(n_rows);
    // The memory space has the selection's shape (a flat one makes HDF5 map element by element).
    h5::Id mspace = h5::space_id(H5Screate_simple(int(count.size()), count.data(), nullptr));
    const hid_t mem_type = elem == Elem::f32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32;
    if (!fspace || !mspace ||
        H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0 ||
        H5Dwrite(d.get(), mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, data) < 0)
      throw std::runtime_error(where(name) + ": write failed (disk full?)");
  }

  h5::Id open_object(const std::string& object) {
    check_open();
    if (object.empty() || object[0] != '/') throw std::logic_error(where(object) + ": object paths are absolute");
    if (h5::path_exists(file.get(), object)) {
      h5::Id o = h5::object_id(H5Oopen(file.get(), object.c_str(), H5P_DEFAULT));
      if (o) return o;
    } else {
      h5::Id g = h5::require_group(file.get(), object);
      if (g) return g;
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
  auto lock = h5::h5_lock();
  impl_->create(dataset, shape, Elem::f32, 32, storage);
  impl_->write(dataset, 0, shape[0], data, Elem::f32);
}

void H5Output::write_i32(const std::string& dataset, const std::vector<int64_t>& shape, const int32_t* data,
                         const H5Storage& storage) {
  write_int(dataset, shape, data, 32, storage);
}

void H5Output::write_int(const std::string& dataset, const std::vector<int64_t>& shape, const int32_t* data,
                         int stored_bits, const H5Storage& storage) {
  if (stored_bits != 8 && stored_bits != 16 && stored_bits != 32)
    throw std::logic_error(impl_->where(dataset) + ": stored integer width must be 8, 16 or 32 bits");
  if (stored_bits < 32 && !shape.empty()) {
    int64_t n = 1;
    for (const int64_t x : shape) n *= std::max<int64_t>(0, x);
    const int64_t lo = -(int64_t(1) << (stored_bits - 1)), hi = (int64_t(1) << (stored_bits - 1)) - 1;
    for (int64_t i = 0; i < n; ++i)
      if (data[i] < lo || data[i] > hi)
        throw std::logic_error(impl_->where(dataset) + ": value " + std::to_string(data[i]) + " does not fit int" +
                               std::to_string(stored_bits));
  }
  auto lock = h5::h5_lock();
  impl_->create(dataset, shape, Elem::i32, stored_bits, storage);
  impl_->write(dataset, 0, shape[0], data, Elem::i32);
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
  impl_->file.commit();
}

}  // namespace moba
