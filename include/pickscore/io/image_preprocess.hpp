// pickscore/io/image_preprocess.hpp — image -> normalised CHW float tensor, as the reference
// pickscore-requires: pickscore::io
// pipelines do it, and a multi-threaded batch preprocessor.
//
// Modes (PreprocessOptions::mode), S = options.size (224 for ViT-H/14):
//   pickscore  transformers' CLIPImageProcessor (what PickScore used, via
//              AutoProcessor.from_pretrained("laion/CLIP-ViT-H-14-laion2B-s32B-b79K")):
//              convert("RGB"); resize with Pillow BICUBIC so the shorter side is S and the longer
//              int(S * long / short) (truncated); center crop S x S at top = (h - S) // 2,
//              left = (w - S) // 2 (a side shorter than S would be zero-padded first, the pad
//              split with the larger half ceil(d / 2) before the image, as transformers'
//              center_crop does — cannot happen after this resize); x = float32(double(v) *
//              (1/255)); (x - mean) / std in float32.
//   hpsv2      HPSv2's letterbox (open_clip ResizeMaxSize under HPSv2's preprocess_val, which
//              works on the tensor after ToTensor): x = float32(v) / 255; resize with torch's
//              antialiased bicubic (float, a = -0.5; torchvision >= 0.17 default) so the longer
//              side is S and the shorter round(short * S / long) (round half to even); zero-pad
//              to S x S with pad // 2 before and the rest after, the pad value 0 BEFORE
//              normalisation (so it becomes -mean/std); then (x - mean) / std.
//              Deviations: HPSv2 skips resize *and* padding when the longer side already equals
//              S (leaving a non-square tensor the model cannot take): we still pad. HPSv2 keeps
//              RGBA images 4-channel: we drop alpha like every other mode.
//   resize     Pillow BICUBIC straight to S x S (aspect ratio not kept), then rescale and
//              normalise as in pickscore mode.
//   torchvision  OpenAI CLIP's torchvision pipeline, which ImageReward and the LAION aesthetic
//              predictor use: Resize(S, BICUBIC) on the PIL image (the same resize as pickscore
//              mode), CenterCrop(S) at top = round((h - S) / 2) (Python's round: half to even;
//              it differs from pickscore mode's floor when h - S is 3 mod 4), ToTensor
//              (float32(v) / 255 in float32), Normalize in float32. Deviation: the references
//              convert to RGB after resizing, so palette and alpha images are resized in their
//              own mode there (Pillow resizes "P" with NEAREST); here every image is RGB first.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/threads.hpp"
#include "image_decode.hpp"
#include "image_resize.hpp"

