// pickscore/io/image_resize.hpp — Pillow's `Image.resize(size, Image.BICUBIC)` for 8-bit RGB,
// pickscore-requires: pickscore::io
// reproduced to the bit (Pillow 11.3, src/libImaging/Resample.c; `reducing_gap=None`, which is
// what transformers' CLIPImageProcessor passes).
//
// The algorithm, as Pillow runs it:
//   * Separable: one 1-D resampling along x over the source rows that the vertical pass needs,
//     then one along y. A pass whose size does not change is skipped (both skipped: a copy).
//   * Per axis: scale = in / out; filterscale = max(scale, 1) (antialiasing: the kernel widens when
//     downscaling); support = 2 * filterscale; for output index i, center = (i + 0.5) * scale,
//     taps xmin = max(int(center - support + 0.5), 0) .. xmax = min(int(center + support + 0.5), in),
//     weight w_j = cubic((j + xmin - center + 0.5) / filterscale) with a = -0.5, all in double,
//     normalised by their sum.
//   * Weights become fixed point with PRECISION_BITS = 32 - 8 - 2 = 22 bits (not 8), rounded half
//     away from zero; each output is (2^21 + sum(pixel * weight)) >> 22 in int32, clipped to 0..255.
//     The intermediate image between the passes is uint8.
// The double arithmetic must not be contracted into FMAs (that changes weights in the last bit
// and so, rarely, a pixel): the weight code is compiled with contraction off.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../core/threads.hpp"
#include "image_decode.hpp"

