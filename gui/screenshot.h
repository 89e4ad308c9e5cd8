#pragma once
// Headless verification (`moba gui --screenshot FILE.png`): the framebuffer as a PNG.
#include <cstdint>
#include <string>
#include <vector>

namespace moba::gui {

// Writes an 8-bit RGB PNG of `rgb` [height, width, 3], top row first (zlib-compressed, no
// filtering). Throws std::runtime_error naming the file on failure.
void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb);

// Reads the current OpenGL framebuffer (the back buffer, before the swap) as top-row-first RGB.
std::vector<uint8_t> read_framebuffer(int width, int height);

}  // namespace moba::gui