namespace pickscore::io {

enum class ResizeMode { pickscore, hpsv2, resize, torchvision };

inline const char* resize_mode_name(ResizeMode m) {
    switch (m) {
        case ResizeMode::pickscore: return "pickscore";
        case ResizeMode::hpsv2: return "hpsv2";
        case ResizeMode::torchvision: return "torchvision";
        default: return "resize";
    }
}

inline ResizeMode parse_resize_mode(std::string_view s) {
    if (s == "pickscore") return ResizeMode::pickscore;
    if (s == "hpsv2") return ResizeMode::hpsv2;
    if (s == "resize") return ResizeMode::resize;
    if (s == "torchvision" || s == "openai") return ResizeMode::torchvision;
    fail<Error>("unknown preprocessing mode '", s, "' (expected pickscore, hpsv2, resize or torchvision)");
}

struct PreprocessOptions {
    ResizeMode mode = ResizeMode::pickscore;
    std::int64_t size = 224;
    // CLIP's (OpenAI's) mean and std. Kept as the Python doubles; converted to float32 as numpy
    // and torch do.
    std::array<double, 3> mean = {0.48145466, 0.4578275, 0.40821073};
    std::array<double, 3> std = {0.26862954, 0.26130258, 0.27577711};
};

namespace detail {

inline void check_preprocess_options(const PreprocessOptions& o) {
    require<ShapeError>(o.size >= 1 && o.size <= 16384, "preprocess: size must be in [1, 16384], got ", o.size);
    for (int c = 0; c < 3; ++c)
        require<Error>(o.std[std::size_t(c)] != 0.0, "preprocess: std[", c, "] is zero");
}

// transformers: rescale in float64 then cast; normalize in float32. One table per channel.
inline std::array<std::array<float, 256>, 3> clip_value_table(const PreprocessOptions& o) {
    std::array<std::array<float, 256>, 3> t;
    for (int c = 0; c < 3; ++c) {
        const float m = float(o.mean[std::size_t(c)]), s = float(o.std[std::size_t(c)]);
        for (int v = 0; v < 256; ++v) {
            const float x = float(double(v) * (1.0 / 255.0));
            const float d = x - m;  // separate statements: no contraction possible
            t[std::size_t(c)][std::size_t(v)] = d / s;
        }
    }
    return t;
}

// torchvision: ToTensor (float32(v) / 255 in float32), then Normalize in float32.
inline std::array<std::array<float, 256>, 3> torchvision_value_table(const PreprocessOptions& o) {
    std::array<std::array<float, 256>, 3> t;
    for (int c = 0; c < 3; ++c) {
        const float m = float(o.mean[std::size_t(c)]), s = float(o.std[std::size_t(c)]);
        for (int v = 0; v < 256; ++v) {
            const float x = float(v) / 255.0f;
            const float d = x - m;
            t[std::size_t(c)][std::size_t(v)] = d / s;
        }
    }
    return t;
}

// Writes the S x S window of `img` whose top-left is (top, left) — parts outside the image are
// zero pixels — as normalised CHW floats.
inline void write_normalised_crop(TensorView<float, Cpu> out, const RgbImage& img, std::int64_t top,
                                  std::int64_t left, const PreprocessOptions& o) {
    const auto table = o.mode == ResizeMode::torchvision ? torchvision_value_table(o) : clip_value_table(o);
    const std::int64_t S = o.size;
    for (int c = 0; c < 3; ++c) {
        float* plane = out.data() + std::int64_t(c) * S * S;
        const float zero = table[std::size_t(c)][0];
        for (std::int64_t y = 0; y < S; ++y) {
            const std::int64_t sy = top + y;
            float* d = plane + y * S;
            if (sy < 0 || sy >= img.height) {
                for (std::int64_t x = 0; x < S; ++x) d[x] = zero;
                continue;
            }
            const std::uint8_t* s = img.row(sy);
            for (std::int64_t x = 0; x < S; ++x) {
                const std::int64_t sx = left + x;
                d[x] = (sx < 0 || sx >= img.width) ? zero : table[std::size_t(c)][s[3 * sx + c]];
            }
        }
    }
}

inline std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    const std::int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// ---- torch's antialiased bicubic on float (for HPSv2) -----------------------------------------
// aten/src/ATen/native/cpu/UpSampleKernel.cpp, _compute_indices_min_size_weights_aa with
// scalar_t = float and HelperInterpCubic::aa_filter (a = -0.5), with its mixed float/double
// promotions kept term by term; width pass first, then height, a pass skipped when its size is
// unchanged; each output is the in-order float sum of pixel * weight. torch's result itself
// depends on its build (which multiply-adds its compiler fused): against torch 1.13 the tensors
// agree to 1.8e-6 at worst (a few float ulps), not bit for bit.

struct TorchAaWeights {
    int max_interp = 0;
    std::vector<std::int64_t> first, count;
    std::vector<float> w;  // out * max_interp
};

// No FMA contraction beyond the explicit std::fma calls (GCC: function option up to the pop;
// clang: a pragma in each function body).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

// cubic_convolution1/2 with A = -0.5 in float. torch's CPU kernels run in their AVX2/AVX512
// builds, where the compiler fuses these multiply-adds into FMAs; fusing them the same way
// reproduces torch's weights far more often than the unfused order (checked against torch 1.13).
inline float torch_aa_cubic(float x) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    constexpr float a = -0.5f;
    x = std::abs(x);
    if (x < 1.0f) return std::fma(std::fma(a + 2, x, -(a + 3)) * x, x, 1.0f);
    if (x < 2.0f) return std::fma(std::fma(std::fma(a, x, -(5 * a)), x, 8 * a), x, -(4 * a));
    return 0.0f;
}

inline TorchAaWeights torch_aa_bicubic_weights(std::int64_t in, std::int64_t out) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    TorchAaWeights r;
    const float scale = float(in) / float(out);  // area_pixel_compute_scale<float>, align_corners=False
    const float support = scale >= 1.0 ? float((4 * 0.5) * scale) : float(4 * 0.5);
    r.max_interp = int(std::ceil(support)) * 2 + 1;
    r.first.resize(std::size_t(out));
    r.count.resize(std::size_t(out));
    r.w.assign(std::size_t(out) * std::size_t(r.max_interp), 0.0f);
    for (std::int64_t i = 0; i < out; ++i) {
        const float center = float(scale * (double(i) + 0.5));
        float total = 0.0f;
        const float invscale = scale >= 1.0 ? float(1.0 / scale) : 1.0f;
        const std::int64_t xmin = std::max(std::int64_t(double(center - support) + 0.5), std::int64_t(0));
        std::int64_t xsize = std::min(std::int64_t(double(center + support) + 0.5), in) - xmin;
        xsize = std::clamp(xsize, std::int64_t(0), std::int64_t(r.max_interp));
        float* w = r.w.data() + std::size_t(i) * std::size_t(r.max_interp);
        for (std::int64_t j = 0; j < xsize; ++j) {
            const float v = torch_aa_cubic(float((double(float(j + xmin) - center) + 0.5) * double(invscale)));
            w[j] = v;
            total += v;
        }
        if (total != 0.0f)
            for (std::int64_t j = 0; j < xsize; ++j) w[j] /= total;
        r.first[std::size_t(i)] = xmin;
        r.count[std::size_t(i)] = xsize;
    }
    return r;
}

