// A minimal PNG encoder (signature, IHDR, one IDAT from zlib's compress, IEND) and the
// framebuffer read-back for `moba gui --screenshot`.
#include "gui/screenshot.h"

#include <GL/gl.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace moba::gui {

namespace {

void put_u32(std::vector<uint8_t>* out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out->push_back(static_cast<uint8_t>(v >> s));
}

// One chunk: length, type, data, CRC over type + data.
void put_chunk(std::vector<uint8_t>* out, const char* type, const std::vector<uint8_t>& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  const size_t type_at = out->size();
  out->insert(out->end(), type, type + 4);
  out->insert(out->end(), data.begin(), data.end());
  const uLong crc = crc32(0L, out->data() + type_at, static_cast<uInt>(4 + data.size()));
  put_u32(out, static_cast<uint32_t>(crc));
}

}  // namespace

void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb) {
  if (width <= 0 || height <= 0 || rgb.size() != static_cast<size_t>(width) * height * 3)
    throw std::runtime_error(path + ": bad image size for the PNG");
  // Scanlines, each led by filter type 0 (none).
  const size_t stride = static_cast<size_t>(width) * 3;
  std::vector<uint8_t> raw;
  raw.reserve((stride + 1) * static_cast<size_t>(height));
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), rgb.begin() + static_cast<std::ptrdiff_t>(y * stride),
               rgb.begin() + static_cast<std::ptrdiff_t>((y + 1) * stride));
  }
  uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
  std::vector<uint8_t> z(zlen);
  if (compress2(z.data(), &zlen, raw.data(), static_cast<uLong>(raw.size()), 6) != Z_OK)
    throw std::runtime_error(path + ": zlib compression failed");
  z.resize(zlen);

  std::vector<uint8_t> png{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  put_u32(&ihdr, static_cast<uint32_t>(width));
  put_u32(&ihdr, static_cast<uint32_t>(height));
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit, truecolour RGB, deflate, no filter, no interlace
  put_chunk(&png, "IHDR", ihdr);
  put_chunk(&png, "IDAT", z);
  put_chunk(&png, "IEND", {});

  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error(path + ": cannot write the screenshot: " + std::strerror(errno));
  const bool ok = std::fwrite(png.data(), 1, png.size(), f) == png.size();
  if (std::fclose(f) != 0 || !ok) throw std::runtime_error(path + ": cannot write the screenshot (disk full?)");
}

std::vector<uint8_t> read_framebuffer(int width, int height) {
  std::vector<uint8_t> bottom_up(static_cast<size_t>(width) * height * 3);
  glPixelStorei(GL_PACK_ALIGNMENT, 1);
  glReadBuffer(GL_BACK);
  glReadPixels(0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE, bottom_up.data());
  // OpenGL's rows run bottom to top; PNG's top to bottom.
  std::vector<uint8_t> out(bottom_up.size());
  const size_t stride = static_cast<size_t>(width) * 3;
  for (int y = 0; y < height; ++y)
    std::memcpy(&out[static_cast<size_t>(y) * stride], &bottom_up[static_cast<size_t>(height - 1 - y) * stride], stride);
  return out;
}

}  // namespace moba::gui
