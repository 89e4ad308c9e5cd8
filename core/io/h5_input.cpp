// H5Input (core/h5_input.h): a read-only, generic view of an HDF5 file on the C API.
#include "core/h5_input.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/errors.h"
#include "core/io/h5_util.h"

namespace moba {

namespace {

// The HDF5 superblock signature, at offset 0 or after a user block (512, 1024, 2048, ...).
constexpr unsigned char kSig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

bool has_hdf5_signature(const std::string& path, int64_t file_size) {
  std::ifstream f(path, std::ios::binary);
  for (int64_t off = 0; f && off + 8 <= file_size; off = off == 0 ? 512 : off * 2) {
    unsigned char buf[8] = {0};
    f.seekg(off);
    if (!f.read(reinterpret_cast<char*>(buf), 8)) return false;
    if (std::memcmp(buf, kSig, 8) == 0) return true;
  }
  return false;
}

std::string type_name(hid_t t) {
  const std::string bits = std::to_string(H5Tget_size(t) * 8);
  switch (H5Tget_class(t)) {
    case H5T_INTEGER: return (H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int") + bits;
    case H5T_FLOAT: return "float" + bits;
    case H5T_STRING: return "string";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    default: return "other";
  }
}

}  // namespace

struct H5Input::Impl {
  std::string path;
  h5::Id file;

  // Opens the object `name` (`what`: a group, a dataset, or either); throws naming file + object.
  h5::Id open_object(const std::string& name, const char* what) const {
    if (!h5::path_exists(file.get(), name)) throw MissingFieldError(path, name, std::string(what) + " is missing");
    h5::Id obj = h5::object_id(H5Oopen(file.get(), name.c_str(), H5P_DEFAULT));
    if (!obj) throw FormatError(path, name, "cannot open the object: corrupt file");
    return obj;
  }
  // Opens `name` as an object of HDF5 identifier type `want`.
  h5::Id open(const std::string& name, H5I_type_t want, const char* what) const {
    h5::Id obj = open_object(name, what);
    if (H5Iget_type(obj.get()) != want) throw FormatError(path, name, std::string("is not a ") + what);
    return obj;
  }

  // Names of the children of `group` that are objects of identifier type `want`.
  std::vector<std::string> list(const std::string& group, H5I_type_t want) const {
    auto lock = h5::h5_lock();
    h5::Id g = open(group, H5I_GROUP, "group");
    H5G_info_t ginfo;
    if (H5Gget_info(g.get(), &ginfo) < 0) throw FormatError(path, group, "cannot list the group: corrupt file");
    std::vector<std::string> out;
    for (hsize_t i = 0; i < ginfo.nlinks; ++i) {
      const ssize_t len = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
      if (len < 0) throw FormatError(path, group, "cannot list the group: corrupt file");
      std::string name(static_cast<size_t>(len) + 1, '\0');
      H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
      name.resize(static_cast<size_t>(len));
      h5::Id child = h5::object_id(H5Oopen(g.get(), name.c_str(), H5P_DEFAULT));
      if (child && H5Iget_type(child.get()) == want) out.push_back(name);
    }
    return out;
  }

