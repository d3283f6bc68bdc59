// examples/cli/tokenize.hpp — the `pickscore tokenize` command:
//
//     pickscore tokenize [--mode hf|openclip] [--vocab PATH] [--length N | --raw] ["text" ...]
//
// Prints the CLIP token ids of each text, one line per text, space separated; with no text
// arguments it reads lines from standard input. Exit status: 0 on success, 1 when the vocabulary
// cannot be read, 2 on a usage error. Needs the pickscore::io target (zlib).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <pickscore/io/tokenizer.hpp>

inline constexpr const char* tokenize_usage =
    "usage: pickscore tokenize [--mode hf|openclip] [--vocab PATH] [--length N | --raw] [\"text\" ...]\n"
    "  print the CLIP token ids of each text, one line per text; reads lines from stdin when no text is given\n"
    "  --mode hf        Hugging Face CLIPTokenizer(Fast), what PickScore used (default)\n"
    "  --mode openclip  open_clip's SimpleTokenizer (ftfy-style fixes, HTML unescaping)\n"
    "  --vocab PATH     bpe_simple_vocab_16e6.txt.gz, tokenizer.json, vocab.json (merges.txt beside it),\n"
    "                   or a folder holding one of them. Default: $PICKSCORE_VOCAB, else\n"
    "                   bpe_simple_vocab_16e6.txt.gz (or tokenizer.json) next to the pickscore executable,\n"
    "                   else in ../share/pickscore/ relative to it\n"
    "  (default)        [49406, ids..., 49407] truncated to 77, without padding\n"
    "  --length N       exactly N ids: framed, truncated, padded (0 for openclip, 49407 for hf)\n"
    "  --raw            the BPE ids only: no start/end tokens, no truncation\n";

namespace pickscore_cli {

// Where the vocabulary is when --vocab is not given (see tokenize_usage).
inline std::filesystem::path default_vocab_path(std::string& tried) {
    namespace fs = std::filesystem;
    if (const char* env = std::getenv("PICKSCORE_VOCAB"); env && *env) return env;
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        for (const fs::path& dir : {exe.parent_path(), exe.parent_path() / ".." / "share" / "pickscore"}) {
            for (const char* name : {"bpe_simple_vocab_16e6.txt.gz", "tokenizer.json"}) {
                const fs::path p = dir / name;
                tried += "  " + p.string() + "\n";
                if (fs::exists(p, ec)) return p;
            }
        }
    }
    return {};
}

}  // namespace pickscore_cli

// argv[0] is the command's name ("tokenize"); the arguments follow.
inline int cmd_tokenize(int argc, char** argv) {
    auto usage_error = [](const std::string& msg) {
        std::fprintf(stderr, "pickscore tokenize: %s\n%s", msg.c_str(), tokenize_usage);
        return 2;
    };
    using pickscore::io::TokenizerMode;
    TokenizerMode mode = TokenizerMode::hf;
    std::string vocab;
    long length = 0;
    bool raw = false;
    std::vector<std::string> texts;
    bool only_texts = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (only_texts || a.empty() || a[0] != '-' || a == "-") {
            texts.emplace_back(a);
        } else if (a == "--") {
            only_texts = true;
        } else if (a == "--help" || a == "-h") {
            std::fputs(tokenize_usage, stdout);
            return 0;
        } else if (a == "--mode") {
            if (i + 1 >= argc) return usage_error("--mode needs hf or openclip");
            const std::string_view m = argv[++i];
            if (m != "hf" && m != "openclip") return usage_error("unknown mode '" + std::string(m) + "' (hf or openclip)");
            mode = pickscore::io::parse_tokenizer_mode(m);
        } else if (a == "--vocab") {
            if (i + 1 >= argc) return usage_error("--vocab needs a path");
            vocab = argv[++i];
        } else if (a == "--length") {
            if (i + 1 >= argc) return usage_error("--length needs a number");
            char* end = nullptr;
            length = std::strtol(argv[++i], &end, 10);
            if (!end || *end || length < 2 || length > 1000000) return usage_error("--length must be a number >= 2");
        } else if (a == "--raw") {
            raw = true;
        } else {
            return usage_error("unknown option '" + std::string(a) + "'");
        }
    }
    if (raw && length) return usage_error("--raw and --length exclude each other");
    std::filesystem::path path = vocab;
    if (path.empty()) {
        std::string tried;
        path = pickscore_cli::default_vocab_path(tried);
        if (path.empty()) {
            std::fprintf(stderr,
                         "pickscore tokenize: no vocabulary: give --vocab PATH or set PICKSCORE_VOCAB (looked in:\n%s)\n",
                         tried.c_str());
            return 1;
        }
    }
    const auto tok = pickscore::io::Tokenizer::from_file(path, mode);
    const auto print = [&](const std::string& text) {
        std::vector<std::int32_t> ids;
        if (raw) {
            ids = tok.encode(text);
        } else if (length) {
            ids = tok.tokenize(text, int(length));
        } else {
            const std::size_t n = std::min<std::size_t>(tok.encode(text).size(), 75);
            ids = tok.tokenize(text);
            ids.resize(n + 2);
        }
        std::string line;
        for (std::size_t k = 0; k < ids.size(); ++k) {
            if (k) line += ' ';
            line += std::to_string(ids[k]);
        }
        line += '\n';
        std::fwrite(line.data(), 1, line.size(), stdout);
    };
    if (texts.empty()) {
        std::string line;
        while (std::getline(std::cin, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            print(line);
        }
    } else {
        for (const auto& t : texts) print(t);
    }
    return std::fflush(stdout) == 0 ? 0 : 1;
}
