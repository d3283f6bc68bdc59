// pickscore/data/synthetic.hpp — a preference data set the program draws itself: coloured shapes
// on coloured backgrounds, prompts that describe them, and pairs where the image that matches the
// prompt is preferred. For the learning test, the offline demonstration and the data tests: no
// download, and a right answer for every pair.
// pickscore-requires: pickscore::io
//
//   data::SyntheticOptions o{.image_size = 32, .seed = 7};
//   std::vector<data::Example> train = data::make_synthetic_preferences(2000, data::Split::train, o);
//   data::write_shard("synthetic.pshard", train);   // or data::Dataset::from_examples(train)
//
// A scene is a shape (circle, square, triangle) of one colour on a background of another (six
// colours), placed and sized at random, drawn with a little per-pixel noise. Its prompt is
// "a red circle on a blue background". An example pairs an image of the prompt's scene with either
//   - an image that differs in one respect — the shape's colour, the shape, the background colour,
//     or the two colours swapped (SyntheticOptions::mismatch_weights) — and the matching image is
//     preferred (label 1 vs 0), or
//   - (tie_fraction of the examples) another image of the same scene: a tie [0.5, 0.5];
// the preferred image goes into slot 0 or 1 at random. num_example_per_prompt is the number of
// examples of the generated set with the same prompt, as in Pick-a-Pic. Images are PNG-encoded.
// Everything follows from the seed.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../io/image_decode.hpp"
#include "png.hpp"
#include "shard.hpp"

namespace pickscore::data {

struct SyntheticColor {
    const char* name;
    std::uint8_t r, g, b;
};

inline const std::array<SyntheticColor, 6>& synthetic_colors() {
    static const std::array<SyntheticColor, 6> c = {{{"red", 215, 40, 40},
                                                      {"green", 40, 170, 60},
                                                      {"blue", 45, 75, 215},
                                                      {"yellow", 235, 210, 45},
                                                      {"purple", 145, 60, 190},
                                                      {"white", 240, 240, 240}}};
    return c;
}

inline const std::array<const char*, 3>& synthetic_shapes() {
    static const std::array<const char*, 3> s = {"circle", "square", "triangle"};
    return s;
}

struct SyntheticScene {
    int shape = 0, color = 0, background = 1;
    double cx = 0.5, cy = 0.5, size = 0.3;  // centre and half-size, as fractions of the image side

