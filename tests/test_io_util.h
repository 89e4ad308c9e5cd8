#pragma once
// Shared helpers of the dump I/O tests: a scratch directory, seeded tensors, a minimal
// HDF5 builder on the C API (to make files DumpWriter would never write: odd encodings,
// layouts and malformed schemas), a safetensors byte builder, and a checker that an
// InputError names the file and the field.
#include <catch2/catch.hpp>
#include <hdf5.h>
#include <unistd.h>

#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/dump.h"
#include "core/errors.h"
#include "core/tensor.h"

namespace moba::io_test {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with everything in it.
struct ScratchDir {
  fs::path dir;
  explicit ScratchDir(const std::string& tag) {
    static int counter = 0;
    dir = fs::temp_directory_path() /
          ("moba_io_" + tag + "_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string file(const std::string& name) const { return (dir / name).string(); }
  // Names of everything in the directory (to check nothing was left behind).
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    return out;
  }
};

// Exit status of a shell command (-1 when it did not exit normally).
inline int exit_status(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// A whole text file ("" when it cannot be read).
inline std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

inline Tensor3 random_tensor(int64_t heads, int64_t tokens, int64_t dim, uint32_t seed, DType round = DType::f32) {
  Tensor3 t(heads, tokens, dim, round);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& x : t.data) x = round_to(round, nd(rng));
  return t;
}

// Writes a schema-v1 dump with one or more layers of random q/k/v.
inline void write_dump(const std::string& path, int n_layers, int64_t n_q_heads, int64_t n_kv_heads,
                       int64_t n_tokens, int64_t head_dim, DType stored, uint32_t seed = 1) {
  DumpMeta meta;
  meta.model = "test-model";
  DumpWriter w(path, meta);
  for (int l = 0; l < n_layers; ++l) {
    w.write_tensor(l, TensorKind::q, random_tensor(n_q_heads, n_tokens, head_dim, seed + 3 * l, stored), stored);
    w.write_tensor(l, TensorKind::k, random_tensor(n_kv_heads, n_tokens, head_dim, seed + 3 * l + 1, stored), stored);
    w.write_tensor(l, TensorKind::v, random_tensor(n_kv_heads, n_tokens, head_dim, seed + 3 * l + 2, stored), stored);
  }
  w.commit();
}

// Minimal HDF5 file builder on the C API. Intermediate groups are created on demand.
class H5Builder {
 public:
  explicit H5Builder(const std::string& path) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    file_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(file_ >= 0);
  }
  ~H5Builder() { H5Fclose(file_); }
  H5Builder(const H5Builder&) = delete;
  H5Builder& operator=(const H5Builder&) = delete;

