// libFuzzer target for the image decoders; the build picks one entry point with a definition:
//   PICKSCORE_FUZZ_PNG / _JPEG / _WEBP  that decoder directly (probe, then decode), whatever the
//                                       first bytes are (each library checks its own signature)
//   PICKSCORE_FUZZ_ANY_IMAGE            the public path: sniffing, decode_image, then every
//                                       preprocessing mode at a small size (the resamplers too)
// Any pickscore::Error is an expected outcome; anything else (a crash, a sanitizer report, another
// exception escaping) is a finding.
#include <cstddef>
#include <cstdint>
#include <span>

#include "pickscore/io/image.hpp"

namespace io = pickscore::io;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::uint8_t> bytes(data, size);
    io::DecodeOptions opt;
    opt.max_pixels = 1 << 22;  // 4 Mpx keeps every run within libFuzzer's memory and time limits
    opt.max_jpeg_scans = 100;
    try {
#if defined(PICKSCORE_FUZZ_PNG)
        (void)io::detail::png_probe(bytes, "fuzz.png");
        (void)io::detail::png_decode(bytes, "fuzz.png", opt);
#elif defined(PICKSCORE_FUZZ_JPEG)
        (void)io::detail::jpeg_probe(bytes, "fuzz.jpg");
        (void)io::detail::jpeg_decode(bytes, "fuzz.jpg", opt);
#elif defined(PICKSCORE_FUZZ_WEBP)
        (void)io::detail::webp_probe(bytes, "fuzz.webp");
        (void)io::detail::webp_decode(bytes, "fuzz.webp", opt);
#elif defined(PICKSCORE_FUZZ_ANY_IMAGE)
        (void)io::sniff_image_format(bytes);
        const io::RgbImage img = io::decode_image(bytes, "fuzz", opt);
        if (img.width * img.height <= (1 << 20)) {
            for (io::ResizeMode m : {io::ResizeMode::pickscore, io::ResizeMode::hpsv2, io::ResizeMode::resize}) {
                io::PreprocessOptions p;
                p.mode = m;
                p.size = 16;
                (void)io::preprocess_image(img, p);
            }
        }
#else
#error "define one of PICKSCORE_FUZZ_PNG, PICKSCORE_FUZZ_JPEG, PICKSCORE_FUZZ_WEBP, PICKSCORE_FUZZ_ANY_IMAGE"
#endif
    } catch (const pickscore::Error&) {
        // rejected input: expected
    }
    return 0;
}
