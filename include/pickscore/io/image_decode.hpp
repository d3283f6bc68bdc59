// pickscore/io/image_decode.hpp — PNG, JPEG and WebP decoding to 8-bit RGB, pixel for pixel what
// pickscore-requires: pickscore::io
// Pillow 11.3's `Image.open(f).convert("RGB")` gives.
//
// Dependencies (link pickscore::io): libpng (PNG), libjpeg / libjpeg-turbo (JPEG), libwebp and
// libwebpdemux (WebP).
//
// How each source mode becomes RGB (Pillow's own rules, checked against Pillow 11.3 by
// tools/gen_image_fixtures.py and tests/test_image.cpp):
//   PNG gray 1-bit ("1")         0 -> 0, 1 -> 255
//   PNG gray 2/4-bit ("L")       scaled by 85 / 17 (v * 255 / (2^bits - 1))
//   PNG gray 8-bit ("L")         v
//   PNG gray 16-bit ("I;16")     v < 256 ? v : 255  (Pillow clips; it does NOT scale 16 -> 8 bits)
//   PNG RGB/RGBA/gray+alpha 16-bit   the high byte of each sample (truncation, not rounding)
//   PNG palette ("P")            palette lookup; an index past the PLTE entries gives black
//   alpha (LA, RGBA, tRNS)       dropped, never composited onto a background
//   JPEG 1 / 3 components        libjpeg's grayscale / RGB output (islow IDCT, fancy upsampling)
//   JPEG 4 components ("CMYK")   Pillow assumes Adobe's inverted CMYK: c' = 255 - c etc., then
//                                nk = 255 - k', r = clip(nk - muldiv255(c', nk)) (YCCK is turned
//                                into CMYK by libjpeg first)
//   WebP                         libwebp's RGBA output (fancy upsampling), alpha dropped; for an
//                                animation, the first frame (WebPAnimDecoder, as Pillow uses)
// The EXIF orientation tag is NOT applied: Pillow's `open` does not apply it and neither did
// PickScore, so the pixels are the stored ones.
//
// Bad input is a pickscore::FormatError naming the image and the problem: an unknown or
// unsupported format (sniffed from the magic bytes, not the file name), a truncated or corrupt
// stream, zero dimensions, or more pixels than DecodeOptions::max_pixels. The dimensions are
// checked before any pixel memory is allocated. The C libraries report errors through handlers
// that longjmp only across C frames and frames of ours with trivially destructible locals, back
// to a setjmp in a small C-style function; nothing calls exit().
#pragma once

#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include "../core/error.hpp"

namespace pickscore::io {

enum class ImageFormat { unknown, png, jpeg, webp };

inline const char* format_name(ImageFormat f) {
    switch (f) {
        case ImageFormat::png: return "PNG";
        case ImageFormat::jpeg: return "JPEG";
        case ImageFormat::webp: return "WebP";
        default: return "unknown";
    }
}

struct DecodeOptions {
    // Decompression-bomb limit on width * height. The default is Pillow's own error threshold:
    // Pillow raises DecompressionBombError above 2 * Image.MAX_IMAGE_PIXELS = 2 * 89,478,485
    // pixels (and only warns between 1x and 2x, which we do not: we accept those).
    std::int64_t max_pixels = 2 * std::int64_t(89'478'485);
    // Progressive JPEGs with more scans than this are rejected (a CPU-exhaustion guard that
    // Pillow does not have; real files have about 10 scans).
    int max_jpeg_scans = 1000;
};

// An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B.
struct RgbImage {
    std::int64_t width = 0;
    std::int64_t height = 0;
    std::vector<std::uint8_t> pixels;  // height * width * 3

