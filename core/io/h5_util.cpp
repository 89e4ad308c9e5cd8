#include "core/io/h5_util.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "core/errors.h"
#include "core/interrupt.h"
#include "core/json_writer.h"

namespace moba::h5 {

std::unique_lock<std::recursive_mutex> h5_lock() {
  static std::recursive_mutex mutex;
  std::unique_lock<std::recursive_mutex> lock(mutex);
  // Idempotent and cheap; done under the lock so it happens before any other HDF5 call.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  return lock;
}

void Id::reset() {
  if (id_ >= 0 && close_) close_(id_);
  id_ = -1;
}

bool path_exists(hid_t file, const std::string& path) {
  if (path.empty() || path == "/") return true;
  size_t pos = 0;
  while (pos != std::string::npos) {
    const size_t next = path.find('/', pos + 1);
    const std::string prefix = path.substr(0, next);
    if (!prefix.empty() && prefix != "/") {
      if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    }
    pos = next;
  }
  return H5Oexists_by_name(file, path.c_str(), H5P_DEFAULT) > 0;
}

namespace {

struct NameCollector {
  std::vector<std::string> names;
};

herr_t collect_attr_name(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<NameCollector*>(data)->names.emplace_back(name);
  return 0;
}

// Reads n string elements of attribute a (fixed or variable length) into out.
bool read_string_attr(hid_t a, hid_t file_type, hsize_t n, std::vector<std::string>* out) {
  if (H5Tis_variable_str(file_type) > 0) {
    Id mem = type_id(H5Tcopy(H5T_C_S1));
    if (!mem || H5Tset_size(mem.get(), H5T_VARIABLE) < 0) return false;
    H5Tset_cset(mem.get(), H5Tget_cset(file_type));
    std::vector<char*> ptrs(n, nullptr);
    if (H5Aread(a, mem.get(), ptrs.data()) < 0) return false;
    for (char* p : ptrs) {
      out->emplace_back(p ? p : "");
      H5free_memory(p);
    }
    return true;
  }
  const size_t size = H5Tget_size(file_type);
  if (size == 0) return false;
  Id mem = type_id(H5Tcopy(file_type));
  std::vector<char> buf(size * n + 1, '\0');
  if (!mem || H5Aread(a, mem.get(), buf.data()) < 0) return false;
  for (hsize_t i = 0; i < n; ++i) {
    std::string s(buf.data() + i * size, size);
    const size_t nul = s.find('\0');
    if (nul != std::string::npos) s.resize(nul);
    while (!s.empty() && s.back() == ' ' && H5Tget_strpad(file_type) == H5T_STR_SPACEPAD) s.pop_back();
    out->push_back(s);
  }
  return true;
}

std::string join(const std::vector<std::string>& items) {
  if (items.size() == 1) return items[0];
  std::string s = "[";
  for (size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + items[i];
  return s + "]";
}

}  // namespace

std::vector<std::string> attr_names(hid_t obj) {
  NameCollector c;
  hsize_t idx = 0;
  H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr_name, &c);
  return c.names;
}

bool read_attr(hid_t obj, const std::string& name, AttrValue* out) {
  *out = AttrValue{};
  if (H5Aexists(obj, name.c_str()) <= 0) return false;
  Id a = attr_id(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  if (!a) return false;
  Id ft = type_id(H5Aget_type(a.get()));
  Id space = space_id(H5Aget_space(a.get()));
  if (!ft || !space) {
    out->text = "<unreadable>";
    return true;
  }
  const hssize_t n_signed = H5Sget_simple_extent_npoints(space.get());
  const H5T_class_t cls = H5Tget_class(ft.get());
  if (n_signed <= 0 || n_signed > 4096) {
    out->text = n_signed <= 0 ? "<empty>" : "<array of " + std::to_string(n_signed) + ">";
    return true;
  }
  const hsize_t n = static_cast<hsize_t>(n_signed);
  std::vector<std::string> items;
  if (cls == H5T_STRING) {
    if (!read_string_attr(a.get(), ft.get(), n, &items)) {
      out->text = "<unreadable string>";
      return true;
    }
    out->kind = AttrValue::Kind::text;
    out->text = join(items);
    return true;
  }
  if (cls == H5T_INTEGER || cls == H5T_ENUM) {
    // Enums (h5py's bool) are read through their integer base type.
    Id base = type_id(cls == H5T_ENUM ? H5Tget_super(ft.get()) : H5Tcopy(ft.get()));
    const bool is_signed = base && H5Tget_sign(base.get()) == H5T_SGN_2;
    std::vector<int64_t> iv(n);
    std::vector<uint64_t> uv(n);
    herr_t status;
    if (cls == H5T_ENUM) {
      // Read raw enum values with the native form of its base, then widen.
      Id native = type_id(H5Tget_native_type(ft.get(), H5T_DIR_ASCEND));
      const size_t sz = native ? H5Tget_size(native.get()) : 0;
      std::vector<unsigned char> raw(sz * n);
      status = (sz == 0 || sz > 8) ? -1 : H5Aread(a.get(), native.get(), raw.data());
      for (hsize_t i = 0; status >= 0 && i < n; ++i) {
        int64_t v = 0;
        if (sz == 1) v = is_signed ? int64_t(int8_t(raw[i])) : int64_t(raw[i]);
        else if (sz == 2) { int16_t s; uint16_t u; std::memcpy(&s, &raw[i * 2], 2); std::memcpy(&u, &raw[i * 2], 2); v = is_signed ? s : u; }
        else if (sz == 4) { int32_t s; uint32_t u; std::memcpy(&s, &raw[i * 4], 4); std::memcpy(&u, &raw[i * 4], 4); v = is_signed ? s : u; }
        else { std::memcpy(&v, &raw[i * 8], 8); }
        iv[i] = v;
      }
    } else if (is_signed) {
      status = H5Aread(a.get(), H5T_NATIVE_INT64, iv.data());
    } else {
      status = H5Aread(a.get(), H5T_NATIVE_UINT64, uv.data());
      for (hsize_t i = 0; i < n; ++i) iv[i] = static_cast<int64_t>(uv[i]);
    }
    if (status < 0) {
      out->text = "<unreadable integer>";
      return true;
    }
    for (hsize_t i = 0; i < n; ++i)
      items.push_back(!is_signed && cls == H5T_INTEGER ? std::to_string(uv[i]) : std::to_string(iv[i]));
    out->kind = n == 1 ? AttrValue::Kind::integer : AttrValue::Kind::other;
    out->i = iv[0];
    out->r = static_cast<double>(iv[0]);
    out->text = join(items);
    return true;
  }
  if (cls == H5T_FLOAT) {
    std::vector<double> dv(n);
    if (H5Aread(a.get(), H5T_NATIVE_DOUBLE, dv.data()) < 0) {
      out->text = "<unreadable float>";
      return true;
    }
    for (double d : dv) items.push_back(format_shortest(d));
    out->kind = n == 1 ? AttrValue::Kind::real : AttrValue::Kind::other;
    out->r = dv[0];
    out->text = join(items);
    return true;
  }
  out->text = "<unsupported attribute type>";
  return true;
}

Id make_vlen_string_type() {
  Id t = type_id(H5Tcopy(H5T_C_S1));
  if (!t || H5Tset_size(t.get(), H5T_VARIABLE) < 0 || H5Tset_cset(t.get(), H5T_CSET_UTF8) < 0) return Id();
  return t;
}

Id make_f16_type() {
  // numpy/h5py's float16: sign bit 15, exponent bits 10..14 (bias 15), mantissa bits 0..9.
  Id t = type_id(H5Tcopy(H5T_IEEE_F32LE));
  if (!t || H5Tset_fields(t.get(), 15, 10, 5, 0, 10) < 0 || H5Tset_size(t.get(), 2) < 0 ||
      H5Tset_ebias(t.get(), 15) < 0)
    return Id();
  return t;
}

static bool write_attr_raw(hid_t obj, const std::string& name, hid_t file_type, hid_t mem_type,
                           const void* value) {
  if (H5Aexists(obj, name.c_str()) > 0 && H5Adelete(obj, name.c_str()) < 0) return false;
  Id space = space_id(H5Screate(H5S_SCALAR));
  if (!space) return false;
  Id a = attr_id(H5Acreate2(obj, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  return a && H5Awrite(a.get(), mem_type, value) >= 0;
}

bool write_attr_string(hid_t obj, const std::string& name, const std::string& value) {
  Id t = make_vlen_string_type();
  const char* p = value.c_str();
  return t && write_attr_raw(obj, name, t.get(), t.get(), &p);
}

bool write_attr_int(hid_t obj, const std::string& name, int64_t value) {
  return write_attr_raw(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

bool write_attr_double(hid_t obj, const std::string& name, double value) {
  return write_attr_raw(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

namespace {
// Group creation properties: attributes stay in the object header up to 64 of them (HDF5
// moves more than 8 to a fractal heap + B-tree by default: several times slower to write; the
// same to readers).
Id group_create_plist() {
  Id gcpl = plist_id(H5Pcreate(H5P_GROUP_CREATE));
  if (!gcpl || H5Pset_attr_phase_change(gcpl.get(), 64, 48) < 0) return Id();
  return gcpl;
}
}  // namespace

Id create_group(hid_t parent, const std::string& name) {
  Id gcpl = group_create_plist();
  if (!gcpl) return Id();
  return group_id(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT));
}

Id require_group(hid_t file, const std::string& path) {
  if (path.empty() || path == "/") return group_id(H5Gopen2(file, "/", H5P_DEFAULT));
  if (H5Lexists(file, path.c_str(), H5P_DEFAULT) > 0) return group_id(H5Gopen2(file, path.c_str(), H5P_DEFAULT));
  Id lcpl = plist_id(H5Pcreate(H5P_LINK_CREATE));
  if (!lcpl || H5Pset_create_intermediate_group(lcpl.get(), 1) < 0) return Id();
  Id gcpl = group_create_plist();
  if (!gcpl) return Id();
  return group_id(H5Gcreate2(file, path.c_str(), lcpl.get(), gcpl.get(), H5P_DEFAULT));
}

std::string temp_path_for(const std::string& path) {
  static std::atomic<int> counter{0};
  remove_stale_temporaries(path);
  return path + ".tmp-" + std::to_string(static_cast<long>(getpid())) + "-" + std::to_string(counter++);
}

}  // namespace moba::h5

namespace moba::h5 {

TempFile::TempFile(const std::string& target) : target_(target), temp_(temp_path_for(target)) {
  // Strong close degree: H5Fclose closes every object still open, so the rename and the
  // removal below never race a half-open file.
  Id fapl = plist_id(H5Pcreate(H5P_FILE_ACCESS));
  if (fapl) H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
  file_ = file_id(H5Fcreate(temp_.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl ? fapl.get() : H5P_DEFAULT));
  if (!file_) {
    const int err = errno;
    std::remove(temp_.c_str());
    throw FileNotFoundError(target, "", std::string("cannot create the output file (") + temp_ + "): " +
                                            (err ? std::strerror(err) : "HDF5 create failed"));
  }
}

namespace {
std::atomic<bool> g_write_failed{false};
}  // namespace

void throw_write_failure(const std::string& what) {
  g_write_failed.store(true);
  throw OutputError(what + ": write failed (disk full?)");
}

TempFile::~TempFile() {
  if (committed_) return;
  file_.reset();
  std::remove(temp_.c_str());
}

void TempFile::commit() {
  if (committed_) throw std::logic_error(target_ + ": output already committed");
  const bool flushed = H5Fflush(file_.get(), H5F_SCOPE_GLOBAL) >= 0;
  const bool closed = H5Fclose(file_.release()) >= 0;
  // On failure the destructor removes the temporary file.
  if (!flushed || !closed) throw_write_failure(target_);
  if (std::rename(temp_.c_str(), target_.c_str()) != 0) {
    const int err = errno;
    throw std::runtime_error(target_ + ": cannot rename " + temp_ + " over it: " + std::strerror(err));
  }
  committed_ = true;
}

}  // namespace moba::h5

namespace moba {
bool hdf5_write_failed() { return h5::g_write_failed.load(); }
}  // namespace moba
