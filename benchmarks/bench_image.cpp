// bench_image: images/s for decode + PickScore preprocessing (decode, Pillow-exact resize to a
// 224 shorter side, centre crop, normalise) of 512x512 and 1024x1024 PNG and JPEG images.
//
//   BM_Decode/<fmt>/<side>              decoding alone, one thread
//   BM_DecodePreprocess/<fmt>/<side>/<threads>   one image at a time; the resize uses <threads>
//   BM_Batch/<fmt>/<side>/<threads>     preprocess_encoded over a batch of 32 images on <threads>
//
// The test images are made here: a smooth synthetic scene with some noise, encoded with libpng
// (default compression) and libjpeg (quality 90, 4:2:0), like typical generated images.
// tools/bench_image_pillow.py times Pillow + transformers' CLIPImageProcessor on the same kind of
// images for comparison.
#include <benchmark/benchmark.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include <jpeglib.h>

#include "pickscore/core/threads.hpp"
#include "pickscore/io/image.hpp"

namespace {

using pickscore::io::RgbImage;

RgbImage scene(int w, int h) {
    RgbImage img;
    img.width = w;
    img.height = h;
    img.pixels.resize(std::size_t(w) * std::size_t(h) * 3);
    std::uint32_t seed = 12345;
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            seed = seed * 1664525u + 1013904223u;
            const double fx = double(x) / w, fy = double(y) / h, noise = double(seed >> 24) / 255.0 - 0.5;
            const double v[3] = {0.5 + 0.4 * std::sin(6.0 * fx + 2.0 * fy), 0.2 + 0.6 * fy,
                                 0.5 + 0.3 * std::cos(9.0 * fy - 3.0 * fx)};
            for (int c = 0; c < 3; ++c) {
                const double s = std::clamp(v[c] + 0.06 * noise, 0.0, 1.0);
                img.row(y)[3 * x + c] = std::uint8_t(std::lround(s * 255));
            }
        }
    return img;
}

void png_write_to_vector(png_structp png, png_bytep data, png_size_t n) {
    auto* out = static_cast<std::vector<std::uint8_t>*>(png_get_io_ptr(png));
    out->insert(out->end(), data, data + n);
}

std::vector<std::uint8_t> encode_png(const RgbImage& img) {
    std::vector<std::uint8_t> out;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        std::fprintf(stderr, "bench_image: PNG encoding failed\n");
        return {};
    }
    png_set_write_fn(png, &out, png_write_to_vector, nullptr);
    png_set_IHDR(png, info, png_uint_32(img.width), png_uint_32(img.height), 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (std::int64_t y = 0; y < img.height; ++y) png_write_row(png, const_cast<png_bytep>(img.row(y)));
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    return out;
}

std::vector<std::uint8_t> encode_jpeg(const RgbImage& img) {
    jpeg_compress_struct c;
    jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);  // encoding our own valid image cannot fail
    jpeg_create_compress(&c);
    unsigned char* buf = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = JDIMENSION(img.width);
    c.image_height = JDIMENSION(img.height);
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = const_cast<JSAMPROW>(img.row(c.next_scanline));
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    std::vector<std::uint8_t> out(buf, buf + size);
    jpeg_destroy_compress(&c);
    std::free(buf);
    return out;
}

const std::vector<std::uint8_t>& encoded(int format, int side) {
    static std::vector<std::uint8_t> cache[2][2];
    std::vector<std::uint8_t>& slot = cache[format][side == 1024];
    if (slot.empty()) slot = format == 0 ? encode_png(scene(side, side)) : encode_jpeg(scene(side, side));
    return slot;
}

const char* format_label(int f) { return f == 0 ? "png" : "jpeg"; }

void BM_Decode(benchmark::State& state) {
    const int fmt = int(state.range(0)), side = int(state.range(1));
    const std::vector<std::uint8_t>& bytes = encoded(fmt, side);
    for (auto _ : state) benchmark::DoNotOptimize(pickscore::io::decode_image(bytes).pixels.data());
    state.SetItemsProcessed(state.iterations());
    state.SetLabel(std::string(format_label(fmt)) + " " + std::to_string(bytes.size() / 1024) + " KiB");
}

void BM_DecodePreprocess(benchmark::State& state) {
    const int fmt = int(state.range(0)), side = int(state.range(1)), threads = int(state.range(2));
    const std::vector<std::uint8_t>& bytes = encoded(fmt, side);
    pickscore::set_num_threads(threads);
    pickscore::Tensor<float> out(pickscore::Shape{3, 224, 224});
    for (auto _ : state) {
        const RgbImage img = pickscore::io::decode_image(bytes);
        pickscore::io::preprocess_image(out, img, {}, /*parallel=*/threads > 1);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations());
    state.SetLabel(format_label(fmt));
}

void BM_Batch(benchmark::State& state) {
    const int fmt = int(state.range(0)), side = int(state.range(1)), threads = int(state.range(2));
    constexpr int batch = 32;
    const std::vector<std::uint8_t>& bytes = encoded(fmt, side);
    const std::vector<std::span<const std::uint8_t>> images(batch, std::span<const std::uint8_t>(bytes));
    pickscore::set_num_threads(threads);
    for (auto _ : state) {
        const pickscore::io::PreprocessedBatch b = pickscore::io::preprocess_encoded(images);
        if (b.failed()) state.SkipWithError("an image failed");
        benchmark::DoNotOptimize(b.pixels.data());
    }
    state.SetItemsProcessed(state.iterations() * batch);
    state.SetLabel(format_label(fmt));
}

// Arguments: format (0 = PNG, 1 = JPEG), side, threads.
BENCHMARK(BM_Decode)->ArgsProduct({{0, 1}, {512, 1024}})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodePreprocess)->ArgsProduct({{0, 1}, {512, 1024}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Batch)->ArgsProduct({{0, 1}, {512, 1024}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
