// A tiny CLIP BPE vocabulary for the tests of models with random weights (test_scorer, test_scorers):
// vocab.json + merges.txt with the 256 byte symbols (plain and with </w>), six merges (cat, dog,
// red), and the start and end tokens.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <pickscore/io/json.hpp>
#include <pickscore/io/tokenizer.hpp>

#include "files.hpp"

namespace pickscore::test {

// Writes dir/vocab.json and dir/merges.txt; returns the vocabulary size, 520: ids 0-511 the byte
// symbols, 512-517 the merges' results, 518 and 519 start and end of text.
inline int write_tiny_vocab(const std::filesystem::path& dir) {
    const auto& b2u = io::detail::byte_to_unicode();
    const auto order = io::detail::byte_vocab_order();
    auto sym = [&](int b) {
        std::string s;
        io::unicode::append_utf8(s, b2u[std::size_t(b)]);
        return s;
    };
    io::Json vocab = io::Json::Object{};
    std::int64_t id = 0;
    for (int b : order) vocab.set(sym(b), io::Json(id++));
    for (int b : order) vocab.set(sym(b) + "</w>", io::Json(id++));
    const std::vector<std::pair<std::string, std::string>> merges = {
        {"c", "a"}, {"ca", "t</w>"}, {"d", "o"}, {"do", "g</w>"}, {"r", "e"}, {"re", "d</w>"}};
    std::string merges_txt = "#version: 0.2\n";
    for (const auto& [a, b] : merges) {
        vocab.set(a + b, io::Json(id++));
        merges_txt += a + " " + b + "\n";
    }
    vocab.set("<|startoftext|>", io::Json(id++));
    vocab.set("<|endoftext|>", io::Json(id++));
    write_text(dir / "vocab.json", io::json::dump(vocab));
    write_text(dir / "merges.txt", merges_txt);
    return int(id);
}

}  // namespace pickscore::test
