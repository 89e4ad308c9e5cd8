// Dump I/O round trips: DumpWriter -> open_dump in every stored dtype, GQA, head slices,
// metadata; files built with the HDF5 C API in the encodings DumpWriter never writes
// (thd layout, bf16 as opaque or as a 16-bit float type, big-endian); the atomic-write
// contract (nothing at the target until commit, nothing left after a failure).
#include "tests/test_io_util.h"

#include <cmath>

#include "core/io/reader_common.h"

using namespace moba;
using namespace moba::io_test;

static void require_equal(const Tensor3& a, const Tensor3& b) {
  REQUIRE(a.n_heads == b.n_heads);
  REQUIRE(a.n_tokens == b.n_tokens);
  REQUIRE(a.head_dim == b.head_dim);
  REQUIRE(std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0);
}

TEST_CASE("io: DumpWriter round trip is exact in each stored dtype", "[io]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  INFO("dtype " << dtype_name(dtype));
  ScratchDir dir("rt");
  const std::string path = dir.file("d.h5");
  // 5000 tokens x 256 dims: several chunks per head and several reads per head.
  const Tensor3 q = random_tensor(4, 5000, 256, 11, dtype), k = random_tensor(2, 5000, 256, 12, dtype),
                v = random_tensor(2, 5000, 256, 13, dtype);
  {
    DumpMeta meta;
    meta.model = "rt-model";
    meta.source = "unit test";
    meta.rope_applied = false;
    meta.numeric_attributes["synth.delta_mu"] = 0.25;
    meta.string_attributes["note"] = "héllo";
    DumpWriter w(path, meta);
    w.write_tensor(3, TensorKind::q, q, dtype);
    w.write_tensor(3, TensorKind::k, k, dtype);
    w.write_tensor(3, TensorKind::v, v, dtype);
    w.commit();
  }
  auto r = open_dump(path);
  const DumpInfo& info = r->info();
  CHECK(info.format == "hdf5");
  CHECK(info.model == "rt-model");
  CHECK(info.source == "unit test");
  CHECK_FALSE(info.rope_applied);
  CHECK(info.attributes.at("synth.delta_mu") == "0.25");
  CHECK(info.attributes.at("note") == "héllo");
  REQUIRE(info.layers.size() == 1);
  const LayerInfo& l = info.layer(3);
  CHECK(l.n_q_heads == 4);
  CHECK(l.n_kv_heads == 2);
  CHECK(l.n_tokens == 5000);
  CHECK(l.head_dim == 256);
  CHECK(l.dtype == dtype);
  const Tensor3 rq = r->read(3, TensorKind::q);
  CHECK(rq.dtype == dtype);
  require_equal(rq, q);
  require_equal(r->read(3, TensorKind::k), k);
  require_equal(r->read(3, TensorKind::v), v);
  CHECK(r->read_token_ids().empty());
  CHECK(r->read_planted(3).empty());
}

TEST_CASE("io: narrowing on write rounds to nearest even", "[io]") {
  ScratchDir dir("narrow");
  const Tensor3 q = random_tensor(2, 33, 8, 5), k = random_tensor(1, 33, 8, 6), v = random_tensor(1, 33, 8, 7);
  for (DType dtype : {DType::f16, DType::bf16}) {
    const std::string path = dir.file(std::string("n_") + dtype_name(dtype) + ".h5");
    DumpWriter w(path, DumpMeta{});
    w.write_tensor(0, TensorKind::q, q, dtype);
    w.write_tensor(0, TensorKind::k, k, dtype);
    w.write_tensor(0, TensorKind::v, v, dtype);
    w.commit();
    const Tensor3 back = open_dump(path)->read(0, TensorKind::q);
    for (size_t i = 0; i < q.data.size(); ++i) REQUIRE(back.data[i] == round_to(dtype, q.data[i]));
  }
}