  // Reads the whole dataset as `mem_type`, after checking its class is `want_class`.
  template <typename T>
  std::vector<T> read(const std::string& name, H5T_class_t want_class, hid_t mem_type, const char* mem_name,
                      std::vector<int64_t>* shape) const {
    auto lock = h5::h5_lock();
    h5::Id obj = open(name, H5I_DATASET, "dataset");
    h5::Id type = h5::type_id(H5Dget_type(obj.get()));
    h5::Id space = h5::space_id(H5Dget_space(obj.get()));
    if (!type || !space) throw FormatError(path, name, "cannot read the dataset header: corrupt file");
    if (H5Tget_class(type.get()) != want_class)
      throw DTypeError(path, name, "element type " + type_name(type.get()) + " cannot be read as " + mem_name);
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0) throw FormatError(path, name, "cannot read the dataspace: corrupt file");
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    const hssize_t n = H5Sget_simple_extent_npoints(space.get());
    if (n < 0) throw FormatError(path, name, "cannot read the dataspace: corrupt file");
    std::vector<T> out(static_cast<size_t>(n));
    if (n > 0 && H5Dread(obj.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
      throw FormatError(path, name, std::string("cannot read the values as ") + mem_name +
                                        " (truncated file, or values out of range)");
    if (shape) {
      shape->clear();
      for (hsize_t d : dims) shape->push_back(static_cast<int64_t>(d));
    }
    return out;
  }
};

H5Input::H5Input(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    throw FileNotFoundError(path, "", std::string("cannot open: ") + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw FileNotFoundError(path, "", "is a directory, not an HDF5 file");
  if (!has_hdf5_signature(path, static_cast<int64_t>(st.st_size)))
    throw FormatError(path, "", "not an HDF5 file (no HDF5 signature)");
  auto lock = h5::h5_lock();
  impl_->file = h5::file_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!impl_->file) throw FormatError(path, "", "cannot open as HDF5: the file is truncated or corrupt");
}

H5Input::~H5Input() {
  auto lock = h5::h5_lock();
  impl_->file.reset();
}

const std::string& H5Input::path() const { return impl_->path; }

bool H5Input::has_group(const std::string& group) const {
  auto lock = h5::h5_lock();
  if (!h5::path_exists(impl_->file.get(), group)) return false;
  h5::Id obj = h5::object_id(H5Oopen(impl_->file.get(), group.c_str(), H5P_DEFAULT));
  return obj && H5Iget_type(obj.get()) == H5I_GROUP;
}

bool H5Input::has_dataset(const std::string& dataset) const {
  auto lock = h5::h5_lock();
  if (!h5::path_exists(impl_->file.get(), dataset)) return false;
  h5::Id obj = h5::object_id(H5Oopen(impl_->file.get(), dataset.c_str(), H5P_DEFAULT));
  return obj && H5Iget_type(obj.get()) == H5I_DATASET;
}

std::vector<std::string> H5Input::list_groups(const std::string& group) const {
  return impl_->list(group, H5I_GROUP);
}

std::vector<std::string> H5Input::list_datasets(const std::string& group) const {
  return impl_->list(group, H5I_DATASET);
}

H5DatasetInfo H5Input::dataset_info(const std::string& dataset) const {
  auto lock = h5::h5_lock();
  h5::Id obj = impl_->open(dataset, H5I_DATASET, "dataset");
  h5::Id type = h5::type_id(H5Dget_type(obj.get()));
  h5::Id space = h5::space_id(H5Dget_space(obj.get()));
  if (!type || !space) throw FormatError(impl_->path, dataset, "cannot read the dataset header: corrupt file");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) throw FormatError(impl_->path, dataset, "cannot read the dataspace: corrupt file");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  H5DatasetInfo info;
  for (hsize_t d : dims) info.shape.push_back(static_cast<int64_t>(d));
  info.dtype = type_name(type.get());
  return info;
}

std::vector<float> H5Input::read_f32(const std::string& dataset, std::vector<int64_t>* shape) const {
  return impl_->read<float>(dataset, H5T_FLOAT, H5T_NATIVE_FLOAT, "float32", shape);
}

std::vector<double> H5Input::read_f64(const std::string& dataset, std::vector<int64_t>* shape) const {
  return impl_->read<double>(dataset, H5T_FLOAT, H5T_NATIVE_DOUBLE, "float64", shape);
}

std::vector<int32_t> H5Input::read_i32(const std::string& dataset, std::vector<int64_t>* shape) const {
  return impl_->read<int32_t>(dataset, H5T_INTEGER, H5T_NATIVE_INT32, "int32", shape);
}

std::map<std::string, std::string> H5Input::attributes(const std::string& object) const {
  auto lock = h5::h5_lock();
  h5::Id obj = impl_->open_object(object, "group or dataset");
  std::map<std::string, std::string> out;
  for (const std::string& name : h5::attr_names(obj.get())) {
    h5::AttrValue v;
    if (h5::read_attr(obj.get(), name, &v)) out[name] = v.text;
  }
  return out;
}

std::optional<std::string> H5Input::attribute(const std::string& object, const std::string& name) const {
  auto lock = h5::h5_lock();
  h5::Id obj = impl_->open_object(object, "group or dataset");
  h5::AttrValue v;
  if (!h5::read_attr(obj.get(), name, &v)) return std::nullopt;
  return v.text;
}

std::optional<double> H5Input::attribute_number(const std::string& object, const std::string& name) const {
  auto lock = h5::h5_lock();
  h5::Id obj = impl_->open_object(object, "group or dataset");
  h5::AttrValue v;
  if (!h5::read_attr(obj.get(), name, &v)) return std::nullopt;
  if (v.kind == h5::AttrValue::Kind::integer || v.kind == h5::AttrValue::Kind::real) return v.r;
  return std::nullopt;
}

}  // namespace moba
