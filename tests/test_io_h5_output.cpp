// H5Output: datasets of any rank written whole or in runs of rows, attributes, and the
// temp-file + rename contract. Read back with the HDF5 C API.
#include "core/h5_output.h"

#include <cmath>
#include <limits>

#include "core/h5_input.h"
#include "tests/test_io_util.h"

using namespace moba;
using namespace moba::io_test;

namespace {

template <typename T>
std::vector<T> read_dataset(const std::string& path, const std::string& name, hid_t mem_type,
                            std::vector<hsize_t>* dims) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  REQUIRE(d >= 0);
  hid_t s = H5Dget_space(d);
  dims->assign(size_t(H5Sget_simple_extent_ndims(s)), 0);
  H5Sget_simple_extent_dims(s, dims->data(), nullptr);
  std::vector<T> out(size_t(H5Sget_simple_extent_npoints(s)));
  REQUIRE(H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) >= 0);
  H5Sclose(s);
  H5Dclose(d);
  H5Fclose(f);
  return out;
}

}  // namespace

TEST_CASE("H5Output: datasets, streaming rows and attributes", "[io][h5output]") {
  ScratchDir dir("out");
  const std::string path = dir.file("route.h5");
  std::vector<float> out(2 * 3 * 4);
  for (size_t i = 0; i < out.size(); ++i) out[i] = float(i) * 0.5f;
  {
    H5Output o(path);
    o.write_f32("/layers/0/output", {2, 3, 4}, out.data());
    o.create_i32("/layers/0/selected", {3, 5, 2});
    for (int h = 2; h >= 0; --h) {
      std::vector<int32_t> rows(5 * 2, h * 10);
      o.write_rows("/layers/0/selected", h, 1, rows.data());
    }
    o.write_f32("/coverage", {4}, out.data());
    o.set_string("/", "router", "moba");
    o.set_integer("/layers/0/selected", "block_size", 64);
    o.set_number("/layers/0", "sparsity", 0.75);
    o.set_string("/meta/run", "commit", "abc");  // group created on demand
    CHECK_THROWS_AS(o.write_rows("/layers/0/selected", 2, 2, out.data()), std::logic_error);
    CHECK_FALSE(fs::exists(path));
    o.commit();
  }
  REQUIRE(dir.entries() == std::vector<std::string>{"route.h5"});
  std::vector<hsize_t> dims;
  CHECK(read_dataset<float>(path, "/layers/0/output", H5T_NATIVE_FLOAT, &dims) == out);
  CHECK(dims == std::vector<hsize_t>{2, 3, 4});
  const auto sel = read_dataset<int32_t>(path, "/layers/0/selected", H5T_NATIVE_INT32, &dims);
  CHECK(dims == std::vector<hsize_t>{3, 5, 2});
  CHECK(sel[0] == 0);
  CHECK(sel[10] == 10);
  CHECK(sel[29] == 20);
  // The attributes read back through the dump reader's own path: open as a plain HDF5 file.
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  int64_t block = 0;
  hid_t a = H5Aopen_by_name(f, "/layers/0/selected", "block_size", H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(a >= 0);
  H5Aread(a, H5T_NATIVE_INT64, &block);
  H5Aclose(a);
  double sparsity = 0;
  a = H5Aopen_by_name(f, "/layers/0", "sparsity", H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(a >= 0);
  H5Aread(a, H5T_NATIVE_DOUBLE, &sparsity);
  H5Aclose(a);
  CHECK(H5Aexists_by_name(f, "/meta/run", "commit", H5P_DEFAULT) > 0);
  H5Fclose(f);
  CHECK(block == 64);
  CHECK(sparsity == 0.75);
}

TEST_CASE("H5Output: float64 tables read back bit for bit (H5Input read_f64 / read_f32)", "[io][h5output]") {
  ScratchDir dir("out_f64");
  const std::string path = dir.file("t.h5");
  // 3 x 700 doubles: past the compact layout's 4 KiB; NaN, -0, infinities and a value float32 rounds.
  std::vector<double> v(3 * 700);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 1.0 / 3.0 + double(i) * 1e-9;
  v[1] = std::numeric_limits<double>::quiet_NaN();
  v[2] = -0.0;
  v[3] = -std::numeric_limits<double>::infinity();
  const std::vector<double> small{0.1, 2.5};
  {
    H5Output o(path);
    o.write_f64("/h/summary", {3, 700}, v.data());
    o.write_f64("/h/small", {2}, small.data());
    CHECK_THROWS_AS(o.write_f64("/h/summary", {1}, small.data()), std::logic_error);  // written twice
    CHECK_THROWS_AS(o.write_f64("/h/none", {2}, nullptr), std::logic_error);
    CHECK_THROWS_AS(o.write_rows("/h/small", 0, 1, std::vector<float>{1.f}.data()), std::logic_error);
    o.commit();
  }
  const H5Input in(path);
  CHECK(in.dataset_info("/h/summary").dtype == "float64");
  std::vector<int64_t> shape;
  const std::vector<double> back = in.read_f64("/h/summary", &shape);
  CHECK(shape == std::vector<int64_t>{3, 700});
  REQUIRE(back.size() == v.size());
  CHECK(std::memcmp(back.data(), v.data(), v.size() * sizeof(double)) == 0);
  CHECK(in.read_f64("/h/small") == small);
  CHECK(in.read_f32("/h/small") == std::vector<float>{0.1f, 2.5f});  // converted by HDF5
  CHECK_THROWS(in.read_i32("/h/small"));
}

TEST_CASE("H5Output: uncommitted output leaves nothing behind", "[io][h5output]") {
  ScratchDir dir("out");
  const std::string path = dir.file("partial.h5");
  {
    H5Output o(path);
    const float x = 1.0f;
    o.write_f32("/x", {1}, &x);
    CHECK(dir.entries().size() == 1);
  }
  CHECK(dir.entries().empty());
  const std::string nowhere = dir.file("missing/dir/out.h5");
  expect_input_error<FileNotFoundError>([&] { H5Output o(nowhere); }, nowhere, "");
}
