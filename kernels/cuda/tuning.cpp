// The CUDA tuning knobs (kernels/cuda/tuning.h): one process-wide value and its parser.
#include "kernels/cuda/tuning.h"

#include <cstdlib>
#include <string>

namespace moba::kernels {
namespace {
CudaTuning g_tuning;

const char* parse_bool(const std::string& v, bool* out) {
  if (v == "1" || v == "true" || v == "on") { *out = true; return nullptr; }
  if (v == "0" || v == "false" || v == "off") { *out = false; return nullptr; }
  return "tuning: boolean knobs take 0 or 1";
}
}  // namespace

void set_cuda_tuning(const CudaTuning& t) { g_tuning = t; }
const CudaTuning& cuda_tuning() { return g_tuning; }

const char* parse_cuda_tuning(const std::string& spec, CudaTuning* out) {
  CudaTuning t = *out;
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t end = spec.find(',', pos);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) return "tuning: items are key=value";
    const std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    if (key == "gate") {
      if (val == "automatic") t.gate = CudaTuning::GatePath::automatic;
      else if (val == "scalar") t.gate = CudaTuning::GatePath::scalar;
      else if (val == "warp_list") t.gate = CudaTuning::GatePath::warp_list;
      else return "tuning: gate takes automatic, scalar or warp_list";
    } else if (key == "attn_rows") {
      char* e = nullptr;
      const long r = std::strtol(val.c_str(), &e, 10);
      if (val.empty() || *e != '\0' || (r != 0 && (r < 16 || r > 65536)))
        return "tuning: attn_rows takes 0 (automatic) or 16..65536";
      t.attn_rows = static_cast<int>(r);
    } else if (key == "attn_min_blocks3") {
      if (const char* e = parse_bool(val, &t.attn_min_blocks3)) return e;
    } else if (key == "dense_all_pass2") {
      if (const char* e = parse_bool(val, &t.dense_all_pass2)) return e;
    } else if (key == "tile_min_blocks3") {
      if (const char* e = parse_bool(val, &t.tile_min_blocks3)) return e;
    } else if (key == "tile_wgmma") {
      if (const char* e = parse_bool(val, &t.tile_wgmma)) return e;
    } else if (key == "row_warp") {
      if (const char* e = parse_bool(val, &t.row_warp)) return e;
    } else if (key == "row_ctas") {
      if (val == "0" || val == "5" || val == "6" || val == "7" || val == "8") t.row_ctas = val[0] - '0';
      else return "tuning: row_ctas takes 0 (automatic: 8), 5, 6, 7 or 8";
    } else if (key == "attn_path") {
      if (val == "automatic") t.attn_path = CudaTuning::AttnPath::automatic;
      else if (val == "gather") t.attn_path = CudaTuning::AttnPath::gather;
      else if (val == "tile") t.attn_path = CudaTuning::AttnPath::tile;
      else return "tuning: attn_path takes automatic, gather or tile";
    } else if (key == "attn_tile_cost") {
      char* e = nullptr;
      const double x = std::strtod(val.c_str(), &e);
      if (val.empty() || *e != '\0' || !(x > 0 && x <= 1000)) return "tuning: attn_tile_cost takes a number in (0, 1000]";
      t.attn_tile_cost = x;
    } else if (key == "attn_warp_ctas") {
      if (val == "-1") t.attn_warp_ctas = -1;
      else if (val == "0" || val == "1") t.attn_warp_ctas = val == "1";
      else return "tuning: attn_warp_ctas takes -1 (automatic), 0 or 1";
    } else if (key == "heads_in_flight") {
      if (val == "1" || val == "2") t.heads_in_flight = val == "2" ? 2 : 1;
      else return "tuning: heads_in_flight takes 1 or 2";
    } else if (key == "chunk_rows") {
      char* e = nullptr;
      const long r = std::strtol(val.c_str(), &e, 10);
      if (val.empty() || *e != '\0' || r < 64 || r > 65536 || r % 64 != 0)
        return "tuning: chunk_rows takes a multiple of 64 in 64..65536";
      t.chunk_rows = static_cast<int>(r);
    } else if (key == "attn_rounds") {
      if (val == "0" || val == "1") t.attn_rounds = val[0] - '0';
      else return "tuning: attn_rounds takes 0 or 1";
    } else if (key == "attn_wgmma") {
      if (const char* e = parse_bool(val, &t.attn_wgmma)) return e;
    } else if (key == "attn_tma") {
      if (const char* e = parse_bool(val, &t.attn_tma)) return e;
    } else if (key == "attn_q_smem") {
      if (const char* e = parse_bool(val, &t.attn_q_smem)) return e;
    } else if (key == "moments_apart") {
      if (const char* e = parse_bool(val, &t.moments_apart)) return e;
    } else {
      return "tuning: unknown key (gate, attn_rows, attn_min_blocks3, dense_all_pass2, attn_path, attn_tile_cost, "
             "tile_min_blocks3, tile_wgmma, row_warp, row_ctas, attn_warp_ctas, attn_rounds, attn_wgmma, attn_tma, attn_q_smem, heads_in_flight, chunk_rows, "
             "moments_apart)";
    }
  }
  *out = t;
  return nullptr;
}

}  // namespace moba::kernels
