// pickscore/data/png.hpp — a small PNG encoder for 8-bit RGB images (zlib).
// pickscore-requires: pickscore::io
//
// The data tools need to write images, not only read them: the synthetic preference set stores
// its drawn images as PNG inside shards, and the tests build converted samples with them. The
// encoder writes the minimal valid file: signature, IHDR (8-bit RGB, no interlace), one IDAT with
// every row filtered "None" and deflated by zlib, IEND; every chunk with its CRC-32. The images
// decode with io::decode_image (libpng) and with any other PNG reader, pixel for pixel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <zlib.h>

#include "../core/error.hpp"
#include "../io/image_decode.hpp"

namespace pickscore::data {

namespace detail {

inline void put_u32_be(std::vector<std::uint8_t>& out, std::uint32_t v) {
    out.push_back(std::uint8_t(v >> 24));
    out.push_back(std::uint8_t(v >> 16));
    out.push_back(std::uint8_t(v >> 8));
    out.push_back(std::uint8_t(v));
}

// Appends one chunk: length, type, data, CRC-32 over type and data.
inline void put_png_chunk(std::vector<std::uint8_t>& out, const char type[4], const std::uint8_t* data,
                          std::size_t n) {
    put_u32_be(out, std::uint32_t(n));
    const std::size_t type_at = out.size();
    out.insert(out.end(), type, type + 4);
    out.insert(out.end(), data, data + n);
    const uLong crc = ::crc32(::crc32(0L, Z_NULL, 0), out.data() + type_at, uInt(n + 4));
    put_u32_be(out, std::uint32_t(crc));
}

}  // namespace detail

// The PNG file bytes of an RGB image (compression level 0..9, zlib's; 6 is its default).
inline std::vector<std::uint8_t> encode_png(const io::RgbImage& img, int level = 6) {
    require(img.width >= 1 && img.height >= 1 && img.width <= 0x7fffffff && img.height <= 0x7fffffff,
            "encode_png: image is ", img.width, "x", img.height);
    require(img.pixels.size() == std::size_t(img.width * img.height * 3), "encode_png: a ", img.width, "x",
            img.height, " RGB image needs ", img.width * img.height * 3, " bytes, it has ", img.pixels.size());
    require(level >= 0 && level <= 9, "encode_png: compression level ", level, " outside 0..9");
    // Raw scanlines: a filter byte (0 = None) before each row.
    const std::size_t row = std::size_t(img.width) * 3;
    std::vector<std::uint8_t> raw;
    raw.reserve((row + 1) * std::size_t(img.height));
    for (std::int64_t y = 0; y < img.height; ++y) {
        raw.push_back(0);
        raw.insert(raw.end(), img.row(y), img.row(y) + row);
    }
    uLongf zsize = ::compressBound(uLong(raw.size()));
    std::vector<std::uint8_t> z(zsize);
    const int rc = ::compress2(z.data(), &zsize, raw.data(), uLong(raw.size()), level);
    require(rc == Z_OK, "encode_png: zlib compress2 failed (", rc, ")");
    z.resize(zsize);

    std::vector<std::uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    std::vector<std::uint8_t> ihdr;
    detail::put_u32_be(ihdr, std::uint32_t(img.width));
    detail::put_u32_be(ihdr, std::uint32_t(img.height));
    ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // bit depth 8, colour type 2 (RGB), deflate, filter 0, no interlace
    detail::put_png_chunk(out, "IHDR", ihdr.data(), ihdr.size());
    detail::put_png_chunk(out, "IDAT", z.data(), z.size());
    detail::put_png_chunk(out, "IEND", nullptr, 0);
    return out;
}

}  // namespace pickscore::data
