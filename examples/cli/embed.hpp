// examples/cli/embed.hpp — the `pickscore embed` command:
//
//     pickscore embed --model PATH [--prompt TEXT]... [--prompts FILE] [IMAGE...] --out FILE [model flags]
//
// Writes the L2-normalised embeddings (float32): to FILE.safetensors as the tensors "text" [P, E]
// and "images" [N, E] (whichever were asked for) with the prompts, image paths, failed image
// indices, preset and model in the metadata (JSON strings); or to FILE.npy, which holds one array,
// so either prompts or images. A failed image keeps a zero row and makes the exit status 3 (see
// examples/cli/scoring.hpp). Needs pickscore::io.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <pickscore/io/json.hpp>
#include <pickscore/io/npy.hpp>
#include <pickscore/io/safetensors.hpp>
#include <pickscore/pickscore.hpp>

#include "scoring.hpp"

inline constexpr const char* embed_usage =
    "usage: pickscore embed --model PATH [--prompt TEXT]... [--prompts FILE] [IMAGE...] --out FILE [model flags]\n"
    "  write the L2-normalised text and/or image embeddings (float32)\n"
    "  --prompt TEXT        a prompt (repeatable)\n"
    "  --prompts FILE       prompts, one per line\n"
    "  --out FILE           FILE.safetensors: tensors \"text\" [P, E] and \"images\" [N, E], with the prompts,\n"
    "                       image paths and failed images in the metadata; FILE.npy: one array (prompts or\n"
    "                       images, not both)\n";

namespace pickscore_cli {

inline int run_embed(int argc, char** argv) {
    std::vector<std::string> prompts, images;
    std::string out;
    ScorerFlags flags;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw UsageProblem{std::string(a) + " needs a value"};
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            std::printf("%s%s", embed_usage, scorer_flags_usage);
            return 0;
        } else if (flags.parse(argc, argv, i)) {
        } else if (a == "--prompt") {
            prompts.push_back(value());
        } else if (a == "--prompts") {
            const std::string f = value();
            std::ifstream in(f);
            if (!in) pickscore::fail<pickscore::IoError>("--prompts: cannot open '", f, "'");
            std::string line;
            while (std::getline(in, line)) {
                if (!line.empty() && line.back() == '\r') line.pop_back();
                prompts.push_back(line);
            }
        } else if (a == "--out" || a == "-o") {
            out = value();
        } else if (a == "--") {
            for (++i; i < argc; ++i) images.emplace_back(argv[i]);
        } else if (a.size() > 1 && a[0] == '-') {
            throw UsageProblem{"unknown option '" + std::string(a) + "'"};
        } else {
            images.emplace_back(a);
        }
    }
    if (out.empty()) throw UsageProblem{"missing --out FILE (.safetensors or .npy)"};
    if (prompts.empty() && images.empty()) throw UsageProblem{"nothing to embed: give --prompt TEXT and/or images"};
    const std::string ext = std::filesystem::path(out).extension().string();
    if (ext != ".safetensors" && ext != ".npy") throw UsageProblem{"--out must end in .safetensors or .npy"};
    if (ext == ".npy" && !prompts.empty() && !images.empty())
        throw UsageProblem{"a .npy file holds one array: embed prompts and images separately, or use .safetensors"};

    pickscore::Scorer scorer = flags.load();
    pickscore::Tensor<float, pickscore::Cpu> text;
    pickscore::ImageEmbeddings img;
    {
        ProgressBar bar(flags.show_progress());
        scorer.set_progress([&](const pickscore::Progress& p) { bar(p); });
        if (!prompts.empty()) text = scorer.embed_text(prompts);
        bar.finish();
        if (!images.empty()) {
            std::vector<pickscore::ImageInput> in;
            for (const auto& p : images) in.emplace_back(std::filesystem::path(p));
            img = scorer.embed_images(in);
        }
        scorer.set_progress({});
    }
    if (ext == ".npy") {
        pickscore::io::save_npy(out, prompts.empty() ? img.embeddings.cview() : text.cview());
    } else {
        using pickscore::io::Json;
        std::vector<pickscore::io::TensorToWrite> list;
        std::map<std::string, std::string> md{{"format", "pt"}, {"preset", pickscore::to_string(scorer.preset())},
                                              {"model", flags.model}};
        if (!prompts.empty()) {
            list.push_back(pickscore::io::tensor_to_write("text", text.view()));
            Json p = Json::Array{};
            for (const auto& s : prompts) p.push_back(s);
            md["prompts"] = pickscore::io::json::dump(p);
        }
        if (!images.empty()) {
            list.push_back(pickscore::io::tensor_to_write("images", img.embeddings.view()));
            Json p = Json::Array{}, f = Json::Array{};
            for (std::size_t i = 0; i < images.size(); ++i) {
                p.push_back(images[i]);
                if (!img.ok(i)) f.push_back(std::int64_t(i));
            }
            md["images"] = pickscore::io::json::dump(p);
            md["failed_images"] = pickscore::io::json::dump(f);
        }
        pickscore::io::save_safetensors(out, list, md);
    }
    std::size_t failed = 0;
    for (std::size_t i = 0; i < img.errors.size(); ++i)
        if (!img.ok(i)) {
            ++failed;
            std::fprintf(stderr, "pickscore embed: %s (its row is zero)\n", img.errors[i].c_str());
        }
    if (!failed) return 0;
    std::fprintf(stderr, "pickscore embed: %zu of %zu images failed\n", failed, images.size());
    return exit_partial;
}

}  // namespace pickscore_cli

// argv[0] is the command's name; the arguments follow.
inline int cmd_embed(int argc, char** argv) {
    try {
        return pickscore_cli::run_embed(argc, argv);
    } catch (const pickscore_cli::UsageProblem& u) {
        std::fprintf(stderr, "pickscore embed: %s\n%s%s", u.message.c_str(), embed_usage, pickscore_cli::scorer_flags_usage);
        return 2;
    }
}
