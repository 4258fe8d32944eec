#pragma once
// PNG encoding (8-bit grey or RGB, zlib-compressed) and data: URIs, for images embedded in
// report.html and in SVG figures.
#include <cstdint>
#include <string>

namespace dynamoe::report {

/// A PNG file of `width` x `height` pixels with `channels` (1: grey, 3: RGB) interleaved 8-bit
/// samples, rows top to bottom. Throws dynamoe::Error on bad arguments.
std::string encode_png(const uint8_t* pixels, int width, int height, int channels);

/// Standard base64 (RFC 4648, with padding).
std::string base64(const std::string& bytes);

/// "data:image/png;base64,..." of encode_png.
std::string png_data_uri(const uint8_t* pixels, int width, int height, int channels);

}  // namespace dynamoe::report
