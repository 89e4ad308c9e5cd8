#pragma once
// A generic, read-only view of an HDF5 file (results files such as analyze's analysis.h5;
// dumps have their own schema reader in core/dump.h). HDF5 stays inside core/io; callers see
// only paths, shapes, std::vector and text.
//
// Contract:
// - Paths are absolute ("/layers/0/heads/1"); "/" is the root group.
// - Listings are in name order as HDF5 stores it (byte order: "10" < "2"); callers that want
//   numeric order sort themselves.
// - read_f32 / read_f64 read any floating-point dataset (converted to float32 / float64),
//   read_i32 any integer dataset that fits int32 (HDF5 converts; out-of-range values are an
//   error). The whole dataset is read, row-major, with its shape returned beside it.
// - Attributes are returned as text (numbers in shortest round-trip form, arrays as
//   "[a, b]"); attribute_number() gives the numeric value of a scalar numeric attribute.
// - Every member call takes the process-wide HDF5 lock (core/io/h5_util.h): one object may be
//   used from any thread, one call at a time per object.
// Errors (core/errors.h), each naming the file and the dataset or group:
//   FileNotFoundError  the file does not exist or cannot be read
//   FormatError        the bytes are not HDF5 (or the object is not what was asked for)
//   MissingFieldError  a group, dataset or attribute is absent
//   DTypeError         read_f32 on an integer dataset, read_i32 on a float one, etc.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moba {

// Shape and element class of one dataset.
struct H5DatasetInfo {
  std::vector<int64_t> shape;
  std::string dtype;  // "float32", "float64", "int32", "uint8", "string", ...
};

class H5Input {
 public:
  explicit H5Input(const std::string& path);
  ~H5Input();
  H5Input(const H5Input&) = delete;
  H5Input& operator=(const H5Input&) = delete;

  const std::string& path() const;

  bool has_group(const std::string& group) const;
  bool has_dataset(const std::string& dataset) const;
  // Names (not paths) of the child groups / datasets of `group`. Throws MissingFieldError
  // when `group` is absent or not a group.
  std::vector<std::string> list_groups(const std::string& group) const;
  std::vector<std::string> list_datasets(const std::string& group) const;

  H5DatasetInfo dataset_info(const std::string& dataset) const;
  std::vector<float> read_f32(const std::string& dataset, std::vector<int64_t>* shape = nullptr) const;
  std::vector<double> read_f64(const std::string& dataset, std::vector<int64_t>* shape = nullptr) const;
  std::vector<int32_t> read_i32(const std::string& dataset, std::vector<int64_t>* shape = nullptr) const;

  // All attributes of the group or dataset `object`, as text, by name.
  std::map<std::string, std::string> attributes(const std::string& object) const;
  // One attribute as text; nullopt when absent.
  std::optional<std::string> attribute(const std::string& object, const std::string& name) const;
  // A scalar integer or floating-point attribute; nullopt when absent or not numeric.
  std::optional<double> attribute_number(const std::string& object, const std::string& name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moba