TEST_CASE("io: GQA head slices, o, planted and token_ids", "[io]") {
  ScratchDir dir("gqa");
  const std::string path = dir.file("g.h5");
  const Tensor3 q = random_tensor(8, 70, 48, 1), k = random_tensor(2, 70, 48, 2), v = random_tensor(2, 70, 48, 3),
                o = random_tensor(8, 70, 48, 4);
  std::vector<int32_t> planted(8 * 70), ids(70);
  for (size_t i = 0; i < planted.size(); ++i) planted[i] = static_cast<int32_t>(i % 71) - 1;
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(1000 + i);
  {
    DumpWriter w(dir.file("g.h5"), DumpMeta{});
    for (int layer : {0, 2}) {
      w.write_tensor(layer, TensorKind::q, q, DType::f32);
      w.write_tensor(layer, TensorKind::k, k, DType::f32);
      w.write_tensor(layer, TensorKind::v, v, DType::f32);
    }
    w.write_tensor(2, TensorKind::o, o, DType::f32);
    w.write_planted(2, 8, 70, planted);
    w.write_token_ids(ids);
    w.commit();
  }
  auto r = open_dump(path);
  REQUIRE(r->info().layers.size() == 2);
  CHECK(r->info().layers[0].index == 0);
  CHECK(r->info().layers[1].index == 2);
  CHECK_FALSE(r->info().layer(0).has_o);
  CHECK(r->info().layer(2).has_o);
  CHECK(r->info().layer(2).has_planted);
  CHECK(r->info().has_token_ids);
  const Tensor3 part = r->read(2, TensorKind::q, 3, 2);  // heads 3, 4
  REQUIRE(part.n_heads == 2);
  for (int64_t h = 0; h < 2; ++h)
    REQUIRE(std::memcmp(part.row(h, 0), q.row(3 + h, 0), 70 * 48 * sizeof(float)) == 0);
  require_equal(r->read(2, TensorKind::k, 1, 1), [&] {
    Tensor3 t(1, 70, 48);
    std::memcpy(t.data.data(), k.row(1, 0), 70 * 48 * sizeof(float));
    return t;
  }());
  require_equal(r->read(2, TensorKind::o), o);
  CHECK(r->read_planted(2) == planted);
  CHECK(r->read_token_ids() == ids);
  CHECK_THROWS_AS(r->read(2, TensorKind::k, 1, 2), UsageError);  // past n_kv_heads
  CHECK_THROWS_AS(r->read(0, TensorKind::o), MissingFieldError);
}

// read_into refills a buffer: a larger read into a smaller buffer grows it, a smaller one
// into a larger buffer keeps its allocation (the analysis reads group after group into the
// same buffers); either way the values and shape are those of a fresh read.
TEST_CASE("io: read_into reuses the buffer and reads what read does", "[io]") {
  ScratchDir dir("reuse");
  const Tensor3 q = random_tensor(6, 40, 16, 41, DType::bf16), k = random_tensor(3, 40, 16, 42, DType::bf16),
                v = random_tensor(3, 40, 16, 43, DType::bf16);
  {
    DumpWriter w(dir.file("b.h5"), DumpMeta{});
    w.write_tensor(0, TensorKind::q, q, DType::bf16);
    w.write_tensor(0, TensorKind::k, k, DType::bf16);
    w.write_tensor(0, TensorKind::v, v, DType::bf16);
    w.commit();
  }
  auto r = open_dump(dir.file("b.h5"));
  Tensor3 buf;
  r->read_into(0, TensorKind::q, 1, 4, &buf);  // heads 1..4
  require_equal(buf, r->read(0, TensorKind::q, 1, 4));
  const float* const storage = buf.data.data();
  r->read_into(0, TensorKind::k, 2, 1, &buf);  // smaller: the same allocation
  CHECK(buf.data.data() == storage);
  REQUIRE(buf.n_heads == 1);
  REQUIRE(buf.data.size() == 40 * 16);
  REQUIRE(std::memcmp(buf.row(0, 0), k.row(2, 0), 40 * 16 * sizeof(float)) == 0);
  r->read_into(0, TensorKind::q, 0, 6, &buf);  // larger: grown
  require_equal(buf, q);
  CHECK(buf.dtype == DType::bf16);
}

// DumpReader::read_raw16_into of heads [h0, h0 + n): the stored bits, widened, are read_into's
// floats (the GPU analysis uploads them as they are); f32 tensors have no such path.
static void require_raw16(DumpReader& r, int layer, TensorKind kind, int64_t h0, int64_t n) {
  const Tensor3 want = r.read(layer, kind, h0, n);
  Raw16 raw(3, 0xffff);  // reused storage: resized to the slice
  REQUIRE(r.read_raw16_into(layer, kind, h0, n, &raw));
  REQUIRE(raw.size() == want.data.size());
  std::vector<float> got(raw.size());
  io::widen(want.dtype, raw.data(), static_cast<int64_t>(raw.size()), got.data());
  REQUIRE(std::memcmp(got.data(), want.data.data(), got.size() * sizeof(float)) == 0);
}

