// libFuzzer target: the vocabulary loaders on arbitrary bytes. Input starting with the gzip magic
// goes through gunzip + the bpe_simple_vocab parser, anything else straight to the parser, and to
// the vocab.json + merges.txt loader (first line as vocab.json, the rest as merges.txt). Errors
// must be pickscore::Error; a vocabulary that loads must tokenize.
#include <pickscore/io/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace {

void use(const pickscore::io::Tokenizer& t) {
    const auto ids = t.tokenize("a photo of a cat, &amp; caf\xC3\xA9 \xF0\x9F\x98\x80 123");
    (void)t.decode(ids);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using pickscore::io::Tokenizer;
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    // how many merges to expect: the count of lines, bounded (the real file has 48894)
    std::size_t lines = 0;
    for (char c : in) lines += c == '\n';
    try {
        if (size >= 2 && data[0] == 0x1F && data[1] == 0x8B) {
            const std::string text = pickscore::io::gunzip(in, "fuzz", std::size_t(8) << 20);
            std::size_t n = 0;
            for (char c : text) n += c == '\n';
            use(Tokenizer::from_bpe_text(text, "fuzz", pickscore::io::TokenizerMode::hf, n > 0 ? n - 1 : 0));
        } else {
            use(Tokenizer::from_bpe_text(in, "fuzz", pickscore::io::TokenizerMode::hf, lines > 0 ? lines - 1 : 0));
        }
    } catch (const pickscore::Error&) {
    }
    try {
        const std::size_t nl = in.find('\n');
        if (nl != std::string_view::npos) use(Tokenizer::from_vocab_merges_text(in.substr(0, nl), in.substr(nl + 1)));
    } catch (const pickscore::Error&) {
    }
    return 0;
}