    std::uint8_t* row(std::int64_t y) { return pixels.data() + y * width * 3; }
    const std::uint8_t* row(std::int64_t y) const { return pixels.data() + y * width * 3; }
};

// What Image.open would report before decoding any pixel.
struct ImageInfo {
    ImageFormat format = ImageFormat::unknown;
    std::int64_t width = 0;
    std::int64_t height = 0;
    std::string mode;  // Pillow's Image.mode after open: "1", "L", "LA", "I;16", "P", "RGB", "RGBA", "CMYK"
};

namespace detail {

inline bool starts_with(std::span<const std::uint8_t> b, std::size_t at, const char* magic, std::size_t n) {
    return b.size() >= at + n && std::memcmp(b.data() + at, magic, n) == 0;
}

// Names a format we recognise but do not decode, for a better message.
inline const char* other_format_name(std::span<const std::uint8_t> b) {
    if (starts_with(b, 0, "GIF87a", 6) || starts_with(b, 0, "GIF89a", 6)) return "GIF";
    if (starts_with(b, 0, "BM", 2)) return "BMP";
    if (starts_with(b, 0, "II*\0", 4) || starts_with(b, 0, "MM\0*", 4)) return "TIFF";
    if (starts_with(b, 4, "ftypavif", 8) || starts_with(b, 4, "ftypavis", 8)) return "AVIF";
    if (starts_with(b, 4, "ftyphei", 7) || starts_with(b, 4, "ftypmif1", 8)) return "HEIF";
    if (starts_with(b, 0, "\0\0\1\0", 4)) return "ICO";
    if (starts_with(b, 0, "\x00\x00\x00\x0cjP  ", 8) || starts_with(b, 0, "\xff\x4f\xff\x51", 4)) return "JPEG 2000";
    if (starts_with(b, 0, "%PDF", 4)) return "PDF";
    if (starts_with(b, 0, "8BPS", 4)) return "PSD";
    if (starts_with(b, 0, "qoif", 4)) return "QOI";
    if (starts_with(b, 0, "\xff\x0a", 2) || starts_with(b, 0, "\0\0\0\x0cJXL ", 8)) return "JPEG XL";
    return nullptr;
}

}  // namespace detail

// The format from the magic bytes (Pillow's _accept rules), or unknown.
inline ImageFormat sniff_image_format(std::span<const std::uint8_t> b) {
    if (detail::starts_with(b, 0, "\x89PNG\r\n\x1a\n", 8)) return ImageFormat::png;
    if (detail::starts_with(b, 0, "\xff\xd8\xff", 3)) return ImageFormat::jpeg;
    if (detail::starts_with(b, 0, "RIFF", 4) && detail::starts_with(b, 8, "WEBP", 4) &&
        (detail::starts_with(b, 12, "VP8 ", 4) || detail::starts_with(b, 12, "VP8L", 4) ||
         detail::starts_with(b, 12, "VP8X", 4)))
        return ImageFormat::webp;
    return ImageFormat::unknown;
}

namespace detail {

using pickscore::detail::concat;

[[noreturn]] inline void image_fail(std::string_view name, ImageFormat f, std::string_view problem) {
    if (f == ImageFormat::unknown) fail<FormatError>("image '", name, "': ", problem);
    fail<FormatError>("image '", name, "': ", format_name(f), ": ", problem);
}

inline void check_dimensions(std::string_view name, ImageFormat f, std::int64_t w, std::int64_t h,
                             const DecodeOptions& opt) {
    if (w <= 0 || h <= 0)
        image_fail(name, f, concat("invalid dimensions ", w, "x", h, " (both must be positive)"));
    // w, h < 2^32 here, so the product cannot overflow int64.
    if (w * h > opt.max_pixels)
        image_fail(name, f,
                   concat("image size ", w, "x", h, " = ", w * h, " pixels exceeds the limit of ", opt.max_pixels,
                          " pixels (DecodeOptions::max_pixels; a decompression-bomb guard)"));
}

inline std::uint8_t muldiv255(unsigned a, unsigned b) {
    const unsigned t = a * b + 128;
    return std::uint8_t(((t >> 8) + t) >> 8);
}

inline std::uint8_t clip8(int v) { return v <= 0 ? 0 : v < 256 ? std::uint8_t(v) : 255; }

// ---- PNG (libpng) ------------------------------------------------------------------------------

struct PngReader {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;
    std::size_t pos = 0;
    char message[256] = {0};
};

inline void png_error_handler(png_structp png, png_const_charp msg) {
    auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
    std::snprintf(r->message, sizeof r->message, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

inline void png_warning_handler(png_structp, png_const_charp) {}  // Pillow ignores these too

inline void png_read_handler(png_structp png, png_bytep out, png_size_t n) {
    auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
    if (n > r->size - r->pos) png_error(png, "truncated file (unexpected end of data)");
    std::memcpy(out, r->data + r->pos, n);
    r->pos += n;
}

struct PngHeader {
    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    std::size_t rowbytes = 0;
    int num_palette = 0;
    std::uint8_t palette[256 * 3] = {0};  // entries past PLTE stay black, as in Pillow
};

// C-style: no locals with destructors between setjmp and any longjmp into it.
inline int png_read_header_c(png_structp png, png_infop info, PngHeader* h) {
    if (setjmp(png_jmpbuf(png))) return 1;
    png_read_info(png, info);
    png_get_IHDR(png, info, &h->width, &h->height, &h->bit_depth, &h->color_type, &h->interlace, nullptr,
                 nullptr);
    if (h->interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
    png_read_update_info(png, info);
    h->rowbytes = png_get_rowbytes(png, info);
    if (h->color_type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp pal = nullptr;
        int n = 0;
        if (png_get_PLTE(png, info, &pal, &n) && pal) {
            if (n > 256) n = 256;
            for (int i = 0; i < n; ++i) {
                h->palette[3 * i + 0] = pal[i].red;
                h->palette[3 * i + 1] = pal[i].green;
                h->palette[3 * i + 2] = pal[i].blue;
            }
            h->num_palette = n;
        }
    }
    return 0;
}

// One raw libpng row (no transforms) to RGB, following Pillow's unpackers and converters.
inline void png_row_to_rgb(const PngHeader& h, const std::uint8_t* in, std::uint8_t* out, std::int64_t w) {
    const int bd = h.bit_depth;
    switch (h.color_type) {
        case PNG_COLOR_TYPE_GRAY:
            if (bd == 16) {
                for (std::int64_t x = 0; x < w; ++x) {  // "I;16" -> RGB: clip, high byte != 0 means 255
                    const std::uint8_t v = in[2 * x] == 0 ? in[2 * x + 1] : 255;
                    out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = v;
                }
            } else if (bd == 8) {
                for (std::int64_t x = 0; x < w; ++x) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[x];
            } else {
                const int per_byte = 8 / bd, mask = (1 << bd) - 1;
                const int scale = bd == 1 ? 255 : bd == 2 ? 85 : 17;
                for (std::int64_t x = 0; x < w; ++x) {
                    const int shift = 8 - bd * (1 + int(x % per_byte));
                    const std::uint8_t v = std::uint8_t(((in[x / per_byte] >> shift) & mask) * scale);
                    out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = v;
                }
            }
            break;
        case PNG_COLOR_TYPE_PALETTE: {
            const int per_byte = 8 / bd, mask = (1 << bd) - 1;
            for (std::int64_t x = 0; x < w; ++x) {
                const int idx = bd == 8 ? in[x] : (in[x / per_byte] >> (8 - bd * (1 + int(x % per_byte)))) & mask;
                std::memcpy(out + 3 * x, h.palette + 3 * idx, 3);
            }
            break;
        }
        case PNG_COLOR_TYPE_GRAY_ALPHA: {
            const int step = bd == 16 ? 4 : 2;
            for (std::int64_t x = 0; x < w; ++x) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[step * x];
            break;
        }
        case PNG_COLOR_TYPE_RGB:
            if (bd == 16) {
                for (std::int64_t i = 0; i < 3 * w; ++i) out[i] = in[2 * i];
            } else {
                std::memcpy(out, in, std::size_t(3 * w));
            }
            break;
        case PNG_COLOR_TYPE_RGB_ALPHA: {
            const int bytes = bd == 16 ? 2 : 1;
            for (std::int64_t x = 0; x < w; ++x)
                for (int c = 0; c < 3; ++c) out[3 * x + c] = in[(4 * x + c) * bytes];
            break;
        }
        default: break;
    }
}

// Non-interlaced: row by row through one row buffer. C-style, see above.
inline int png_read_rows_c(png_structp png, const PngHeader* h, std::uint8_t* rowbuf, std::uint8_t* out) {
    if (setjmp(png_jmpbuf(png))) return 1;
    const std::int64_t w = h->width;
    for (png_uint_32 y = 0; y < h->height; ++y) {
        png_read_row(png, rowbuf, nullptr);
        png_row_to_rgb(*h, rowbuf, out + std::int64_t(y) * w * 3, w);
    }
    return 0;
}

// Interlaced: libpng assembles the whole raw image. C-style, see above.
inline int png_read_image_c(png_structp png, png_bytepp rows) {
    if (setjmp(png_jmpbuf(png))) return 1;
    png_read_image(png, rows);
    return 0;
}

struct PngHandles {
    png_structp png = nullptr;
    png_infop info = nullptr;
    PngReader reader;
    ~PngHandles() {
        if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    }
};

inline void png_open(PngHandles& hd, std::span<const std::uint8_t> bytes, std::string_view name) {
    hd.reader.data = bytes.data();
    hd.reader.size = bytes.size();
    hd.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &hd.reader, png_error_handler, png_warning_handler);
    if (!hd.png) image_fail(name, ImageFormat::png, "libpng could not create a decoder");
    hd.info = png_create_info_struct(hd.png);
    if (!hd.info) image_fail(name, ImageFormat::png, "libpng could not create an info struct");
    png_set_read_fn(hd.png, &hd.reader, png_read_handler);
    // Our own pixel limit replaces libpng's default 1,000,000 x 1,000,000 one (Pillow has none).
    png_set_user_limits(hd.png, 0x7fffffffu, 0x7fffffffu);
}

inline const char* png_mode(int bit_depth, int color_type) {
    switch (color_type) {
        case PNG_COLOR_TYPE_GRAY: return bit_depth == 1 ? "1" : bit_depth == 16 ? "I;16" : "L";
        case PNG_COLOR_TYPE_RGB: return "RGB";
        case PNG_COLOR_TYPE_PALETTE: return "P";
        case PNG_COLOR_TYPE_GRAY_ALPHA: return bit_depth == 16 ? "RGBA" : "LA";
        case PNG_COLOR_TYPE_RGB_ALPHA: return "RGBA";
        default: return "?";
    }
}

inline ImageInfo png_probe(std::span<const std::uint8_t> bytes, std::string_view name) {
    PngHandles hd;
    png_open(hd, bytes, name);
    PngHeader h;
    if (png_read_header_c(hd.png, hd.info, &h)) image_fail(name, ImageFormat::png, hd.reader.message);
    return {ImageFormat::png, std::int64_t(h.width), std::int64_t(h.height), png_mode(h.bit_depth, h.color_type)};
}

inline RgbImage png_decode(std::span<const std::uint8_t> bytes, std::string_view name, const DecodeOptions& opt) {
    PngHandles hd;
    png_open(hd, bytes, name);
    auto h = std::make_unique<PngHeader>();
    if (png_read_header_c(hd.png, hd.info, h.get())) image_fail(name, ImageFormat::png, hd.reader.message);
    check_dimensions(name, ImageFormat::png, h->width, h->height, opt);
    if (h->color_type == PNG_COLOR_TYPE_PALETTE && h->num_palette == 0)
        image_fail(name, ImageFormat::png, "palette image without a PLTE chunk");
    RgbImage img;
    img.width = h->width;
    img.height = h->height;
    img.pixels.resize(std::size_t(img.width * img.height * 3));
    if (h->interlace == PNG_INTERLACE_NONE) {
        std::vector<std::uint8_t> rowbuf(h->rowbytes);
        if (png_read_rows_c(hd.png, h.get(), rowbuf.data(), img.pixels.data()))
            image_fail(name, ImageFormat::png, hd.reader.message);
    } else {
        std::vector<std::uint8_t> raw(h->rowbytes * h->height);
        std::vector<png_bytep> rows(h->height);
        for (png_uint_32 y = 0; y < h->height; ++y) rows[y] = raw.data() + std::size_t(y) * h->rowbytes;
        if (png_read_image_c(hd.png, rows.data())) image_fail(name, ImageFormat::png, hd.reader.message);
        for (png_uint_32 y = 0; y < h->height; ++y) png_row_to_rgb(*h, rows[y], img.row(y), img.width);
    }
    return img;
}

// ---- JPEG (libjpeg / libjpeg-turbo) ------------------------------------------------------------

struct JpegError {
    jpeg_error_mgr pub;  // first member: libjpeg hands us a pointer to it
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX + 64];
};

struct JpegProgress {
    jpeg_progress_mgr pub;  // first member
    int max_scans;
};

inline void jpeg_error_exit_handler(j_common_ptr cinfo) {
    auto* err = reinterpret_cast<JpegError*>(cinfo->err);
    char buf[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buf);
    std::snprintf(err->message, sizeof err->message, "%s", buf);
    std::longjmp(err->jump, 1);
}

inline void jpeg_output_message_handler(j_common_ptr) {}  // warnings are silent, as in Pillow

inline void jpeg_progress_handler(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    auto* p = reinterpret_cast<JpegProgress*>(cinfo->progress);
    auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
    if (d->input_scan_number > p->max_scans) {
        auto* err = reinterpret_cast<JpegError*>(cinfo->err);
        std::snprintf(err->message, sizeof err->message, "more than %d scans (DecodeOptions::max_jpeg_scans)",
                      p->max_scans);
        std::longjmp(err->jump, 1);
    }
}

// A memory source that reports running out of data as an error ("truncated") instead of inserting
// a fake end-of-image marker: Pillow raises "image file is truncated" there too.
inline void jpeg_src_init(j_decompress_ptr) {}
inline boolean jpeg_src_fill(j_decompress_ptr cinfo) {
    auto* err = reinterpret_cast<JpegError*>(cinfo->err);
    std::snprintf(err->message, sizeof err->message, "truncated file (unexpected end of data)");
    std::longjmp(err->jump, 1);
}
inline void jpeg_src_skip(j_decompress_ptr cinfo, long n) {
    if (n <= 0) return;
    if (std::size_t(n) > cinfo->src->bytes_in_buffer) jpeg_src_fill(cinfo);
    cinfo->src->next_input_byte += n;
    cinfo->src->bytes_in_buffer -= std::size_t(n);
}
inline void jpeg_src_term(j_decompress_ptr) {}

struct JpegHandles {
    jpeg_decompress_struct cinfo;
    JpegError err;
    JpegProgress progress;
    jpeg_source_mgr src;
    bool created = false;
    ~JpegHandles() {
        if (created) jpeg_destroy_decompress(&cinfo);
    }
};

// C-style: creates the decompressor and reads the header. Returns nonzero on error.
inline int jpeg_open_c(JpegHandles* h, const std::uint8_t* data, std::size_t size, int max_scans) {
    std::memset(&h->cinfo, 0, sizeof h->cinfo);
    h->cinfo.err = jpeg_std_error(&h->err.pub);
    h->err.pub.error_exit = jpeg_error_exit_handler;
    h->err.pub.output_message = jpeg_output_message_handler;
    h->err.message[0] = 0;
    if (setjmp(h->err.jump)) return 1;
    jpeg_create_decompress(&h->cinfo);
    h->created = true;
    h->src.next_input_byte = data;
    h->src.bytes_in_buffer = size;
    h->src.init_source = jpeg_src_init;
    h->src.fill_input_buffer = jpeg_src_fill;
    h->src.skip_input_data = jpeg_src_skip;
    h->src.resync_to_restart = jpeg_resync_to_restart;
    h->src.term_source = jpeg_src_term;
    h->cinfo.src = &h->src;
    h->progress.pub.progress_monitor = jpeg_progress_handler;
    h->progress.max_scans = max_scans;
    h->cinfo.progress = &h->progress.pub;
    jpeg_read_header(&h->cinfo, TRUE);
    return 0;
}

// C-style: decodes every scanline into out (RGB), converting as Pillow does.
inline int jpeg_decode_c(JpegHandles* h, std::uint8_t* rowbuf, std::uint8_t* out) {
    if (setjmp(h->err.jump)) return 1;
    j_decompress_ptr c = &h->cinfo;
    // Pillow's settings: libjpeg's defaults (JDCT_ISLOW, fancy upsampling, no scaling), with the
    // output colour space chosen from the number of components.
    const int comps = c->num_components;
    c->out_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_start_decompress(c);
    const std::int64_t w = c->output_width;
    while (c->output_scanline < c->output_height) {
        std::uint8_t* o = out + std::int64_t(c->output_scanline) * w * 3;
        JSAMPROW row = comps == 3 ? o : rowbuf;
        if (jpeg_read_scanlines(c, &row, 1) != 1) {
            std::snprintf(h->err.message, sizeof h->err.message, "decoder returned no scanline");
            return 1;
        }
        if (comps == 1) {
            for (std::int64_t x = 0; x < w; ++x) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = rowbuf[x];
        } else if (comps == 4) {
            for (std::int64_t x = 0; x < w; ++x) {
                const std::uint8_t* p = rowbuf + 4 * x;
                // Pillow unpacks "CMYK;I" (every channel inverted: c' = 255 - c) and then converts
                // with nk = 255 - k' (= k here), channel = clip(nk - muldiv255(c', nk)).
                const int nk = 255 - (255 - p[3]);
                for (int ch = 0; ch < 3; ++ch)
                    o[3 * x + ch] = clip8(nk - muldiv255(unsigned(255 - p[ch]), unsigned(nk)));
            }
        }
    }
    // Like Pillow, stop once every row is decoded: a missing end-of-image marker is not an error,
    // and jpeg_finish_decompress is not needed before jpeg_destroy_decompress.
    return 0;
}

inline const char* jpeg_mode(int comps) { return comps == 1 ? "L" : comps == 3 ? "RGB" : comps == 4 ? "CMYK" : "?"; }

inline void jpeg_check_header(const JpegHandles& h, std::string_view name) {
    const int comps = h.cinfo.num_components;
    if (comps != 1 && comps != 3 && comps != 4)
        image_fail(name, ImageFormat::jpeg, concat("cannot handle ", comps, "-component images"));
    if (h.cinfo.data_precision != 8)
        image_fail(name, ImageFormat::jpeg, concat("cannot handle ", h.cinfo.data_precision, "-bit samples"));
}

inline ImageInfo jpeg_probe(std::span<const std::uint8_t> bytes, std::string_view name) {
    auto h = std::make_unique<JpegHandles>();
    if (jpeg_open_c(h.get(), bytes.data(), bytes.size(), 1 << 30)) image_fail(name, ImageFormat::jpeg, h->err.message);
    jpeg_check_header(*h, name);
    return {ImageFormat::jpeg, std::int64_t(h->cinfo.image_width), std::int64_t(h->cinfo.image_height),
            jpeg_mode(h->cinfo.num_components)};
}

inline RgbImage jpeg_decode(std::span<const std::uint8_t> bytes, std::string_view name, const DecodeOptions& opt) {
    auto h = std::make_unique<JpegHandles>();
    if (jpeg_open_c(h.get(), bytes.data(), bytes.size(), opt.max_jpeg_scans))
        image_fail(name, ImageFormat::jpeg, h->err.message);
    jpeg_check_header(*h, name);
    check_dimensions(name, ImageFormat::jpeg, h->cinfo.image_width, h->cinfo.image_height, opt);
    RgbImage img;
    img.width = h->cinfo.image_width;
    img.height = h->cinfo.image_height;
    img.pixels.resize(std::size_t(img.width * img.height * 3));
    std::vector<std::uint8_t> rowbuf(std::size_t(img.width) * 4);
    if (jpeg_decode_c(h.get(), rowbuf.data(), img.pixels.data())) image_fail(name, ImageFormat::jpeg, h->err.message);
    if (std::int64_t(h->cinfo.output_width) != img.width || std::int64_t(h->cinfo.output_height) != img.height)
        image_fail(name, ImageFormat::jpeg, "decoder output size differs from the header");
    return img;
}

// ---- WebP (libwebp + libwebpdemux) -------------------------------------------------------------

inline const char* webp_status(VP8StatusCode s) {
    switch (s) {
        case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
        case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
        case VP8_STATUS_BITSTREAM_ERROR: return "corrupt bitstream";
        case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
        case VP8_STATUS_SUSPENDED: return "suspended";
        case VP8_STATUS_USER_ABORT: return "aborted";
        case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated file (not enough data)";
        default: return "decoding error";
    }
}

inline ImageInfo webp_probe(std::span<const std::uint8_t> bytes, std::string_view name) {
    WebPBitstreamFeatures f;
    const VP8StatusCode s = WebPGetFeatures(bytes.data(), bytes.size(), &f);
    if (s != VP8_STATUS_OK) image_fail(name, ImageFormat::webp, webp_status(s));
    return {ImageFormat::webp, f.width, f.height, f.has_alpha ? "RGBA" : "RGB"};
}

inline RgbImage webp_decode(std::span<const std::uint8_t> bytes, std::string_view name, const DecodeOptions& opt) {
    const ImageInfo info = webp_probe(bytes, name);
    check_dimensions(name, ImageFormat::webp, info.width, info.height, opt);
    // Pillow decodes every WebP through WebPAnimDecoder with default options (RGBA, no threads).
    WebPData data{bytes.data(), bytes.size()};
    WebPAnimDecoderOptions o;
    if (!WebPAnimDecoderOptionsInit(&o)) image_fail(name, ImageFormat::webp, "libwebp version mismatch");
    o.color_mode = MODE_RGBA;
    o.use_threads = 0;
    std::unique_ptr<WebPAnimDecoder, void (*)(WebPAnimDecoder*)> dec(WebPAnimDecoderNew(&data, &o),
                                                                     WebPAnimDecoderDelete);
    if (!dec) image_fail(name, ImageFormat::webp, "corrupt or truncated file (the demuxer rejected it)");
    WebPAnimInfo ai;
    if (!WebPAnimDecoderGetInfo(dec.get(), &ai)) image_fail(name, ImageFormat::webp, "cannot read the canvas info");
    check_dimensions(name, ImageFormat::webp, ai.canvas_width, ai.canvas_height, opt);
    std::uint8_t* rgba = nullptr;
    int timestamp = 0;
    if (!WebPAnimDecoderGetNext(dec.get(), &rgba, &timestamp) || !rgba)
        image_fail(name, ImageFormat::webp, "corrupt or truncated bitstream");
    RgbImage img;
    img.width = ai.canvas_width;
    img.height = ai.canvas_height;
    img.pixels.resize(std::size_t(img.width * img.height * 3));
    const std::int64_t n = img.width * img.height;
    for (std::int64_t i = 0; i < n; ++i) std::memcpy(img.pixels.data() + 3 * i, rgba + 4 * i, 3);
    return img;
}

inline ImageFormat require_format(std::span<const std::uint8_t> bytes, std::string_view name) {
    const ImageFormat f = sniff_image_format(bytes);
    if (f != ImageFormat::unknown) return f;
    if (bytes.empty()) image_fail(name, f, "empty file");
    if (const char* other = other_format_name(bytes))
        image_fail(name, f, concat("unsupported image format ", other, " (supported: PNG, JPEG, WebP)"));
    image_fail(name, f, "unknown image format (not PNG, JPEG or WebP by its first bytes)");
}

}  // namespace detail

// Format, size and Pillow mode, without decoding pixels.
inline ImageInfo probe_image(std::span<const std::uint8_t> bytes, std::string_view name = "<memory>") {
    switch (detail::require_format(bytes, name)) {
        case ImageFormat::png: return detail::png_probe(bytes, name);
        case ImageFormat::jpeg: return detail::jpeg_probe(bytes, name);
        default: return detail::webp_probe(bytes, name);
    }
}

// Decodes an encoded image held in memory to RGB (Pillow's open + convert("RGB")). `name`
// labels error messages.
inline RgbImage decode_image(std::span<const std::uint8_t> bytes, std::string_view name = "<memory>",
                             const DecodeOptions& opt = {}) {
    switch (detail::require_format(bytes, name)) {
        case ImageFormat::png: return detail::png_decode(bytes, name, opt);
        case ImageFormat::jpeg: return detail::jpeg_decode(bytes, name, opt);
        default: return detail::webp_decode(bytes, name, opt);
    }
}

// The whole file as bytes (IoError when it cannot be read).
inline std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) fail<IoError>("cannot open '", path.string(), "' for reading");
    const std::streamoff n = f.tellg();
    if (n < 0) fail<IoError>("cannot determine the size of '", path.string(), "'");
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(n));
    f.seekg(0);
    if (n > 0 && !f.read(reinterpret_cast<char*>(bytes.data()), n))
        fail<IoError>("cannot read '", path.string(), "'");
    return bytes;
}

// Reads and decodes an image file; errors name the file.
inline RgbImage load_image(const std::filesystem::path& path, const DecodeOptions& opt = {}) {
    const std::vector<std::uint8_t> bytes = read_file_bytes(path);
    return decode_image(bytes, path.string(), opt);
}

}  // namespace pickscore::io
