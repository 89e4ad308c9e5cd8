// `moba fit` for the variable-budget routers (issue 13, docs/fit.md#tau): on a small synthetic
// dump, every fitted tau meets the target and tau - resolution misses it (unless tau is the
// grid's first point), each checked against an independent measurement: route_group's
// uncapped selection (k = n_blocks) and double-precision full attention, averaged over the
// queries with a routable block (t >= B). The per-head tau file matches the table; bad flags
// exit 2 naming the flag.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/router.h"
#include "core/dump.h"
#include "test_analysis_util.h"
#include "test_io_util.h"

using namespace moba;

namespace {

using io_test::exit_status;
using io_test::read_text;
using io_test::ScratchDir;

// One layer, 4 query heads on 2 KV heads, T = 200 (ragged last block at B = 32 and 64), d = 16;
// the query heads differ in sharpness (q scaled by 0.5, 1, 1.5, 2) so their tau differ.
void write_fit_dump(const std::string& path) {
  DumpMeta meta;
  meta.model = "fit-tau-test";
  DumpWriter w(path, meta);
  Tensor3 q = analysis_test::random_tensor(4, 200, 16, 71);
  for (int64_t h = 0; h < 4; ++h)
    for (int64_t t = 0; t < 200; ++t)
      for (int64_t c = 0; c < 16; ++c) q.row(h, t)[c] *= 0.5f * static_cast<float>(h + 1);
  w.write_tensor(0, TensorKind::q, q, DType::f32);
  w.write_tensor(0, TensorKind::k, analysis_test::random_tensor(2, 200, 16, 72), DType::f32);
  w.write_tensor(0, TensorKind::v, analysis_test::random_tensor(2, 200, 16, 73), DType::f32);
  w.commit();
}

std::vector<std::map<std::string, std::string>> read_csv(const std::string& path) {
  std::istringstream in(read_text(path));
  std::string line;
  std::vector<std::string> header;
  std::vector<std::map<std::string, std::string>> rows;
  auto split = [](const std::string& s) {
    std::vector<std::string> out;
    std::string cell;
    std::istringstream ss(s);
    while (std::getline(ss, cell, ',')) out.push_back(cell);
    if (!s.empty() && s.back() == ',') out.emplace_back();
    return out;
  };
  if (!std::getline(in, line)) return rows;
  header = split(line);
  while (std::getline(in, line)) {
    const auto cells = split(line);
    REQUIRE(cells.size() == header.size());
    std::map<std::string, std::string> r;
    for (size_t i = 0; i < header.size(); ++i) r[header[i]] = cells[i];
    rows.push_back(r);
  }
  return rows;
}

// The independent measurement: route_group's rows at cap k = n_blocks and mass target tau for
// query head `head` (local index in the KV group's q), coverage from double full attention;
// the mean over t >= B of coverage (or of -ln coverage for kl).
double reference_mean(analysis::RouterKind router, const Tensor3& q, const Tensor3& k, int64_t local_head, int64_t B,
                      double tau, bool kl) {
  const int64_t T = q.n_tokens;
  const int K = static_cast<int>((T + B - 1) / B);
  analysis::RoutingOptions opt;
  opt.tau = tau;
  const std::vector<int32_t> sel = analysis_test::route_rows(router, q, k, B, K, opt);
  double sum = 0;
  for (int64_t t = B; t < T; ++t) {
    const std::vector<double> p = analysis_test::full_probs(q, k, local_head, t);
    double cov = 0;
    const int32_t* row = sel.data() + (local_head * T + t) * K;
    for (int i = 0; i < K && row[i] >= 0; ++i)
      for (int64_t j = row[i] * B; j < std::min((row[i] + 1) * B, t + 1); ++j) cov += p[static_cast<size_t>(j)];
    sum += kl ? -std::log(cov) : cov;
  }
  return sum / static_cast<double>(T - B);
}

std::string fit_cmd(const std::string& dump, const std::string& flags, const ScratchDir& dir) {
  return std::string(MOBA_BINARY) + " fit " + dump + " " + flags + " > " + dir.file("out.txt") + " 2> " +
         dir.file("err.txt");
}

void check_fit(const std::string& target_flag, bool kl, double target) {
  ScratchDir dir("fit_tau");
  const std::string dump = dir.file("d.h5");
  write_fit_dump(dump);
  const double res = 0.01;
  REQUIRE(exit_status(fit_cmd(dump,
                              "--block-sizes 32,64 --target " + target_flag +
                                  " --routers moba-threshold,oracle-topp --tau-resolution 0.01 --out " + dir.file("fit"),
                              dir)) == 0);
  const auto rows = read_csv(dir.file("fit.csv"));
  REQUIRE(rows.size() == 4 * 2 * 2);  // heads x routers x B
  const auto reader = open_dump(dump);
  std::map<int64_t, Tensor3> qs, ks;
  for (int64_t g = 0; g < 2; ++g) {
    qs[g] = reader->read(0, TensorKind::q, 2 * g, 2);
    ks[g] = reader->read(0, TensorKind::k, g, 1);
  }
  auto met = [&](double v) { return kl ? v <= target : v >= target; };
  int below_floor = 0;
  std::map<std::string, std::vector<double>> tau_of;  // router/B -> tau per head
  for (const auto& r : rows) {
    INFO("head " << r.at("head") << " " << r.at("router") << " B=" << r.at("block_size") << " tau " << r.at("tau"));
    REQUIRE(r.at("status") == "ok");
    REQUIRE(r.at("tau_resolution") == "0.01");
    REQUIRE(r.at("k").empty());
    const int64_t h = std::stoll(r.at("head")), B = std::stoll(r.at("block_size"));
    REQUIRE(std::stoll(r.at("max_k_tried")) == (200 + B - 1) / B);  // the cap: n_blocks, uncapped
    analysis::RouterKind router;
    REQUIRE(analysis::parse_router(r.at("router"), &router));
    const double tau = std::stod(r.at("tau"));
    tau_of[r.at("router") + "/" + r.at("block_size")].push_back(tau);
    const double at = reference_mean(router, qs[h / 2], ks[h / 2], h % 2, B, tau, kl);
    CHECK(std::fabs(at - std::stod(r.at("achieved"))) < 1e-5);
    CHECK(met(at));
    CHECK(met(std::stod(r.at("achieved"))));
    const double sel_mean = std::stod(r.at("selected_blocks_mean"));
    CHECK(sel_mean >= 1.0);
    CHECK(sel_mean <= static_cast<double>((200 + B - 1) / B));
    if (tau > res * 1.5) {
      ++below_floor;
      const double prev = reference_mean(router, qs[h / 2], ks[h / 2], h % 2, B, tau - res, kl);
      CHECK(std::fabs(prev - std::stod(r.at("achieved_prev"))) < 1e-5);
      CHECK_FALSE(met(prev));
    } else {
      CHECK(r.at("achieved_prev") == "nan");
    }
  }
  CHECK(below_floor >= 8);  // the test exercises the bisection, not only the grid's floor
  // The per-head tau file holds the table's tau, [layers][heads].
  for (const auto& [key, taus] : tau_of) {
    const std::string router = key.substr(0, key.find('/')), B = key.substr(key.find('/') + 1);
    const std::string json = read_text(dir.file("fit.tau_B" + B + "_" + router + ".json"));
    INFO(json);
    REQUIRE(json.find("\"kind\": \"tau\"") != std::string::npos);
    std::string expect = "\"tau\": [\n  [";
    for (size_t i = 0; i < taus.size(); ++i) {
      std::ostringstream s;
      s << taus[i];
      expect += (i ? ", " : "") + s.str();
    }
    CHECK(json.find(expect + "]") != std::string::npos);
  }
  // The heads differ (the fit is per head).
  const auto& t = tau_of["oracle-topp/32"];
  CHECK(*std::max_element(t.begin(), t.end()) > *std::min_element(t.begin(), t.end()));
}

}  // namespace