// One channel plane [h, w] -> [oh, ow].
inline std::vector<float> torch_aa_bicubic_plane(const std::vector<float>& src, std::int64_t h, std::int64_t w,
                                                 std::int64_t oh, std::int64_t ow) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    std::vector<float> cur = src;
    std::int64_t cw = w;
    if (ow != w) {
        const TorchAaWeights k = torch_aa_bicubic_weights(w, ow);
        std::vector<float> next(std::size_t(h * ow));
        for (std::int64_t y = 0; y < h; ++y)
            for (std::int64_t x = 0; x < ow; ++x) {
                const float* p = cur.data() + y * cw + k.first[std::size_t(x)];
                const float* kw = k.w.data() + x * k.max_interp;
                float acc = p[0] * kw[0];
                for (std::int64_t j = 1; j < k.count[std::size_t(x)]; ++j) acc += p[j] * kw[j];
                next[std::size_t(y * ow + x)] = acc;
            }
        cur.swap(next);
        cw = ow;
    }
    if (oh != h) {
        const TorchAaWeights k = torch_aa_bicubic_weights(h, oh);
        std::vector<float> next(std::size_t(oh * cw));
        for (std::int64_t y = 0; y < oh; ++y) {
            const float* kw = k.w.data() + y * k.max_interp;
            const std::int64_t y0 = k.first[std::size_t(y)];
            for (std::int64_t x = 0; x < cw; ++x) {
                float acc = cur[std::size_t(y0 * cw + x)] * kw[0];
                for (std::int64_t j = 1; j < k.count[std::size_t(y)]; ++j)
                    acc += cur[std::size_t((y0 + j) * cw + x)] * kw[j];
                next[std::size_t(y * cw + x)] = acc;
            }
        }
        cur.swap(next);
    }
    return cur;
}

