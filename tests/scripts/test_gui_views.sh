#!/usr/bin/env bash
# `moba gui` view states, headless under Xvfb, on a small synth analysis (8192 tokens, B = 16
# and 32): bad view options exit 2 before any window, naming the valid choices; the
# whole-sequence mask shows hits, false picks and misses below the diagonal and nothing above
# it, by default (--cells density) each at several brightnesses between the any floor and full
# colour, with --cells presence at full colour only; a single-block view of a known miss
# (found with h5py in analysis.h5) shows the exact miss colour in the middle of the plot; the
# overview grid, the difference compare, the SNR histogram and a difference of stored bucket
# means (a head without per-position arrays) draw their colours; a compared block size
# without the shown top-k asks for --compare-top-k; --frames
# without --screenshot prints the timing lines.
# Skipped (77) without a GUI build or an X server.
# usage: test_gui_views.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
cd "$WORK"

skip_without_gui

"$MOBA" synth --out s.h5 --tokens 8192 --heads 2 --kv-heads 1 --head-dim 16 --min-distance 64 --seed 11 --quiet
"$MOBA" analyze s.h5 --block-sizes 16,32 --top-k 2,4 --routers moba,oracle --out A --quiet > /dev/null
shot() { timeout 120 xvfb-run -a -s "-screen 0 1280x800x24" "$MOBA" gui A --size 1200x760 "$@"; }

# Bad view states: exit 2, the message names the valid choices, no PNG.
expect2() {  # what-the-message-names view-options...: exit 2, no PNG
  local want="$1"; shift
  expect_exit2 "$want" "$MOBA" gui A "$@" --screenshot bad.png
  [ ! -e bad.png ] || fail "$*: bad.png written"
}
expect2 "valid: 0" --layer 3
expect2 "valid: 0, 1" --head 9
expect2 "valid: 16, 32" --block-size 64
expect2 "valid: moba, oracle" --compare-router quest
expect2 "valid: 2, 4" --compare-top-k 8
expect2 "valid: mask, metrics, summary, overview, configs, snr" --panels mask,heatmap
expect2 "valid: .*coverage_mean" --metric coverage
expect2 "not one of density|presence|dominant" --cells any
expect2 "positions 0:8192" --positions 100:9000
expect2 "blocks 0:512" --block-size 16 --blocks 0:600
expect2 "needs one block size" --block-size 16 --compare-block-size 32 --compare-mode difference
expect2 "the shown one" --router moba --compare-router moba
# At one sparsity k differs by block size: a compared B without the shown k names the option to add.
"$MOBA" analyze s.h5 --block-sizes 16,32 --sparsity 0.75 --routers moba --out S --quiet > /dev/null
expect_exit2 "compare-block-size 32: not analysed with the shown configuration's top-k 128 .*add --compare-top-k (valid there: 64)" \
  "$MOBA" gui S --block-size 16 --compare-block-size 32 --screenshot bad.png
[ ! -e bad.png ] || fail "S: bad.png written"

# A miss of moba against the oracle at B = 16, k = 2, head 0 (deterministic for this seed).
read -r MISS_T MISS_B < <("$PY" - <<'PYEOF'
import h5py, numpy as np
f = h5py.File("A/analysis.h5", "r")
g = "/layers/0/heads/0/B16_k2/"
r, o = np.asarray(f[g + "moba/selected"]), np.asarray(f[g + "oracle/selected"])
for t in range(4000, r.shape[0]):
    miss = set(o[t][o[t] >= 0]) - set(r[t][r[t] >= 0])
    if miss:
        print(t, min(miss)); break
PYEOF
)
[ -n "$MISS_T" ] || fail "no miss found in analysis.h5"

shot --block-size 16 --top-k 2 --panels mask --screenshot whole.png --frames 2 > /dev/null
shot --block-size 16 --top-k 2 --panels mask --cells presence --screenshot presence.png --frames 2 > /dev/null
shot --block-size 16 --top-k 2 --panels mask --positions $((MISS_T - 9)):$((MISS_T + 10)) --blocks $MISS_B:$((MISS_B + 1)) \
  --screenshot block.png --frames 2 > /dev/null
shot --block-size 16 --top-k 2 --panels overview --metric block_recall_mean --screenshot overview.png --frames 2 > /dev/null
shot --block-size 16 --top-k 2 --router moba --compare-router oracle --compare-mode difference --panels mask,snr \
  --screenshot diff.png --frames 2 > /dev/null
# Head 1 keeps bucket curves only (the default kept set is head 0): the difference of two
# configurations' stored bucket means.
shot --head 1 --block-size 16 --top-k 2 --router moba --compare-router oracle --panels metrics --difference \
  --screenshot bdiff.png --frames 2 > /dev/null
timeout 120 xvfb-run -a -s "-screen 0 1280x800x24" "$MOBA" gui A --size 1200x760 --frames 6 > timing.txt
for line in "open .* ms" "CPU frame time .* median" "tiles built, build time median" "new tile levels" "peak RSS"; do
  grep -q "$line" timing.txt || fail "timing output lacks '$line': $(cat timing.txt)"
