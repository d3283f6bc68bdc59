// libFuzzer target: arbitrary bytes as a prompt, in both tokenizer modes. Checks that nothing
// crashes and that the output is well formed: 77 ids, [49406, ..., 49407, pad...], every id in
// the vocabulary, and that decode() gives valid UTF-8.
#include <pickscore/io/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

const pickscore::io::Tokenizer& tokenizer(pickscore::io::TokenizerMode mode) {
    using pickscore::io::Tokenizer;
    static const Tokenizer hf = Tokenizer::from_bpe_gz(PICKSCORE_SHARED_DIR "/data/bpe_simple_vocab_16e6.txt.gz");
    static const Tokenizer oc =
        Tokenizer::from_bpe_gz(PICKSCORE_SHARED_DIR "/data/bpe_simple_vocab_16e6.txt.gz", pickscore::io::TokenizerMode::openclip);
    return mode == pickscore::io::TokenizerMode::hf ? hf : oc;
}

void check(bool ok) {
    if (!ok) std::abort();
}

bool valid_utf8(std::string_view s) {
    return pickscore::io::unicode::encode_utf8(pickscore::io::unicode::decode_utf8(s)) == s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (auto mode : {pickscore::io::TokenizerMode::hf, pickscore::io::TokenizerMode::openclip}) {
        const auto& tok = tokenizer(mode);
        const auto ids = tok.tokenize(text);
        check(ids.size() == 77 && ids[0] == tok.sot_id());
        bool seen_end = false;
        for (std::size_t i = 1; i < ids.size(); ++i) {
            check(ids[i] >= 0 && std::size_t(ids[i]) < tok.vocab_size());
            if (ids[i] == tok.eot_id()) seen_end = true;
        }
        check(seen_end);
        check(valid_utf8(tok.decode(ids)));
        check(valid_utf8(tok.normalize(text)));
    }
    return 0;
}