inline void preprocess_hpsv2(TensorView<float, Cpu> out, const RgbImage& img, const PreprocessOptions& o) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    const std::int64_t S = o.size, h = img.height, w = img.width;
    const double scale = double(S) / double(std::max(h, w));
    std::int64_t nh = h, nw = w;
    if (scale != 1.0) {
        nh = std::int64_t(std::nearbyint(double(h) * scale));  // Python round(): half to even
        nw = std::int64_t(std::nearbyint(double(w) * scale));
    }
    require<ShapeError>(nh >= 1 && nw >= 1 && nh <= S && nw <= S, "preprocess (hpsv2): image ", w, "x", h,
                        " resizes to ", nw, "x", nh, ", which does not fit ", S, "x", S);
    const std::int64_t top = (S - nh) / 2, left = (S - nw) / 2;
    for (int c = 0; c < 3; ++c) {
        std::vector<float> plane(std::size_t(h * w));
        for (std::int64_t i = 0; i < h * w; ++i) plane[std::size_t(i)] = float(img.pixels[std::size_t(3 * i + c)]) / 255.0f;
        const std::vector<float> r = torch_aa_bicubic_plane(plane, h, w, nh, nw);
        const float m = float(o.mean[std::size_t(c)]), s = float(o.std[std::size_t(c)]);
        float* d = out.data() + std::int64_t(c) * S * S;
        for (std::int64_t y = 0; y < S; ++y)
            for (std::int64_t x = 0; x < S; ++x) {
                const std::int64_t sy = y - top, sx = x - left;
                const float v = (sy >= 0 && sy < nh && sx >= 0 && sx < nw) ? r[std::size_t(sy * nw + sx)] : 0.0f;
                const float dv = v - m;
                d[y * S + x] = dv / s;
            }
    }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

}  // namespace detail

// The (width, height) the pickscore mode resizes an image to before cropping (transformers'
// get_resize_output_image_size with shortest_edge = size).
inline std::pair<std::int64_t, std::int64_t> shortest_edge_size(std::int64_t width, std::int64_t height,
                                                                 std::int64_t size) {
    const std::int64_t shortest = std::min(width, height), longest = std::max(width, height);
    const std::int64_t new_long = std::int64_t(double(size * longest) / double(shortest));
    return width <= height ? std::pair{size, new_long} : std::pair{new_long, size};
}

// The resized uint8 image each mode feeds to its crop (pickscore, resize); the hpsv2 mode resizes
// in float and has no uint8 stage, so it is rejected here.
inline RgbImage resized_for_preprocess(const RgbImage& img, const PreprocessOptions& o, bool parallel = false) {
    detail::check_preprocess_options(o);
    require<ShapeError>(img.width > 0 && img.height > 0, "preprocess: empty image");
    if (o.mode == ResizeMode::resize) return resize_bicubic(img, o.size, o.size, parallel);
    require<Error>(o.mode == ResizeMode::pickscore || o.mode == ResizeMode::torchvision,
                   "resized_for_preprocess: the hpsv2 mode resizes in float");
    const auto [w, h] = shortest_edge_size(img.width, img.height, o.size);
    return resize_bicubic(img, w, h, parallel);
}

// Preprocesses one RGB image into out [3, S, S] (S = o.size).
inline void preprocess_image(TensorView<float, Cpu> out /*3,S,S*/, const RgbImage& img,
                             const PreprocessOptions& o = {}, bool parallel = false) {
    detail::check_preprocess_options(o);
    const std::int64_t S = o.size;
    require<ShapeError>(out.shape() == Shape{3, S, S}, "preprocess_image: out has shape ", out.shape(),
                        " but the options ask for [3, ", S, ", ", S, "]");
    require<ShapeError>(img.width > 0 && img.height > 0 &&
                            std::int64_t(img.pixels.size()) == img.width * img.height * 3,
                        "preprocess_image: image is ", img.width, "x", img.height, " with ", img.pixels.size(),
                        " bytes");
    if (o.mode == ResizeMode::hpsv2) {
        detail::preprocess_hpsv2(out, img, o);
        return;
    }
    const RgbImage r = resized_for_preprocess(img, o, parallel);
    // transformers' center_crop: top = (h - S) // 2 (floor division). When the image is smaller
    // than the crop it is first padded with ceil((S - h) / 2) zero rows before it; both cases
    // reduce to the window origin below.
    std::int64_t top = detail::floor_div(r.height - S, 2), left = detail::floor_div(r.width - S, 2);
    if (r.height < S) top = -((S - r.height + 1) / 2);
    if (r.width < S) left = -((S - r.width + 1) / 2);
    if (o.mode == ResizeMode::torchvision) {
        // torchvision's center_crop: int(round((h - S) / 2.0)) (half to even); a smaller image is
        // padded with (S - h) // 2 zero rows before it.
        top = r.height >= S ? std::int64_t(std::nearbyint(double(r.height - S) / 2.0)) : -((S - r.height) / 2);
        left = r.width >= S ? std::int64_t(std::nearbyint(double(r.width - S) / 2.0)) : -((S - r.width) / 2);
    }
    detail::write_normalised_crop(out, r, top, left, o);
}

