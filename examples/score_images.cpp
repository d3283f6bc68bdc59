// score_images — the smallest complete PickScore program: load the model, score images for a
// prompt, print them best first. Copy it and adapt.
//
//     score_images MODEL_DIR "a photo of a cat" cat1.png cat2.jpg ...
//
// MODEL_DIR is what scripts/get_weights.sh downloads (model.safetensors, config.json, tokenizer.json).
// Build it against the pickscore::io target (CMake: target_link_libraries(app PRIVATE pickscore::io)).
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <pickscore/pickscore.hpp>

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s MODEL_DIR PROMPT IMAGE...\n", argv[0]);
        return 2;
    }
    try {
        pickscore::ScorerOptions options;  // preset pickscore, CPU, f32, 8 images per batch
        options.batch = 4;
        // options.device = pickscore::DeviceKind::cuda;   // with a build linked to pickscore::cuda
        // options.dtype = pickscore::DType::bf16;
        pickscore::Scorer scorer(argv[1], options);

        std::vector<pickscore::ImageInput> images(argv + 3, argv + argc);  // file paths
        const pickscore::ScoreResult result = scorer.score(argv[2], images);

        std::printf("prompt: %s\n", result.prompt.c_str());
        for (std::size_t i : result.ranking()) {  // the images that scored, best first
            const pickscore::ImageScore& s = result.images[i];
            std::printf("%8.4f  %6.2f%%  %s\n", s.score, 100.0 * s.probability, s.name.c_str());
        }
        for (const pickscore::ImageScore& s : result.images)  // and those that could not be read
            if (!s.ok()) std::printf("  failed: %s\n", s.error.c_str());
        return result.failed() ? 3 : 0;
    } catch (const std::exception& e) {  // a missing model, an unreadable tokenizer, ...
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
