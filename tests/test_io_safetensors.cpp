// safetensors: a file built byte by byte (following the published format) reads back
// exactly; every lie in the header is caught before any value is read.
#include "tests/test_io_util.h"

using namespace moba;
using namespace moba::io_test;

namespace {

const int64_t T = 19, H = 4, KV = 2, D = 8;

std::vector<uint16_t> narrow(const Tensor3& t, DType dtype) {
  std::vector<uint16_t> out(t.data.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = dtype == DType::f16 ? f32_to_f16(t.data[i]) : f32_to_bf16(t.data[i]);
  return out;
}

// A good dump: layer 0 in BF16, layer 1 in F32 with o, token_ids, planted.
struct GoodFile {
  Tensor3 q0 = random_tensor(H, T, D, 1, DType::bf16), k0 = random_tensor(KV, T, D, 2, DType::bf16),
          v0 = random_tensor(KV, T, D, 3, DType::bf16);
  Tensor3 q1 = random_tensor(H, T, D, 4), k1 = random_tensor(KV, T, D, 5), v1 = random_tensor(KV, T, D, 6),
          o1 = random_tensor(H, T, D, 7);
  std::vector<int32_t> ids, planted;
  std::vector<StEntry> entries() {
    ids.resize(T);
    planted.assign(H * T, -1);
    for (int64_t i = 0; i < T; ++i) ids[size_t(i)] = int32_t(i * 3);
    planted[5] = 4;
    std::vector<unsigned char> idb(ids.size() * 4), pb(planted.size() * 4);
    std::memcpy(idb.data(), ids.data(), idb.size());
    std::memcpy(pb.data(), planted.data(), pb.size());
    return {
        {"layers.0.q", "BF16", {H, T, D}, u16_bytes(narrow(q0, DType::bf16))},
        {"layers.0.k", "BF16", {KV, T, D}, u16_bytes(narrow(k0, DType::bf16))},
        {"layers.0.v", "BF16", {KV, T, D}, u16_bytes(narrow(v0, DType::bf16))},
        {"layers.1.q", "F32", {H, T, D}, f32_bytes(q1.data)},
        {"layers.1.k", "F32", {KV, T, D}, f32_bytes(k1.data)},
        {"layers.1.v", "F32", {KV, T, D}, f32_bytes(v1.data)},
        {"layers.1.o", "F32", {H, T, D}, f32_bytes(o1.data)},
        {"layers.1.planted", "I32", {H, T}, pb},
        {"token_ids", "I32", {T}, idb},
    };
  }
};

std::vector<StEntry> qkv(const std::string& dtype = "F32", std::vector<int64_t> q = {H, T, D},
                         std::vector<int64_t> k = {KV, T, D}, std::vector<int64_t> v = {KV, T, D}) {
  auto bytes = [&](const std::vector<int64_t>& s) {
    int64_t n = 1;
    for (int64_t x : s) n *= x;
    return std::vector<unsigned char>(size_t(n) * (dtype == "F32" ? 4 : 2), 0);
  };
  return {{"layers.0.q", dtype, q, bytes(q)}, {"layers.0.k", dtype, k, bytes(k)}, {"layers.0.v", dtype, v, bytes(v)}};
}

}  // namespace

TEST_CASE("safetensors: a byte-built dump reads back exactly", "[io][safetensors]") {
  ScratchDir dir("st");
  const std::string path = dir.file("d.safetensors");
  GoodFile g;
  write_bytes(path, safetensors_bytes(g.entries(), R"({"moba_dump_version":"1","model":"st-model","rope_applied":"0","source":"test","extra":"x"})"));
  auto r = open_dump(path);
  const DumpInfo& info = r->info();
  CHECK(info.format == "safetensors");
  CHECK(info.model == "st-model");
  CHECK(info.source == "test");
  CHECK_FALSE(info.rope_applied);
  CHECK(info.attributes.at("extra") == "x");
  REQUIRE(info.layers.size() == 2);
  CHECK(info.layer(0).dtype == DType::bf16);
  CHECK(info.layer(1).dtype == DType::f32);
  CHECK(info.layer(1).has_o);
  CHECK(info.layer(1).has_planted);
  CHECK(info.has_token_ids);
  auto same = [](const Tensor3& a, const Tensor3& b) {
    return a.n_heads == b.n_heads && a.data == b.data;
  };
  CHECK(same(r->read(0, TensorKind::q), g.q0));
  CHECK(same(r->read(0, TensorKind::k), g.k0));
  CHECK(same(r->read(0, TensorKind::v), g.v0));
  CHECK(same(r->read(1, TensorKind::q), g.q1));
  CHECK(same(r->read(1, TensorKind::o), g.o1));
  const Tensor3 h3 = r->read(1, TensorKind::q, 3, 1);
  CHECK(std::memcmp(h3.data.data(), g.q1.row(3, 0), T * D * sizeof(float)) == 0);
  CHECK(r->read_token_ids() == g.ids);
  CHECK(r->read_planted(1) == g.planted);
}

TEST_CASE("safetensors: F16 reads back exactly", "[io][safetensors]") {
  ScratchDir dir("st");
  const std::string path = dir.file("h.safetensors");
  const Tensor3 q = random_tensor(H, T, D, 9, DType::f16), k = random_tensor(KV, T, D, 10, DType::f16);
  write_bytes(path, safetensors_bytes({{"layers.0.q", "F16", {H, T, D}, u16_bytes(narrow(q, DType::f16))},
                                       {"layers.0.k", "F16", {KV, T, D}, u16_bytes(narrow(k, DType::f16))},
                                       {"layers.0.v", "F16", {KV, T, D}, u16_bytes(narrow(k, DType::f16))}},
                                      kStMeta));
  auto r = open_dump(path);
  CHECK(r->read(0, TensorKind::q).data == q.data);
  CHECK(r->read(0, TensorKind::v).data == k.data);
}

TEST_CASE("bad input: safetensors header length past the end of the file", "[io][bad][safetensors]") {
  ScratchDir dir("st");
  const std::string path = dir.file("long.safetensors"), tiny = dir.file("tiny.safetensors");
  write_bytes(path, safetensors_bytes(qkv(), kStMeta, uint64_t(1) << 40));
  expect_input_error<FormatError>([&] { open_dump(path); }, path, "header", "past the end of the file");
  auto bytes = safetensors_bytes(qkv(), kStMeta);
  bytes.resize(bytes.size() - 100);  // truncated data section: offsets now run past it
  write_bytes(tiny, bytes);
  expect_input_error<FormatError>([&] { open_dump(tiny); }, tiny, "layers.0.v", "out of range");
}

TEST_CASE("bad input: safetensors overlapping or out-of-range offsets", "[io][bad][safetensors]") {
  ScratchDir dir("st");
  const std::string overlap = dir.file("overlap.safetensors"), range = dir.file("range.safetensors"),
                    reversed = dir.file("reversed.safetensors");
  auto e = qkv();
  const uint64_t qbytes = e[0].bytes.size(), kbytes = e[1].bytes.size();
  e[1].custom_offsets = true;  // k starts inside q
  e[1].begin = qbytes - 16;
  e[1].end = qbytes - 16 + kbytes;
  write_bytes(overlap, safetensors_bytes(e, kStMeta));
  expect_input_error<FormatError>([&] { open_dump(overlap); }, overlap, "layers.0.k", "overlap tensor layers.0.q");
  e = qkv();
  e[2].custom_offsets = true;
  e[2].begin = qbytes + 2 * kbytes + 64;
  e[2].end = e[2].begin + kbytes;
  write_bytes(range, safetensors_bytes(e, kStMeta));
  expect_input_error<FormatError>([&] { open_dump(range); }, range, "layers.0.v", "out of range");
  e = qkv();
  e[0].custom_offsets = true;
  e[0].begin = 10;
  e[0].end = 2;
  write_bytes(reversed, safetensors_bytes(e, kStMeta));
  expect_input_error<FormatError>([&] { open_dump(reversed); }, reversed, "layers.0.q", "out of range");
}

TEST_CASE("bad input: safetensors byte size not matching shape x dtype", "[io][bad][safetensors]") {
  ScratchDir dir("st");
  const std::string path = dir.file("size.safetensors"), huge = dir.file("huge.safetensors");
  auto e = qkv();
  e[1].shape = {KV, T, D + 1};
  write_bytes(path, safetensors_bytes(e, kStMeta));
  expect_input_error<FormatError>([&] { open_dump(path); }, path, "layers.0.k", "does not match shape");
  e = qkv();
  e[0].shape = {int64_t(1) << 40, int64_t(1) << 40, 16};  // product overflows 64 bits
  write_bytes(huge, safetensors_bytes(e, kStMeta));
  expect_input_error<FormatError>([&] { open_dump(huge); }, huge, "layers.0.q", "does not match shape");
}

TEST_CASE("bad input: safetensors dtype, rank, GQA, metadata, JSON", "[io][bad][safetensors]") {
  ScratchDir dir("st");
  const std::string dtype = dir.file("dtype.safetensors"), unknown = dir.file("unknown.safetensors"),
                    rank = dir.file("rank.safetensors"), gqa = dir.file("gqa.safetensors"),
                    meta = dir.file("meta.safetensors"), json = dir.file("json.safetensors"),
                    nan = dir.file("nan.safetensors");
  auto e = qkv();
  e[0].dtype = "F64";
  e[0].bytes.resize(e[0].bytes.size() * 2);
  write_bytes(dtype, safetensors_bytes(e, kStMeta));
  expect_input_error<DTypeError>([&] { open_dump(dtype); }, dtype, "layers.0.q", "F64");
  e = qkv();
  e[2].dtype = "Q4_K";
  write_bytes(unknown, safetensors_bytes(e, kStMeta));
  expect_input_error<DTypeError>([&] { open_dump(unknown); }, unknown, "layers.0.v", "unknown dtype 'Q4_K'");
  write_bytes(rank, safetensors_bytes(qkv("F32", {H, T * D}), kStMeta));
  expect_input_error<ShapeError>([&] { open_dump(rank); }, rank, "layers.0.q", "rank 2");
  write_bytes(gqa, safetensors_bytes(qkv("F32", {3, T, D}), kStMeta));
  expect_input_error<ShapeError>([&] { open_dump(gqa); }, gqa, "layers.0.q", "not a multiple");
  write_bytes(meta, safetensors_bytes(qkv(), R"({"model":"m","rope_applied":"1"})"));
  expect_input_error<MissingFieldError>([&] { open_dump(meta); }, meta, "__metadata__.moba_dump_version", "missing");
  auto bytes = safetensors_bytes(qkv(), kStMeta);
  bytes[8 + 1] = 'x';  // {x__metadata__": ... is not JSON
  write_bytes(json, bytes);
  expect_input_error<FormatError>([&] { open_dump(json); }, json, "header", "invalid JSON");
  e = qkv();
  const float inf = INFINITY;
  std::memcpy(e[1].bytes.data() + (1 * T * D + 3 * D) * 4, &inf, 4);  // head 1, token 3
  write_bytes(nan, safetensors_bytes(e, kStMeta));
  expect_input_error<ValueError>([&] { open_and_read_all(nan); }, nan, "layers.0.k", "Inf at head 1, token 3");
}
