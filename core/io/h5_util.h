#pragma once
// Private to core/io: RAII handles and small helpers around the HDF5 C API.
//
// Contracts:
// - Every public entry point that calls HDF5 holds h5_lock() for the duration of the call:
//   Debian's HDF5 is the non-thread-safe build, so all HDF5 calls in the process are
//   serialised by one recursive mutex. Readers and writers may then be used from any thread
//   (one object per thread, or external locking for a shared object).
// - HDF5's automatic error-stack printing is switched off (h5_quiet) before any HDF5 call;
//   failures come back as negative return values and are turned into the typed exceptions of
//   core/errors.h by the caller, naming file, dataset and problem.
#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace moba::h5 {

// Locks the process-wide HDF5 mutex and silences HDF5's error printing.
std::unique_lock<std::recursive_mutex> h5_lock();

// Owns one HDF5 identifier; closes it with the matching H5?close on destruction.
class Id {
 public:
  using CloseFn = herr_t (*)(hid_t);
  Id() = default;
  Id(hid_t id, CloseFn close) : id_(id), close_(close) {}
  ~Id() { reset(); }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  Id(Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Id& operator=(Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = -1;
    }
    return *this;
  }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  explicit operator bool() const { return valid(); }
  void reset();
  // Gives up ownership without closing.
  hid_t release() {
    const hid_t id = id_;
    id_ = -1;
    return id;
  }

 private:
  hid_t id_ = -1;
  CloseFn close_ = nullptr;
};

inline Id file_id(hid_t id) { return Id(id, H5Fclose); }
inline Id group_id(hid_t id) { return Id(id, H5Gclose); }
inline Id dataset_id(hid_t id) { return Id(id, H5Dclose); }
inline Id attr_id(hid_t id) { return Id(id, H5Aclose); }
inline Id type_id(hid_t id) { return Id(id, H5Tclose); }
inline Id space_id(hid_t id) { return Id(id, H5Sclose); }
inline Id plist_id(hid_t id) { return Id(id, H5Pclose); }
inline Id object_id(hid_t id) { return Id(id, H5Oclose); }

// True when `path` (absolute, e.g. "/layers/0/q") exists, checking each component in turn.
bool path_exists(hid_t file, const std::string& path);

// Value of a scalar (or one-element) attribute.
struct AttrValue {
  enum class Kind { integer, real, text, other } kind = Kind::other;
  int64_t i = 0;
  double r = 0.0;
  std::string text;      // for text; also the rendering of every kind (arrays as "[a, b]")
};
// Reads attribute `name` of object `obj`. Returns false when absent. Throws nothing on odd
// types: kind == other, with a description in text.
bool read_attr(hid_t obj, const std::string& name, AttrValue* out);
// Names of all attributes of `obj`, in name order.
std::vector<std::string> attr_names(hid_t obj);

// Creates a UTF-8 variable-length string type (as h5py writes str attributes).
Id make_vlen_string_type();
// The IEEE half-precision type, as h5py and numpy define it (little-endian).
Id make_f16_type();

// Writes scalar attributes on obj (replacing any with the same name). Return false on failure.
bool write_attr_string(hid_t obj, const std::string& name, const std::string& value);
bool write_attr_int(hid_t obj, const std::string& name, int64_t value);
bool write_attr_double(hid_t obj, const std::string& name, double value);

// Opens group `path`, creating it and any missing parents. Returns an invalid Id on failure.
Id require_group(hid_t file, const std::string& path);
// A new group `name` in `parent`, with require_group's creation properties.
Id create_group(hid_t parent, const std::string& name);

// Temp-file name beside `path` for atomic writes: "<path>.tmp-<pid>-<n>".
std::string temp_path_for(const std::string& path);

// Throws OutputError "WHAT: write failed (disk full?)" and notes the failure for
// moba::hdf5_write_failed (core/h5_output.h).
[[noreturn]] void throw_write_failure(const std::string& what);

}  // namespace moba::h5

namespace moba::h5 {

// An HDF5 file created at a temporary name beside `target` and renamed over it by commit().
// Destroyed uncommitted, it closes and removes the temporary file, so a failed or
// interrupted write leaves nothing behind. Callers hold h5_lock() around every member call.
class TempFile {
 public:
  // Throws FileNotFoundError naming target when the temporary file cannot be created.
  explicit TempFile(const std::string& target);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  hid_t get() const { return file_.get(); }
  const std::string& target() const { return target_; }
  bool committed() const { return committed_; }
  // Flushes, closes and renames; throws std::runtime_error naming target on failure (the
  // temporary file is then removed).
  void commit();

 private:
  std::string target_, temp_;
  Id file_;
  bool committed_ = false;
};

}  // namespace moba::h5