TEST_CASE("fit tau: coverage target met at tau, missed at tau - resolution (independent reference)",
          "[fit][tau]") {
  check_fit("coverage=0.85", false, 0.85);
}

TEST_CASE("fit tau: kl target met at tau, missed at tau - resolution (independent reference)", "[fit][tau]") {
  check_fit("kl=0.2", true, 0.2);
}

TEST_CASE("fit tau: bad flags exit 2 naming the flag, and write nothing", "[fit][tau]") {
  ScratchDir dir("fit_tau_bad");
  const std::string dump = dir.file("d.h5");
  write_fit_dump(dump);
  const std::string base = "--block-sizes 32 --target coverage=0.9 --out " + dir.file("x") + " ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--routers moba-threshold --tau-resolution 0", "--tau-resolution"},
      {"--routers moba-threshold --tau-resolution 0.6", "--tau-resolution"},
      {"--routers oracle-topp --tau-resolution 1e-7", "--tau-resolution"},
      {"--routers moba-threshold --tau-resolution abc", "--tau-resolution"},
      {"--routers moba --tau-resolution 0.01", "--tau-resolution"},
      {"--routers moba-threshold --tau 0.5", "--tau"},
  };
  for (const auto& [flags, needle] : cases) {
    INFO(flags);
    CHECK(exit_status(fit_cmd(dump, base + flags, dir)) == 2);
    CHECK(read_text(dir.file("err.txt")).find(needle) != std::string::npos);
  }
  // block_recall cannot be fitted for tau (its reference at k = n_blocks is every block).
  CHECK(exit_status(fit_cmd(dump,
                            "--block-sizes 32 --target block_recall=0.9 --routers moba,oracle-topp --out " +
                                dir.file("x"),
                            dir)) == 2);
  CHECK(read_text(dir.file("err.txt")).find("--target block_recall") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.file("x.csv")));
}