inline Tensor<float, Cpu> preprocess_image(const RgbImage& img, const PreprocessOptions& o = {},
                                           bool parallel = false) {
    detail::check_preprocess_options(o);
    Tensor<float, Cpu> out(Shape{3, o.size, o.size});
    preprocess_image(out, img, o, parallel);
    return out;
}

// ---- batches -----------------------------------------------------------------------------------

// A batch [B, 3, S, S]; errors[i] is empty for an image that worked, else its message (and its
// slot in `pixels` is zero).
struct PreprocessedBatch {
    Tensor<float, Cpu> pixels;
    std::vector<std::string> errors;

    bool ok(std::size_t i) const { return errors.at(i).empty(); }
    std::size_t failed() const {
        std::size_t n = 0;
        for (const auto& e : errors) n += !e.empty();
        return n;
    }
};

namespace detail {

template <class Load>
PreprocessedBatch preprocess_batch_impl(std::size_t n, const PreprocessOptions& o, Load&& load) {
    check_preprocess_options(o);
    PreprocessedBatch b;
    b.pixels = Tensor<float, Cpu>::zeros(Shape{std::int64_t(n), 3, o.size, o.size});
    b.errors.assign(n, std::string());
    // One image per task; each is decoded and resized on one thread. Errors stay with their image.
    parallel_for(std::int64_t(n), [&](std::int64_t i) {
        TensorView<float, Cpu> slot = b.pixels.select(i);
        try {
            preprocess_image(slot, load(std::size_t(i)), o, /*parallel=*/false);
        } catch (const std::exception& e) {
            b.errors[std::size_t(i)] = e.what();
            zero(slot);
        } catch (...) {
            b.errors[std::size_t(i)] = "unknown error";
            zero(slot);
        }
    });
    return b;
}

}  // namespace detail

// Decodes and preprocesses image files on the thread pool.
inline PreprocessedBatch preprocess_files(std::span<const std::filesystem::path> paths,
                                          const PreprocessOptions& o = {}, const DecodeOptions& d = {}) {
    return detail::preprocess_batch_impl(paths.size(), o, [&](std::size_t i) { return load_image(paths[i], d); });
}

// Decodes and preprocesses encoded images held in memory (names label the errors; may be empty).
inline PreprocessedBatch preprocess_encoded(std::span<const std::span<const std::uint8_t>> images,
                                            std::span<const std::string> names = {},
                                            const PreprocessOptions& o = {}, const DecodeOptions& d = {}) {
    return detail::preprocess_batch_impl(images.size(), o, [&](std::size_t i) {
        const std::string name = i < names.size() ? names[i] : "image #" + std::to_string(i);
        return decode_image(images[i], name, d);
    });
}

// Preprocesses already-decoded images on the thread pool.
inline PreprocessedBatch preprocess_images(std::span<const RgbImage> images, const PreprocessOptions& o = {}) {
    return detail::preprocess_batch_impl(images.size(), o, [&](std::size_t i) -> const RgbImage& { return images[i]; });
}

}  // namespace pickscore::io