  // The schema's root attributes (version 1, model, rope_applied).
  H5Builder& schema_root(const std::string& model = "m", int64_t rope = 1) {
    attr_int("/", "moba_dump_version", 1);
    attr_str("/", "model", model);
    attr_int("/", "rope_applied", rope);
    return *this;
  }
  H5Builder& attr_int(const std::string& obj, const std::string& name, int64_t v) {
    write_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
    return *this;
  }
  H5Builder& attr_double(const std::string& obj, const std::string& name, double v) {
    write_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
    return *this;
  }
  H5Builder& attr_str(const std::string& obj, const std::string& name, const std::string& v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, v.size() + 1);  // fixed-length, null-terminated (h5py writes vlen; both are read)
    write_attr(obj, name, t, t, v.c_str());
    H5Tclose(t);
    return *this;
  }
  H5Builder& group(const std::string& path) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2(file_, path.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(g >= 0);
    H5Gclose(g);
    H5Pclose(lcpl);
    return *this;
  }
  // Dataset at `path` with file type `file_type`, written from `data` of memory type `mem_type`.
  H5Builder& dataset(const std::string& path, const std::vector<hsize_t>& dims, hid_t file_type, hid_t mem_type,
                     const void* data) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t space = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
    hid_t d = H5Dcreate2(file_, path.c_str(), file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(d >= 0);
    REQUIRE(H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(lcpl);
    return *this;
  }
  template <class Alloc>
  H5Builder& f32(const std::string& path, const std::vector<hsize_t>& dims, const std::vector<float, Alloc>& data) {
    REQUIRE(data.size() == count(dims));
    return dataset(path, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data.data());
  }
  // q, k, v of one layer, float32, zero-filled except as given.
  H5Builder& layer_f32(int layer, std::vector<hsize_t> q, std::vector<hsize_t> k, std::vector<hsize_t> v) {
    const std::string g = "/layers/" + std::to_string(layer) + "/";
    f32(g + "q", q, std::vector<float>(count(q), 0.5f));
    f32(g + "k", k, std::vector<float>(count(k), 0.25f));
    f32(g + "v", v, std::vector<float>(count(v), 1.0f));
    return *this;
  }
  static size_t count(const std::vector<hsize_t>& dims) {
    size_t n = 1;
    for (hsize_t d : dims) n *= size_t(d);
    return n;
  }
  hid_t id() const { return file_; }

 private:
  void write_attr(const std::string& obj, const std::string& name, hid_t ft, hid_t mt, const void* v) {
    hid_t o = H5Oopen(file_, obj.c_str(), H5P_DEFAULT);
    REQUIRE(o >= 0);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name.c_str(), ft, space, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(a >= 0);
    REQUIRE(H5Awrite(a, mt, v) >= 0);
    H5Aclose(a);
    H5Sclose(space);
    H5Oclose(o);
  }
  hid_t file_ = -1;
};

// One safetensors tensor entry, with its bytes.
struct StEntry {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
  // When set, written verbatim as data_offsets instead of the computed ones.
  bool custom_offsets = false;
  uint64_t begin = 0, end = 0;
};

template <class Alloc>
inline std::vector<unsigned char> f32_bytes(const std::vector<float, Alloc>& v) {
  std::vector<unsigned char> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}
inline std::vector<unsigned char> u16_bytes(const std::vector<uint16_t>& v) {
  std::vector<unsigned char> b(v.size() * 2);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Bytes of a safetensors file: entries laid out back to back in order; `metadata` is the
// raw JSON of __metadata__ ("" for none). header_len_override replaces the length prefix.
inline std::vector<unsigned char> safetensors_bytes(const std::vector<StEntry>& entries, const std::string& metadata,
                                                    uint64_t header_len_override = 0) {
  std::string header = "{";
  if (!metadata.empty()) header += "\"__metadata__\":" + metadata;
  uint64_t offset = 0;
  std::vector<unsigned char> data;
  for (const auto& e : entries) {
    if (header.size() > 1) header += ",";
    header += "\"" + e.name + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":[";
    for (size_t i = 0; i < e.shape.size(); ++i) header += (i ? "," : "") + std::to_string(e.shape[i]);
    const uint64_t b = e.custom_offsets ? e.begin : offset, en = e.custom_offsets ? e.end : offset + e.bytes.size();
    header += "],\"data_offsets\":[" + std::to_string(b) + "," + std::to_string(en) + "]}";
    offset += e.bytes.size();
    data.insert(data.end(), e.bytes.begin(), e.bytes.end());
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  const uint64_t n = header_len_override ? header_len_override : header.size();
  std::vector<unsigned char> out(8);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(n >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

inline void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline const char* kStMeta = R"({"moba_dump_version":"1","model":"st-model","rope_applied":"1"})";

// Runs f, which must throw E whose file() is `file`, whose field() contains `field`, and
// whose message names both (and contains `problem`, when given).
template <typename E, typename F>
void expect_input_error(F&& f, const std::string& file, const std::string& field, const std::string& problem = "") {
  try {
    f();
    FAIL("no exception; expected one naming " << file << " and " << field);
  } catch (const E& e) {
    INFO("message: " << e.what());
    CHECK(e.file() == file);
    CHECK_THAT(e.field(), Catch::Contains(field));
    CHECK_THAT(std::string(e.what()), Catch::Contains(file) && Catch::Contains(field));
    if (!problem.empty()) CHECK_THAT(std::string(e.what()), Catch::Contains(problem));
  } catch (const Catch::TestFailureException&) {
    throw;
  } catch (const std::exception& e) {
    FAIL("wrong exception type: " << e.what());
  }
}

// Opens the dump and reads every tensor of every layer (plus planted and token_ids).
inline void open_and_read_all(const std::string& path) {
  auto r = open_dump(path);
  for (const auto& l : r->info().layers) {
    r->read(l.index, TensorKind::q);
    r->read(l.index, TensorKind::k);
    r->read(l.index, TensorKind::v);
    if (l.has_o) r->read(l.index, TensorKind::o);
    r->read_planted(l.index);
  }
  r->read_token_ids();
}

}  // namespace moba::io_test