    bool same_content(const SyntheticScene& o) const {
        return shape == o.shape && color == o.color && background == o.background;
    }
};

struct SyntheticOptions {
    std::int64_t image_size = 32;
    std::uint64_t seed = 1;
    double tie_fraction = 0.1;
    int noise = 10;  // per-pixel noise amplitude (0..255 scale)
    // How often a non-tie pair's other image differs in the shape's colour, the shape, the
    // background colour, or has the two colours swapped (relative weights). Colours are learned
    // first and fast (a small model's pooled features start out close to a colour histogram);
    // shapes and swaps (which need each colour bound to its word) take a small model many more steps.
    std::array<double, 4> mismatch_weights = {1.0, 0.5, 1.0, 0.0};
};

// "a red circle on a blue background"
inline std::string describe(const SyntheticScene& s) {
    return std::string("a ") + synthetic_colors()[std::size_t(s.color)].name + " " +
           synthetic_shapes()[std::size_t(s.shape)] + " on a " +
           synthetic_colors()[std::size_t(s.background)].name + " background";
}

// A random placement of the given content.
inline SyntheticScene place_scene(int shape, int color, int background, Rng& rng, double jitter = 0.1) {
    SyntheticScene s{shape, color, background};
    s.size = rng.uniform(0.28, 0.33);
    s.cx = 0.5 + rng.uniform(-jitter, jitter);
    s.cy = 0.5 + rng.uniform(-jitter, jitter);
    return s;
}

inline SyntheticScene random_scene(Rng& rng) {
    const int nc = int(synthetic_colors().size());
    const int shape = int(rng.below(synthetic_shapes().size()));
    const int color = int(rng.below(std::uint64_t(nc)));
    int bg = int(rng.below(std::uint64_t(nc - 1)));
    if (bg >= color) ++bg;
    return place_scene(shape, color, bg, rng);
}

// Whether pixel centre (x, y) (in fractions of the side) lies inside the scene's shape.
inline bool inside_shape(const SyntheticScene& s, double x, double y) {
    const double dx = x - s.cx, dy = y - s.cy, r = s.size;
    switch (s.shape) {
        case 0: return dx * dx + dy * dy <= r * r;
        case 1: return std::abs(dx) <= r * 0.9 && std::abs(dy) <= r * 0.9;
        default: {  // an upward triangle, apex at cy - r, base 2r wide at cy + r
            if (dy < -r || dy > r) return false;
            return std::abs(dx) <= (dy + r) / 2;
        }
    }
}

inline io::RgbImage draw_scene(const SyntheticScene& s, std::int64_t size, Rng& rng, int noise = 10) {
    require(size >= 4, "draw_scene: image size ", size, " is too small");
    io::RgbImage img;
    img.width = img.height = size;
    img.pixels.resize(std::size_t(size * size * 3));
    const SyntheticColor& fg = synthetic_colors()[std::size_t(s.color)];
    const SyntheticColor& bg = synthetic_colors()[std::size_t(s.background)];
    for (std::int64_t y = 0; y < size; ++y)
        for (std::int64_t x = 0; x < size; ++x) {
            const bool in = inside_shape(s, (double(x) + 0.5) / double(size), (double(y) + 0.5) / double(size));
            const SyntheticColor& c = in ? fg : bg;
            std::uint8_t* px = img.row(y) + 3 * x;
            const std::uint8_t base[3] = {c.r, c.g, c.b};
            for (int k = 0; k < 3; ++k) {
                const int n = noise > 0 ? int(rng.below(std::uint64_t(2 * noise + 1))) - noise : 0;
                px[k] = std::uint8_t(std::clamp(int(base[k]) + n, 0, 255));
            }
        }
    return img;
}

// A scene like `s` that differs in one respect (kind 0: shape colour, 1: shape, 2: background,
// 3: the two colours swapped), placed anew.
inline SyntheticScene mismatch(const SyntheticScene& s, int kind, Rng& rng) {
    const int nc = int(synthetic_colors().size());
    int shape = s.shape, color = s.color, bg = s.background;
    switch (kind) {
        case 0:
            do color = int(rng.below(std::uint64_t(nc)));
            while (color == s.color || color == bg);
            break;
        case 1: shape = (s.shape + 1 + int(rng.below(2))) % 3; break;
        case 2:
            do bg = int(rng.below(std::uint64_t(nc)));
            while (bg == s.background || bg == color);
            break;
        default: std::swap(color, bg); break;
    }
    return place_scene(shape, color, bg, rng);
}

inline int pick_mismatch(const std::array<double, 4>& w, Rng& rng) {
    double total = 0;
    for (double x : w) {
        require(x >= 0 && std::isfinite(x), "SyntheticOptions: mismatch weights must be non-negative");
        total += x;
    }
    require(total > 0, "SyntheticOptions: the mismatch weights are all zero");
    double u = rng.uniform() * total;
    for (int k = 0; k < 4; ++k) {
        if (u < w[std::size_t(k)]) return k;
        u -= w[std::size_t(k)];
    }
    return 3;
}

// One drawn example with its scenes (for the demo's ranking table).
struct SyntheticExample {
    Example example;
    SyntheticScene prompt_scene, scene0, scene1;
};

inline std::vector<SyntheticExample> make_synthetic_examples(std::int64_t n, Split split, const SyntheticOptions& o) {
    require(n >= 0, "make_synthetic_preferences: negative count ", n);
    Rng rng(o.seed * 0x2545F4914F6CDD1Dull + std::uint64_t(split) + 1);
    std::vector<SyntheticExample> out;
    out.reserve(std::size_t(n));
    for (std::int64_t i = 0; i < n; ++i) {
        SyntheticExample se;
        const SyntheticScene want = random_scene(rng);
        const bool tie = rng.uniform() < o.tie_fraction;
        const SyntheticScene good = place_scene(want.shape, want.color, want.background, rng);
        const SyntheticScene other = tie ? place_scene(want.shape, want.color, want.background, rng)
                                         : mismatch(want, pick_mismatch(o.mismatch_weights, rng), rng);
        const bool good_first = rng.below(2) == 0;
        se.prompt_scene = want;
        se.scene0 = good_first ? good : other;
        se.scene1 = good_first ? other : good;
        Example& e = se.example;
        e.caption = describe(want);
        e.image0 = encode_png(draw_scene(se.scene0, o.image_size, rng, o.noise), 1);
        e.image1 = encode_png(draw_scene(se.scene1, o.image_size, rng, o.noise), 1);
        if (tie) {
            e.label0 = e.label1 = 0.5f;
        } else {
            e.label0 = good_first ? 1.0f : 0.0f;
            e.label1 = 1.0f - e.label0;
        }
        e.split = split;
        e.has_label = true;
        e.are_different = !tie;
        e.ranking_id = i;
        e.user_id = std::int64_t(rng.below(50));
        out.push_back(std::move(se));
    }
    std::map<std::string, std::uint32_t> per_prompt;
    for (const auto& se : out) ++per_prompt[se.example.caption];
    for (auto& se : out) se.example.num_example_per_prompt = per_prompt[se.example.caption];
    return out;
}

// The examples alone.
inline std::vector<Example> make_synthetic_preferences(std::int64_t n, Split split, const SyntheticOptions& o) {
    std::vector<Example> out;
    for (auto& se : make_synthetic_examples(n, split, o)) out.push_back(std::move(se.example));
    return out;
}

}  // namespace pickscore::data