done

"$PY" - "$MISS_T" "$MISS_B" <<'PYEOF' || fail "screenshot content"
import struct, sys, zlib
import numpy as np

def load(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path + ": not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 3 * w + 1)[:, 1:]
    return raw.reshape(h, w, 3)

# The mask's palette (gui/panels.h).
HIT, FALSE, MISS, CURRENT, CAUSAL = (70, 200, 110), (240, 120, 50), (80, 150, 255), (120, 130, 150), (40, 44, 56)
CAUSAL = np.array(CAUSAL, float)
def mask_of(img, rgb):
    return np.all(img == np.array(rgb, np.uint8), axis=2)
# Pixels of a class drawn at a density (analysis::shade_mask_tile): the class colour mixed over
# the causal tint, at f of the way, f in [floor, 1]. Returns the mask and f per pixel.
FLOOR = 0.4
def ramp_of(img, rgb):
    p = img.astype(float) - CAUSAL
    d = np.array(rgb, float) - CAUSAL
    f = (p @ d) / (d @ d)
    resid = np.abs(p - f[..., None] * d).max(axis=2)
    return (resid <= 2.5) & (f >= FLOOR - 0.02) & (f <= 1.01), f

# The plot: the bounding box of the mask's own colours right of the navigator.
def plot_box(img):
    m = np.zeros(img.shape[:2], bool)
    for c in (HIT, FALSE, MISS, CURRENT, CAUSAL):
        m |= mask_of(img, c)
    m[:, :300] = False
    ys, xs = np.nonzero(m)
    return xs.min(), ys.min(), xs.max(), ys.max()

# --cells presence: every class a cell holds at full colour.
pres = load("presence.png")
x0, y0, x1, y1 = plot_box(pres)
right = pres[:, 300:]
for name, c in (("hit", HIT), ("false pick", FALSE), ("miss", MISS), ("current", CURRENT)):
    n = mask_of(right, c).sum()
    assert n > 50, f"whole sequence, presence: {name} colour on {n} pixels only"
on, f = ramp_of(pres[y0:y1 + 1, x0:x1 + 1], MISS)
assert (on & (f < 0.95)).sum() == 0, f"whole sequence, presence: {(on & (f < 0.95)).sum()} miss pixels dimmed"

# The default, --cells density: each class at its density, never below the floor; misses at
# several brightnesses (one miss in a cell is dim, the most in a cell full colour).
whole = load("whole.png")
x0, y0, x1, y1 = plot_box(whole)
right = whole[y0:y1 + 1, x0:x1 + 1]
for name, c in (("hit", HIT), ("false pick", FALSE), ("miss", MISS), ("current", CURRENT)):
    on, f = ramp_of(right, c)
    assert on.sum() > 50, f"whole sequence: {name} colour (at any density) on {on.sum()} pixels only"
on, f = ramp_of(right, MISS)
levels = np.unique(np.round(f[on], 2))
dim, full = (on & (f < 0.9)).sum(), (on & (f > 0.97)).sum()
assert len(levels) >= 2 and dim > 20 and full > 0, \
    f"whole sequence: misses not drawn by density ({len(levels)} brightnesses, {dim} dim, {full} full pixels)"
# Above the diagonal (future keys): no class colour in the top-left quarter of the plot.
tl = whole[y0:y0 + (y1 - y0) // 4, x0:x0 + (x1 - x0) // 4]
for name, c in (("hit", HIT), ("false pick", FALSE), ("miss", MISS)):
    assert ramp_of(tl, c)[0].sum() == 0, f"whole sequence: {name} above the diagonal"

block = load("block.png")
bx0, by0, bx1, by1 = plot_box(block)
cx, cy = (bx0 + bx1) // 2, (by0 + by1) // 2
px = tuple(int(v) for v in block[cy, cx])
assert px == MISS, f"single-block view of the miss at t={sys.argv[1]} block {sys.argv[2]}: centre pixel {px}"

ov = load("overview.png")[:, 300:]
for name, c in (("lowest", (68, 1, 84)), ("highest", (253, 231, 37))):
    assert mask_of(ov, c).sum() > 100, f"overview grid: no {name} cell"

diff = load("diff.png")[:, 300:]
for name, c in (("both", HIT), ("only shown", FALSE), ("only compared", MISS)):
    assert ramp_of(diff, c)[0].sum() > 20, f"difference compare: no '{name}' colour"
assert mask_of(diff, (250, 190, 60)).sum() > 30, "SNR histogram: no router bars"
bdiff = load("bdiff.png")[:, 300:]
assert mask_of(bdiff, (140, 230, 140)).sum() > 30, "bucket curves only: no difference curve"
print("ok: whole sequence, single-block miss, overview, difference + SNR, bucket-mean difference")
PYEOF
echo "PASS"