namespace pickscore::io {

namespace detail {

// Pillow's fixed-point resampling weights for one axis.
struct ResampleWeights {
    int ksize = 0;                 // taps per output sample (row stride of `k`)
    std::vector<int> first;        // first source index per output sample
    std::vector<int> count;        // number of taps per output sample
    std::vector<std::int32_t> k;   // out_size * ksize fixed-point weights (2^22 = 1.0)
};

inline constexpr int resample_precision_bits = 32 - 8 - 2;

// GCC: a function-level option for the functions up to the matching pop. Clang: a pragma at the
// top of each function body (scoped to it).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

// Pillow's bicubic_filter, a = -0.5, evaluated in the same order.
inline double pillow_bicubic(double x) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    constexpr double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// precompute_coeffs + normalize_coeffs_8bpc for box [0, in_size) and support 2.
inline ResampleWeights pillow_bicubic_weights(int in_size, int out_size) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    const float in0 = 0.0f, in1 = float(in_size);
    double filterscale, scale;
    filterscale = scale = double(in1 - in0) / out_size;
    if (filterscale < 1.0) filterscale = 1.0;
    const double support = 2.0 * filterscale;
    ResampleWeights r;
    r.ksize = int(std::ceil(support)) * 2 + 1;
    r.first.resize(std::size_t(out_size));
    r.count.resize(std::size_t(out_size));
    r.k.assign(std::size_t(out_size) * std::size_t(r.ksize), 0);
    std::vector<double> w(std::size_t(r.ksize));
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        const double ss = 1.0 / filterscale;
        int xmin = int(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = int(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; ++x) {
            const double v = pillow_bicubic((x + xmin - center + 0.5) * ss);
            w[std::size_t(x)] = v;
            ww += v;
        }
        for (int x = 0; x < xmax; ++x)
            if (ww != 0.0) w[std::size_t(x)] /= ww;
        std::int32_t* k = r.k.data() + std::size_t(xx) * std::size_t(r.ksize);
        for (int x = 0; x < xmax; ++x) {
            const double v = w[std::size_t(x)];
            k[x] = v < 0 ? int(-0.5 + v * (1 << resample_precision_bits)) : int(0.5 + v * (1 << resample_precision_bits));
        }
        r.first[std::size_t(xx)] = xmin;
        r.count[std::size_t(xx)] = xmax;
    }
    return r;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

inline std::uint8_t resample_clip8(std::int32_t acc) {
    const std::int32_t v = acc >> resample_precision_bits;
    return v < 0 ? 0 : v > 255 ? 255 : std::uint8_t(v);
}

// Runs fn(begin, end) over [0, n) in blocks, on the thread pool when `parallel`.
template <class F>
void for_row_blocks(std::int64_t n, bool parallel, F&& fn) {
    if (!parallel || n < 16 || num_threads() == 1) {
        fn(std::int64_t(0), n);
        return;
    }
    const std::int64_t blocks = std::min<std::int64_t>(n, std::int64_t(num_threads()) * 4);
    parallel_for(blocks, [&](std::int64_t b) { fn(n * b / blocks, n * (b + 1) / blocks); });
}

}  // namespace detail

// Pillow's Image.resize((out_width, out_height), Image.BICUBIC) on an RGB image, bit for bit.
// `parallel` splits rows over the thread pool (leave it off when already inside a parallel_for).
inline RgbImage resize_bicubic(const RgbImage& in, std::int64_t out_width, std::int64_t out_height,
                               bool parallel = false) {
    constexpr std::int64_t max_side = std::int64_t(1) << 24;  // Pillow's float box stays exact below
    require<ShapeError>(in.width > 0 && in.height > 0 &&
                            std::int64_t(in.pixels.size()) == in.width * in.height * 3,
                        "resize_bicubic: input image is ", in.width, "x", in.height, " with ", in.pixels.size(),
                        " bytes (expected width*height*3, both positive)");
    require<ShapeError>(out_width > 0 && out_height > 0 && out_width < max_side && out_height < max_side &&
                            in.width < max_side && in.height < max_side,
                        "resize_bicubic: cannot resize ", in.width, "x", in.height, " to ", out_width, "x",
                        out_height, " (sizes must be in [1, 2^24))");
    const bool need_h = out_width != in.width;
    const bool need_v = out_height != in.height;
    if (!need_h && !need_v) return in;

    const int in_w = int(in.width), in_h = int(in.height), ow = int(out_width), oh = int(out_height);
    detail::ResampleWeights wv = detail::pillow_bicubic_weights(in_h, oh);
    // Source rows the vertical pass reads.
    const int y_first = wv.first.front();
    const int y_last = wv.first.back() + wv.count.back();

    RgbImage tmp;
    const RgbImage* src = &in;
    int row_offset = 0;  // source row index of src's row 0, as the vertical weights see it
    if (need_h) {
        const detail::ResampleWeights wh = detail::pillow_bicubic_weights(in_w, ow);
        tmp.width = ow;
        tmp.height = y_last - y_first;
        tmp.pixels.resize(std::size_t(tmp.width * tmp.height * 3));
        detail::for_row_blocks(tmp.height, parallel, [&](std::int64_t r0, std::int64_t r1) {
            for (std::int64_t y = r0; y < r1; ++y) {
                const std::uint8_t* s = in.row(y + y_first);
                std::uint8_t* d = tmp.row(y);
                for (int xx = 0; xx < ow; ++xx) {
                    const std::int32_t* k = wh.k.data() + std::size_t(xx) * std::size_t(wh.ksize);
                    const std::uint8_t* p = s + std::size_t(wh.first[std::size_t(xx)]) * 3;
                    const int n = wh.count[std::size_t(xx)];
                    std::int32_t a0 = 1 << (detail::resample_precision_bits - 1), a1 = a0, a2 = a0;
                    for (int x = 0; x < n; ++x) {
                        a0 += std::int32_t(p[3 * x + 0]) * k[x];
                        a1 += std::int32_t(p[3 * x + 1]) * k[x];
                        a2 += std::int32_t(p[3 * x + 2]) * k[x];
                    }
                    d[3 * xx + 0] = detail::resample_clip8(a0);
                    d[3 * xx + 1] = detail::resample_clip8(a1);
                    d[3 * xx + 2] = detail::resample_clip8(a2);
                }
            }
        });
        src = &tmp;
        row_offset = y_first;
    }
    if (!need_v) return tmp;

    RgbImage out;
    out.width = src->width;
    out.height = oh;
    out.pixels.resize(std::size_t(out.width * out.height * 3));
    const std::int64_t row_len = src->width * 3;
    detail::for_row_blocks(oh, parallel, [&](std::int64_t r0, std::int64_t r1) {
        // Integer sums are exact, so accumulating tap by tap over a whole row (cache friendly)
        // gives Pillow's per-pixel sums.
        std::vector<std::int32_t> acc(static_cast<std::size_t>(row_len));
        for (std::int64_t yy = r0; yy < r1; ++yy) {
            const std::int32_t* k = wv.k.data() + std::size_t(yy) * std::size_t(wv.ksize);
            const int y0 = wv.first[std::size_t(yy)] - row_offset;
            const int n = wv.count[std::size_t(yy)];
            std::fill(acc.begin(), acc.end(), std::int32_t(1) << (detail::resample_precision_bits - 1));
            for (int y = 0; y < n; ++y) {
                const std::uint8_t* s = src->row(y0 + y);
                const std::int32_t ky = k[y];
                for (std::int64_t i = 0; i < row_len; ++i) acc[std::size_t(i)] += std::int32_t(s[i]) * ky;
            }
            std::uint8_t* d = out.row(yy);
            for (std::int64_t i = 0; i < row_len; ++i) d[i] = detail::resample_clip8(acc[std::size_t(i)]);
        }
    });
    return out;
}

}  // namespace pickscore::io