// [T, H, D] with layout="thd" reads as [H, T, D]; bf16 as 2-byte opaque and as a 16-bit
// HDF5 float type; float16 and float32 stored big-endian.
TEST_CASE("io: thd layout and other encodings written with the HDF5 C API", "[io]") {
  ScratchDir dir("enc");
  const hsize_t T = 37, H = 4, KV = 2, D = 24;
  const Tensor3 q = random_tensor(H, T, D, 21, DType::bf16), k = random_tensor(KV, T, D, 22, DType::bf16),
                v = random_tensor(KV, T, D, 23, DType::bf16);
  auto thd = [&](const Tensor3& t) {  // [H, T, D] -> [T, H, D]
    std::vector<float> out(t.data.size());
    for (int64_t h = 0; h < t.n_heads; ++h)
      for (int64_t i = 0; i < t.n_tokens; ++i)
        for (int64_t d = 0; d < t.head_dim; ++d) out[size_t((i * t.n_heads + h) * t.head_dim + d)] = t.row(h, i)[d];
    return out;
  };
  auto bits = [](const auto& x) {
    std::vector<uint16_t> b(x.size());
    for (size_t i = 0; i < x.size(); ++i) b[i] = f32_to_bf16(x[i]);
    return b;
  };
  SECTION("thd float32") {
    const std::string path = dir.file("thd.h5");
    {
      H5Builder b(path);
      b.schema_root();
      b.f32("/layers/0/q", {T, H, D}, thd(q)).attr_str("/layers/0/q", "layout", "thd");
      b.f32("/layers/0/k", {T, KV, D}, thd(k)).attr_str("/layers/0/k", "layout", "thd");
      b.f32("/layers/0/v", {KV, T, D}, v.data).attr_str("/layers/0/v", "layout", "htd");
    }
    auto r = open_dump(path);
    CHECK(r->info().layer(0).n_q_heads == 4);
    CHECK(r->info().layer(0).n_tokens == 37);
    require_equal(r->read(0, TensorKind::q), q);
    require_equal(r->read(0, TensorKind::k), k);
    require_equal(r->read(0, TensorKind::v), v);
    const Tensor3 h2 = r->read(0, TensorKind::q, 2, 1);
    REQUIRE(std::memcmp(h2.data.data(), q.row(2, 0), T * D * sizeof(float)) == 0);
  }
  SECTION("thd bf16 as uint16, opaque and 16-bit float") {
    const std::string path = dir.file("bf16.h5");
    {
      H5Builder b(path);
      b.schema_root();
      const auto qb = bits(thd(q)), kb = bits(k.data), vb = bits(v.data);
      b.dataset("/layers/0/q", {T, H, D}, H5T_STD_U16LE, H5T_NATIVE_UINT16, qb.data());
      b.attr_str("/layers/0/q", "layout", "thd").attr_str("/layers/0/q", "dtype", "bfloat16");
      hid_t opaque = H5Tcreate(H5T_OPAQUE, 2);
      H5Tset_tag(opaque, "bfloat16");
      b.dataset("/layers/0/k", {KV, T, D}, opaque, opaque, kb.data()).attr_str("/layers/0/k", "dtype", "bfloat16");
      H5Tclose(opaque);
      hid_t bf = H5Tcopy(H5T_IEEE_F32LE);  // sign 15, exponent 7..14 (bias 127), mantissa 0..6
      H5Tset_fields(bf, 15, 7, 8, 0, 7);
      H5Tset_size(bf, 2);
      b.dataset("/layers/0/v", {KV, T, D}, bf, bf, vb.data());
      H5Tclose(bf);
    }
    auto r = open_dump(path);
    CHECK(r->info().layer(0).dtype == DType::bf16);
    require_equal(r->read(0, TensorKind::q), q);
    require_equal(r->read(0, TensorKind::k), k);
    require_equal(r->read(0, TensorKind::v), v);
    require_raw16(*r, 0, TensorKind::q, 0, 4);  // thd uint16
    require_raw16(*r, 0, TensorKind::q, 1, 2);
    require_raw16(*r, 0, TensorKind::k, 1, 1);  // opaque
    require_raw16(*r, 0, TensorKind::v, 0, 2);  // a 16-bit float type
  }
  SECTION("big-endian float16 and float32") {
    const std::string path = dir.file("be.h5");
    const Tensor3 q16 = random_tensor(H, T, D, 31, DType::f16), k16 = random_tensor(KV, T, D, 32, DType::f16),
                  v16 = random_tensor(KV, T, D, 33, DType::f16);
    {
      H5Builder b(path);
      b.schema_root();
      hid_t le16 = H5Tcopy(H5T_IEEE_F32LE);
      H5Tset_fields(le16, 15, 10, 5, 0, 10);
      H5Tset_size(le16, 2);
      H5Tset_ebias(le16, 15);
      hid_t be16 = H5Tcopy(le16);
      H5Tset_order(be16, H5T_ORDER_BE);
      std::vector<uint16_t> qh(q16.data.size()), kh(k16.data.size());
      for (size_t i = 0; i < qh.size(); ++i) qh[i] = f32_to_f16(q16.data[i]);
      for (size_t i = 0; i < kh.size(); ++i) kh[i] = f32_to_f16(k16.data[i]);
      b.dataset("/layers/0/q", {H, T, D}, be16, le16, qh.data());
      b.dataset("/layers/0/k", {KV, T, D}, le16, le16, kh.data());
      std::vector<uint16_t> vh(v16.data.size());
      for (size_t i = 0; i < vh.size(); ++i) vh[i] = f32_to_f16(v16.data[i]);
      b.dataset("/layers/0/v", {KV, T, D}, be16, le16, vh.data());
      b.dataset("/layers/1/q", {H, T, D}, H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, q.data.data());
      b.dataset("/layers/1/k", {KV, T, D}, H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, k.data.data());
      b.dataset("/layers/1/v", {KV, T, D}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, v.data.data());
      H5Tclose(le16);
      H5Tclose(be16);
    }
    auto r = open_dump(path);
    CHECK(r->info().layer(0).dtype == DType::f16);
    CHECK(r->info().layer(1).dtype == DType::f32);
    require_equal(r->read(0, TensorKind::q), q16);
    require_equal(r->read(0, TensorKind::k), k16);
    require_equal(r->read(0, TensorKind::v), v16);
    require_equal(r->read(1, TensorKind::q), q);
    require_equal(r->read(1, TensorKind::k), k);
    require_raw16(*r, 0, TensorKind::q, 0, 4);  // big-endian float16
    require_raw16(*r, 0, TensorKind::k, 0, 2);
    require_raw16(*r, 0, TensorKind::v, 1, 1);
    Raw16 untouched(5, 7);
    CHECK_FALSE(r->read_raw16_into(1, TensorKind::q, 0, 4, &untouched));  // float32: read_into only
    CHECK(untouched == Raw16(5, 7));
  }
}

