// libFuzzer target: the JSON parser and the tokenizer.json loader on arbitrary bytes.
// A document that parses must survive dump -> parse unchanged (both layouts); errors must be
// pickscore::FormatError; a tokenizer.json that loads must tokenize.
#include <pickscore/io/json.hpp>
#include <pickscore/io/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace io = pickscore::io;
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    io::Json j;
    try {
        j = io::json::parse(in, {.max_depth = 64});
    } catch (const pickscore::FormatError&) {
        return 0;
    }
    for (int indent : {-1, 1}) {
        std::string s;
        try {
            s = io::json::dump(j, indent);
        } catch (const pickscore::FormatError&) {
            return 0;  // non-finite numbers cannot be written (they cannot be parsed either)
        }
        if (!(io::json::parse(s, {.max_depth = 64}) == j)) std::abort();
    }
    try {
        const auto tok = io::Tokenizer::from_tokenizer_json_text(in);
        (void)tok.decode(tok.tokenize("a photo of a cat <|endoftext|> \xC3\xA9"));
    } catch (const pickscore::Error&) {
    }
    return 0;
}
