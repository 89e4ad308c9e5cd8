#!/usr/bin/env bash
# `moba gui` headless: on a tiny synth analysis, under Xvfb, the viewer renders and writes a
# PNG of the right size that is not blank (the mask's hit / false-pick / miss colours are in
# it); bad input exits 2 before any window opens. Skipped (77) when the binary has no GUI
# (-DMOBA_GUI=OFF) or no X server can be started here.
# usage: test_gui_screenshot.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/io_common.sh"
cd "$WORK"

skip_without_gui

"$MOBA" synth --out s.h5 --tokens 512 --heads 2 --kv-heads 1 --head-dim 32 --min-distance 64 --seed 5 --quiet
"$MOBA" analyze s.h5 --block-sizes 16,32 --top-k 2,4 --routers moba,oracle --out A --quiet > /dev/null

# Bad input: exit 2, naming the problem, no window needed.
expect_exit2 "missing_dir" "$MOBA" gui missing_dir
expect_exit2 "--layer" "$MOBA" gui A --layer 7 --screenshot x.png
[ ! -e x.png ] || fail "x.png written for bad input"

timeout 120 xvfb-run -a -s "-screen 0 1280x800x24" "$MOBA" gui A --size 1200x760 --block-size 16 --top-k 4 \
  --query 300 --screenshot shot.png --frames 3
[ -s shot.png ] || fail "no screenshot"
"$PY" - <<'PYEOF' || fail "screenshot content"
import struct, zlib
data = open("shot.png", "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, size = 8, b"", None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    crc = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
    assert zlib.crc32(kind + body) & 0xffffffff == crc, "bad CRC in " + kind.decode()
    if kind == b"IHDR":
        size = struct.unpack(">II", body[:8])
        assert body[8:10] == b"\x08\x02", "expected 8-bit RGB"
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
w, h = size
assert (w, h) == (1200, 760), size
raw = zlib.decompress(idat)
assert len(raw) == h * (3 * w + 1)
pixels = set()
for y in range(h):
    row = raw[y * (3 * w + 1) + 1:(y + 1) * (3 * w + 1)]
    pixels.update(row[x:x + 3] for x in range(0, 3 * w, 3))
assert len(pixels) > 50, f"only {len(pixels)} colours: blank window?"
# The mask's palette (gui/panels.h): current block, hit, false pick, miss.
for name, rgb in [("current", (120, 130, 150)), ("hit", (70, 200, 110)),
                  ("false pick", (240, 120, 50)), ("miss", (80, 150, 255))]:
    assert bytes(rgb) in pixels, name + " colour not drawn"
print(f"ok: {w}x{h}, {len(pixels)} colours")
PYEOF

# A head whose per-position data analyze did not keep (the default keeps head 0 only): the
# viewer opens it, draws its stored bucket curves and summary, and no mask.
timeout 120 xvfb-run -a -s "-screen 0 1280x800x24" "$MOBA" gui A --size 1200x760 --head 1 --block-size 16 --top-k 4 \
  --screenshot shot_buckets.png --frames 3
[ -s shot_buckets.png ] || fail "no screenshot of a head without per-position arrays"
"$PY" - <<'PYEOF' || fail "screenshot of a head without per-position arrays"
import struct, zlib
data = open("shot_buckets.png", "rb").read()
pos, idat, size = 8, b"", None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        size = struct.unpack(">II", body[:8])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
w, h = size
raw = zlib.decompress(idat)
pixels = set()
for y in range(h):
    row = raw[y * (3 * w + 1) + 1:(y + 1) * (3 * w + 1)]
    pixels.update(row[x:x + 3] for x in range(0, 3 * w, 3))
assert len(pixels) > 50, f"only {len(pixels)} colours: blank window?"
for name, rgb in [("hit", (70, 200, 110)), ("false pick", (240, 120, 50)), ("miss", (80, 150, 255))]:
    assert bytes(rgb) not in pixels, name + " colour drawn without a stored selection"
print(f"ok: {w}x{h}, {len(pixels)} colours, no mask")
PYEOF
echo "PASS"