TEST_CASE("io: root attributes of any type are reported as text", "[io]") {
  ScratchDir dir("attrs");
  const std::string path = dir.file("a.h5");
  {
    H5Builder b(path);
    b.attr_double("/", "moba_dump_version", 1.0);  // numbers written as float still parse
    b.attr_str("/", "model", "fixed-len model");
    b.attr_int("/", "rope_applied", 0);
    b.attr_str("/", "source", "here");
    b.attr_double("/", "synth.mu", 0.1);
    b.attr_int("/", "synth.seed", 42);
    b.layer_f32(0, {2, 5, 4}, {1, 5, 4}, {1, 5, 4});
  }
  auto r = open_dump(path);
  const DumpInfo& info = r->info();
  CHECK(info.model == "fixed-len model");
  CHECK(info.source == "here");
  CHECK_FALSE(info.rope_applied);
  CHECK(info.attributes.size() == 2);
  CHECK(info.attributes.at("synth.mu") == "0.1");
  CHECK(info.attributes.at("synth.seed") == "42");
}

TEST_CASE("io: writes are atomic: nothing at the target before commit, nothing left after failure", "[io]") {
  ScratchDir dir("atomic");
  const std::string path = dir.file("out.h5");
  const Tensor3 q = random_tensor(2, 10, 8, 1), k = random_tensor(1, 10, 8, 2);
  SECTION("destroyed uncommitted") {
    {
      DumpWriter w(path, DumpMeta{});
      w.write_tensor(0, TensorKind::q, q, DType::f32);
      CHECK(dir.entries().size() == 1);  // the temporary file
      CHECK_FALSE(fs::exists(path));
    }
    CHECK(dir.entries().empty());
  }
  SECTION("commit of an incomplete layer throws and leaves nothing") {
    {
      DumpWriter w(path, DumpMeta{});
      w.write_tensor(0, TensorKind::q, q, DType::f32);
      w.write_tensor(0, TensorKind::k, k, DType::f32);
      expect_input_error<MissingFieldError>([&] { w.commit(); }, path, "/layers/0/v");
    }
    CHECK(dir.entries().empty());
  }
  SECTION("NaN input and f16 overflow are refused, naming head and token") {
    Tensor3 bad = q;
    bad.row(1, 4)[3] = NAN;
    Tensor3 big = q;
    big.row(0, 2)[0] = 1e6f;
    {
      DumpWriter w(path, DumpMeta{});
      expect_input_error<ValueError>([&] { w.write_tensor(0, TensorKind::q, bad, DType::f32); }, path, "/layers/0/q",
                                     "head 1, token 4");
      expect_input_error<ValueError>([&] { w.write_tensor(0, TensorKind::k, big, DType::f16); }, path, "/layers/0/k",
                                     "overflows float16");
    }
    CHECK(dir.entries().empty());
  }
  SECTION("a missing directory is reported naming the target") {
    const std::string nowhere = dir.file("no/such/dir/out.h5");
    expect_input_error<FileNotFoundError>([&] { DumpWriter w(nowhere, DumpMeta{}); }, nowhere, "");
  }
  SECTION("commit replaces an existing file") {
    write_dump(path, 1, 2, 1, 10, 8, DType::f32);
    write_dump(path, 2, 4, 2, 12, 8, DType::bf16);
    CHECK(open_dump(path)->info().layers.size() == 2);
    CHECK(dir.entries().size() == 1);
  }
}
