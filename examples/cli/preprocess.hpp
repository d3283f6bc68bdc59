// examples/cli/preprocess.hpp — the `pickscore preprocess` command:
//
//     pickscore preprocess IMAGE --out FILE [--mode pickscore|hpsv2|resize] [--size N]
//
// Decodes IMAGE (PNG, JPEG or WebP), preprocesses it as the chosen reference pipeline does
// (default: PickScore's CLIPImageProcessor at 224) and writes the normalised float32 tensor
// [3, N, N] to FILE in NumPy's .npy format. Exit status: 0 on success, 1 when the image cannot be
// read or decoded, 2 on a usage error. Needs the pickscore::io target.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include <pickscore/io/image.hpp>
#include <pickscore/io/npy.hpp>

inline constexpr const char* preprocess_usage =
    "usage: pickscore preprocess IMAGE --out FILE [--mode pickscore|hpsv2|resize] [--size N]\n"
    "  decode IMAGE (PNG, JPEG, WebP), preprocess it and write the float32 tensor [3, N, N] as .npy\n"
    "  --mode pickscore  shorter side to N, centre crop, CLIP normalisation (default; what PickScore used)\n"
    "  --mode hpsv2      longer side to N, zero padding to N x N (HPSv2's letterbox)\n"
    "  --mode resize     straight to N x N\n"
    "  --size N          the side of the output (default 224)\n";

// argv[0] is the command's name ("preprocess"); the arguments follow.
inline int cmd_preprocess(int argc, char** argv) {
    auto usage_error = [](const std::string& msg) {
        std::fprintf(stderr, "pickscore preprocess: %s\n%s", msg.c_str(), preprocess_usage);
        return 2;
    };
    std::string image, out;
    pickscore::io::PreprocessOptions opt;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&](std::string_view flag) -> const char* {
            if (i + 1 >= argc) return nullptr;
            (void)flag;
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            std::fputs(preprocess_usage, stdout);
            return 0;
        } else if (a == "--out" || a == "-o") {
            const char* v = value(a);
            if (!v) return usage_error("--out needs a file name");
            out = v;
        } else if (a == "--mode") {
            const char* v = value(a);
            if (!v) return usage_error("--mode needs a value");
            const std::string_view m = v;
            if (m != "pickscore" && m != "hpsv2" && m != "resize")
                return usage_error("unknown mode '" + std::string(m) + "' (pickscore, hpsv2 or resize)");
            opt.mode = pickscore::io::parse_resize_mode(m);
        } else if (a == "--size") {
            const char* v = value(a);
            if (!v) return usage_error("--size needs a number");
            char* end = nullptr;
            const long n = std::strtol(v, &end, 10);
            if (!*v || *end || n < 1 || n > 16384) return usage_error("--size must be an integer in [1, 16384]");
            opt.size = n;
        } else if (a.size() > 1 && a[0] == '-') {
            return usage_error("unknown option '" + std::string(a) + "'");
        } else if (image.empty()) {
            image = a;
        } else {
            return usage_error("more than one image given ('" + image + "', '" + std::string(a) + "')");
        }
    }
    if (image.empty()) return usage_error("no IMAGE given");
    if (out.empty()) return usage_error("no --out FILE given");
    try {
        const pickscore::io::RgbImage img = pickscore::io::load_image(image);
        const pickscore::Tensor<float> t = pickscore::io::preprocess_image(img, opt, /*parallel=*/true);
        pickscore::io::save_npy(out, t);
        std::printf("%s: %lldx%lld -> %s float32 [3, %lld, %lld] (%s)\n", image.c_str(), (long long)img.width,
                    (long long)img.height, out.c_str(), (long long)opt.size, (long long)opt.size,
                    pickscore::io::resize_mode_name(opt.mode));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pickscore preprocess: %s\n", e.what());
        return 1;
    }
}
