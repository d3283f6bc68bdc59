// Tokenizer and JSON tests: id parity with Hugging Face's CLIPTokenizer(Fast) and open_clip on the
// committed corpus (tools/gen_tokenizer_corpus.py), the three vocabulary formats, bad input, decode.
#include <doctest/doctest.h>

#include <pickscore/io/json.hpp>
#include <pickscore/io/tokenizer.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace pickscore;
using io::Json;
using io::Tokenizer;
using io::TokenizerMode;

namespace {

const std::filesystem::path kShared = PICKSCORE_SHARED_DIR;
const std::filesystem::path kData = std::filesystem::path(PICKSCORE_TEST_DATA_DIR) / "tokenizer";

const Tokenizer& clip_tokenizer() {
    static const Tokenizer t = Tokenizer::from_bpe_gz(kShared / "data" / "bpe_simple_vocab_16e6.txt.gz");
    return t;
}

std::string from_hex(const std::string& h) {
    std::string out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) out += char(std::stoi(h.substr(i, 2), nullptr, 16));
    return out;
}

std::vector<std::int32_t> ids_of(const Json& a) {
    std::vector<std::int32_t> v;
    for (const Json& x : a.as_array()) v.push_back(std::int32_t(x.as_int64()));
    return v;
}

std::vector<std::int32_t> padded(std::vector<std::int32_t> v, std::int32_t pad, std::size_t n = 77) {
    v.resize(n, pad);
    return v;
}

struct Case {
    std::string text, cat;
    std::vector<std::int32_t> hf, oc, ocx, hf_full;
    bool has_oc = false, has_ocx = false;
};

const std::vector<Case>& corpus() {
    static const std::vector<Case> cases = [] {
        std::vector<Case> out;
        const std::string raw = io::read_gzip_file(kData / "corpus.jsonl.gz");
        std::istringstream in(raw);
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty()) continue;
            const Json j = io::json::parse(line);
            Case c;
            c.text = j.find("s") ? j["s"].as_string() : from_hex(j["b"].as_string());
            c.cat = j["cat"].as_string();
            c.hf = ids_of(j["hf"]);
            if (const Json* p = j.find("oc")) c.oc = ids_of(*p), c.has_oc = true;
            if (const Json* p = j.find("ocx")) c.ocx = ids_of(*p), c.has_ocx = true;
            if (const Json* p = j.find("hf_full")) c.hf_full = ids_of(*p);
            out.push_back(std::move(c));
        }
        return out;
    }();
    return cases;
}

std::string show(const std::vector<std::int32_t>& v) {
    std::string s;
    for (auto x : v) s += std::to_string(x) + " ";
    return s;
}

std::filesystem::path temp_dir(const std::string& name) {
    const auto p = std::filesystem::temp_directory_path() / ("pickscore_test_tokenizer_" + name);
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    return p;
}

void write(const std::filesystem::path& p, std::string_view data) {
    std::ofstream f(p, std::ios::binary);
    f.write(data.data(), std::streamsize(data.size()));
}

}  // namespace

TEST_CASE("corpus: the committed fixture has what the issue asks for") {
    const auto& c = corpus();
    CHECK(c.size() >= 2000);
    std::size_t long_ones = 0, invalid = 0;
    for (const auto& x : c) {
        long_ones += x.hf.size() == 77;
        invalid += x.cat == "invalid utf-8";
    }
    CHECK(long_ones >= 50);  // prompts far over 77 tokens
    CHECK(invalid >= 20);
}

TEST_CASE("hf mode: 100% id parity with CLIPTokenizerFast on the corpus") {
    const Tokenizer& tok = clip_tokenizer();
    REQUIRE(tok.mode() == TokenizerMode::hf);
    std::size_t bad = 0, full_checked = 0;
    for (const auto& c : corpus()) {
        const auto got = tok.tokenize(c.text);
        const auto want = padded(c.hf, 49407);
        if (got != want) {
            if (++bad <= 5) MESSAGE("hf mismatch on [", c.text, "]\n  want ", show(want), "\n  got  ", show(got));
        }
        if (!c.hf_full.empty()) {
            ++full_checked;
            if (tok.encode(c.text) != c.hf_full) {
                if (++bad <= 5) MESSAGE("hf untruncated mismatch on [", c.text, "]");
            }
        }
    }
    CHECK(bad == 0);
    CHECK(full_checked >= 50);
}

TEST_CASE("openclip mode: matches open_clip except the listed mojibake repairs") {
    Tokenizer tok = Tokenizer::from_bpe_gz(kShared / "data" / "bpe_simple_vocab_16e6.txt.gz", TokenizerMode::openclip);
    std::size_t bad = 0, listed = 0, differs_from_hf = 0;
    for (const auto& c : corpus()) {
        // expected: open_clip with ftfy's fix_encoding off where that matters (listed), else open_clip
        const auto& oc = c.has_oc ? c.oc : c.hf;
        const auto& want_ids = c.has_ocx ? c.ocx : oc;
        const auto got = tok.tokenize(c.text);
        const auto want = padded(want_ids, 0);
        if (got != want) {
            if (++bad <= 5) MESSAGE("openclip mismatch on [", c.text, "]\n  want ", show(want), "\n  got  ", show(got));
        }
        if (c.has_ocx) {
            ++listed;
            CHECK(got != padded(oc, 0));  // the listed strings really are where we differ from open_clip
        }
        differs_from_hf += c.has_oc;
    }
    CHECK(bad == 0);
    CHECK(listed > 0);
    CHECK(listed <= 30);
    CHECK(differs_from_hf > 100);  // the corpus does exercise the cleaning differences
}

TEST_CASE("batch tokenization (multi-threaded) equals one-by-one") {
    const Tokenizer& tok = clip_tokenizer();
    std::vector<std::string> texts;
    for (const auto& c : corpus()) texts.push_back(c.text);
    const auto batch = tok.tokenize_batch(texts);
    REQUIRE(batch.shape()[0] == std::int64_t(texts.size()));
    REQUIRE(batch.shape()[1] == 77);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < texts.size(); ++i) {
        const auto one = tok.tokenize(texts[i]);
        bad += !std::equal(one.begin(), one.end(), batch.data() + i * 77);
    }
    CHECK(bad == 0);
    Tensor<std::int32_t, Cpu> wrong(Shape{3, 77});
    CHECK_THROWS_AS(tok.tokenize_batch(wrong, texts), ShapeError);
}

TEST_CASE("framing, truncation, padding, empty and invalid input") {
    const Tokenizer& tok = clip_tokenizer();
    CHECK(tok.sot_id() == 49406);
    CHECK(tok.eot_id() == 49407);
    CHECK(tok.vocab_size() == 49408);
    auto e = tok.tokenize("");
    CHECK(e.size() == 77);
    CHECK(e[0] == 49406);
    CHECK(e[1] == 49407);
    CHECK(e[76] == 49407);  // hf pads with the end token
    CHECK(tok.tokenize(" \t\n ") == e);
    CHECK(tok.tokenize("a photo of a cat") == padded({49406, 320, 1125, 539, 320, 2368, 49407}, 49407));
    // context lengths other than 77
    const auto short8 = tok.tokenize("a photo of a cat on a mat with a hat", 8);
    CHECK(short8.size() == 8);
    CHECK(short8[7] == 49407);
    CHECK(short8[0] == 49406);
    CHECK_THROWS_AS(tok.tokenize("x", 1), ShapeError);
    // Invalid UTF-8: maximal invalid subparts become U+FFFD, like Python's errors="replace".
    CHECK(tok.encode("caf\xC3") == tok.encode("caf\xEF\xBF\xBD"));
    CHECK(tok.encode("\xE2\x82(") == tok.encode("\xEF\xBF\xBD("));
    CHECK(tok.encode("\xED\xA0\x80") == tok.encode("\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
    std::string nul("a\0b", 3);
    CHECK_NOTHROW(tok.encode(nul));
    // open_clip pads with 0
    Tokenizer oc = Tokenizer::from_bpe_gz(kShared / "data" / "bpe_simple_vocab_16e6.txt.gz", TokenizerMode::openclip);
    const auto o = oc.tokenize("");
    CHECK(o[1] == 49407);
    CHECK(o[2] == 0);
    CHECK(o[76] == 0);
}

TEST_CASE("decode") {
    const Tokenizer& tok = clip_tokenizer();
    CHECK(tok.decode(tok.tokenize("A photo of a CAT")) == "a photo of a cat ");
    CHECK(tok.decode(tok.tokenize("Café, naïve!")) == "café , naïve ! ");
    CHECK(tok.decode(tok.tokenize("日本語")) == "日本語 ");
    CHECK(tok.decode(tok.tokenize("x"), false).starts_with("<|startoftext|>x <|endoftext|>"));
    // Round trip: the decoded text tokenizes to the same ids (T2I prompts and many scripts).
    std::size_t checked = 0, bad = 0;
    for (const auto& c : corpus()) {
        if (c.cat != "prompt" && c.cat != "multilingual" && c.cat != "long prompt") continue;
        const auto ids = tok.tokenize(c.text);
        if (ids[76] != 49407 || ids[75] != 49407) continue;  // truncated: the last word may be cut
        ++checked;
        if (tok.tokenize(tok.decode(ids)) != ids) {
            if (++bad <= 3) MESSAGE("round trip failed for [", c.text, "] -> [", tok.decode(ids), "]");
        }
    }
    CHECK(checked > 800);
    CHECK(bad == 0);
    // a partial multi-byte character decodes to U+FFFD rather than invalid UTF-8
    const auto ids = tok.encode("é");
    REQUIRE(!ids.empty());
    CHECK_THROWS_AS(tok.decode(std::vector<std::int32_t>{49408}), Error);
}

TEST_CASE("the three vocabulary formats give the same ids (small vocabulary written by tokenizers)") {
    const auto dir = kData / "small";
    const Tokenizer gz = Tokenizer::from_bpe_gz(dir / "bpe_small.txt.gz", TokenizerMode::hf, 2000);
    const Tokenizer vm = Tokenizer::from_vocab_merges(dir / "vocab.json", dir / "merges.txt");
    const Tokenizer tj = Tokenizer::from_tokenizer_json(dir / "tokenizer.json");
    CHECK(tj.split_specials());
    CHECK(gz.vocab_size() == 2514);
    CHECK(tj.vocab_size() == 2514);
    std::ifstream in(dir / "small.jsonl");
    std::string line;
    std::size_t n = 0, bad = 0;
    while (std::getline(in, line)) {
        const Json j = io::json::parse(line);
        const std::string s = j["s"].as_string();
        const auto want = padded(ids_of(j["hf"]), 2513);
        const auto a = gz.tokenize(s), b = vm.tokenize(s), c = tj.tokenize(s);
        ++n;
        if (a != want || b != want || c != want) {
            if (++bad <= 3) MESSAGE("small-vocabulary mismatch on [", s, "]\n  want ", show(want), "\n  gz   ", show(a));
        }
    }
    CHECK(n > 300);
    CHECK(bad == 0);
    // from_file picks the loader
    CHECK(Tokenizer::from_file(dir / "tokenizer.json").tokenize("hello world") == tj.tokenize("hello world"));
    CHECK(Tokenizer::from_file(dir / "vocab.json").tokenize("hello world") == tj.tokenize("hello world"));
}

TEST_CASE("full-size vocab.json + merges.txt (written with the JSON writer) equal the .gz") {
    // Derive vocab.json / merges.txt from the .gz exactly as open_clip derives its vocabulary.
    const std::string text = io::read_gzip_file(kShared / "data" / "bpe_simple_vocab_16e6.txt.gz");
    std::istringstream in(text);
    std::string line;
    std::getline(in, line);  // header
    std::vector<std::string> merges;
    while (merges.size() < Tokenizer::clip_num_merges && std::getline(in, line)) merges.push_back(line);
    const Tokenizer& gz = clip_tokenizer();
    Json vocab;
    for (std::size_t id = 0; id < gz.vocab_size(); ++id) vocab.set(gz.token(std::int32_t(id)), Json(std::int64_t(id)));
    std::string merges_txt = "#version: 0.2\n";
    for (const auto& m : merges) merges_txt += m + "\n";
    const auto dir = temp_dir("full");
    write(dir / "vocab.json", io::json::dump(vocab));
    write(dir / "merges.txt", merges_txt);
    const Tokenizer vm = Tokenizer::from_file(dir);
    std::size_t bad = 0, n = 0;
    for (const auto& c : corpus()) {
        if (n++ % 3) continue;
        bad += vm.tokenize(c.text) != gz.tokenize(c.text);
    }
    CHECK(bad == 0);
    std::filesystem::remove_all(dir);
}

TEST_CASE("bad vocabulary files give clear errors") {
    const auto gz_path = kShared / "data" / "bpe_simple_vocab_16e6.txt.gz";
    const std::string good = io::read_file(gz_path);
    // truncated gzip
    CHECK_THROWS_WITH_AS(Tokenizer::from_bpe_gz_bytes(std::string_view(good).substr(0, good.size() / 2)),
                         doctest::Contains("truncated"), FormatError);
    // corrupt gzip (flipped bytes in the deflate data)
    std::string bad = good;
    for (std::size_t i = 1000; i < 1100; ++i) bad[i] = char(bad[i] ^ 0x5A);
    CHECK_THROWS_AS(Tokenizer::from_bpe_gz_bytes(bad), FormatError);
    // a bad CRC in the trailer
    bad = good;
    bad[bad.size() - 6] = char(bad[bad.size() - 6] ^ 1);
    CHECK_THROWS_AS(Tokenizer::from_bpe_gz_bytes(bad), FormatError);
    // not gzip at all
    CHECK_THROWS_WITH_AS(Tokenizer::from_bpe_gz_bytes("this is not a gzip file at all, no"), doctest::Contains("not a gzip"),
                         FormatError);
    // missing file, folder without vocabulary
    CHECK_THROWS_AS(Tokenizer::from_bpe_gz("/nonexistent/bpe.txt.gz"), IoError);
    CHECK_THROWS_AS(Tokenizer::from_file("/nonexistent/tokenizer.json"), IoError);
    const auto empty_dir = temp_dir("empty");
    CHECK_THROWS_AS(Tokenizer::from_file(empty_dir), IoError);
    CHECK_THROWS_AS(Tokenizer::from_vocab_merges(empty_dir / "vocab.json", empty_dir / "merges.txt"), IoError);
    std::filesystem::remove_all(empty_dir);
    // too few merges, a malformed merge line
    CHECK_THROWS_WITH_AS(Tokenizer::from_bpe_text("header\na b\n"), doctest::Contains("merges"), FormatError);
    CHECK_THROWS_WITH_AS(Tokenizer::from_bpe_text("header\nab\n", "x", TokenizerMode::hf, 1), doctest::Contains("line 2"),
                         FormatError);
    // merge parts that are not in the vocabulary
    CHECK_THROWS_WITH_AS(Tokenizer::from_bpe_text("header\nqq zz\n", "x", TokenizerMode::hf, 1),
                         doctest::Contains("not in the vocabulary"), FormatError);
    // vocab.json: malformed JSON names the byte offset; missing byte symbols are reported
    CHECK_THROWS_WITH_AS(Tokenizer::from_vocab_merges_text("{\"a\": 1,}", ""), doctest::Contains("byte offset 8"),
                         FormatError);
    CHECK_THROWS_WITH_AS(Tokenizer::from_vocab_merges_text("{\"a\": 1}", ""), doctest::Contains("byte symbol"),
                         FormatError);
    CHECK_THROWS_WITH_AS(Tokenizer::from_vocab_merges_text("[1, 2]", ""), doctest::Contains("object"), FormatError);
    CHECK_THROWS_AS(Tokenizer::from_vocab_merges_text("{\"a\": -1}", ""), FormatError);
    // tokenizer.json that is not a CLIP BPE
    const std::string tj = io::read_file(kData / "small" / "tokenizer.json");
    CHECK_THROWS_AS(Tokenizer::from_tokenizer_json_text(tj.substr(0, tj.size() - 10)), FormatError);
    CHECK_THROWS_WITH_AS(Tokenizer::from_tokenizer_json_text(R"({"model": {"type": "WordPiece"}})"),
                         doctest::Contains("BPE"), FormatError);
    CHECK_THROWS_WITH_AS(Tokenizer::from_tokenizer_json_text(R"({"model": {"type": "BPE", "vocab": {}, "merges": []}})"),
                         doctest::Contains("end_of_word_suffix"), FormatError);
    CHECK_THROWS_WITH_AS(Tokenizer::from_tokenizer_json_text("{}"), doctest::Contains("model"), FormatError);
    std::string lstrip = tj;
    const auto ls = lstrip.find("\"lstrip\":false");
    REQUIRE(ls != std::string::npos);
    lstrip.replace(ls, 14, "\"lstrip\":true");
    CHECK_THROWS_WITH_AS(Tokenizer::from_tokenizer_json_text(lstrip), doctest::Contains("lstrip"), FormatError);
    std::string other_split = tj;
    const auto at = other_split.find("[\\\\p{L}]+");
    REQUIRE(at != std::string::npos);
    other_split.replace(at, 9, "[\\\\p{L}]*");
    CHECK_THROWS_WITH_AS(Tokenizer::from_tokenizer_json_text(other_split), doctest::Contains("Split pattern"), FormatError);
}

TEST_CASE("the two split-pattern variants differ only where lowercasing makes a special token") {
    Tokenizer tok = Tokenizer::from_bpe_gz(kShared / "data" / "bpe_simple_vocab_16e6.txt.gz");
    const auto with = tok.encode("<|ENDOFTEXT|>>");
    tok.set_split_specials(false);
    const auto without = tok.encode("<|ENDOFTEXT|>>");
    CHECK(with != without);
    CHECK(tok.encode("a photo") == std::vector<std::int32_t>{320, 1125});
}

TEST_CASE("mode parsing") {
    CHECK(io::parse_tokenizer_mode("hf") == TokenizerMode::hf);
    CHECK(io::parse_tokenizer_mode("openclip") == TokenizerMode::openclip);
    CHECK_THROWS_AS(io::parse_tokenizer_mode("bert"), Error);
}

// ------------------------------------------------------------------------------------- JSON

TEST_CASE("json: values, escapes, surrogates, numbers") {
    const Json j = io::json::parse(R"( {"a": [1, -2, 3.5, 1e3, -0, true, false, null],
        "s": "q\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "o": {}, "e": [] } )");
    CHECK(j["a"].size() == 8);
    CHECK(j["a"][0].as_int64() == 1);
    CHECK(j["a"][1].as_int64() == -2);
    CHECK(j["a"][2].as_double() == 3.5);
    CHECK_FALSE(j["a"][3].is_integer());
    CHECK(j["a"][3].as_double() == 1000.0);
    CHECK(j["a"][5].as_bool());
    CHECK(j["a"][7].is_null());
    CHECK(j["s"].as_string() == "q\"\\/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80");
    CHECK(j["o"].is_object());
    CHECK(j["e"].as_array().empty());
    CHECK(io::json::parse("9223372036854775807").as_int64() == INT64_MAX);
    CHECK(io::json::parse("-9223372036854775808").as_int64() == INT64_MIN);
    CHECK_FALSE(io::json::parse("9223372036854775808").is_integer());  // too big: a double
    CHECK(io::json::parse("1e-400").as_double() == 0.0);               // underflow rounds to zero
    CHECK_THROWS_WITH_AS(io::json::parse("1e400"), doctest::Contains("out of range"), FormatError);
    CHECK(io::json::parse("\"\xE6\x97\xA5\"").as_string() == "\xE6\x97\xA5");
    CHECK_THROWS_AS(j["missing"], FormatError);
    CHECK_THROWS_AS(j["a"].as_string(), FormatError);
    CHECK_THROWS_AS(j["a"][8], FormatError);
    CHECK(j.find("nope") == nullptr);
}

TEST_CASE("json: strictness; errors name the byte offset") {
    struct Bad {
        const char* text;
        const char* what;
    };
    const Bad bad[] = {
        {"", "end of input"},
        {"{", "unterminated object"},
        {"[1,]", "expected a value"},
        {"{\"a\":1,}", "string key"},
        {"[01]", "leading zero"},
        {"[1.]", "digit after"},
        {"[1e]", "exponent"},
        {"[-]", "number"},
        {"NaN", "unexpected character"},
        {"[Infinity]", "unexpected character"},
        {"tru", "literal"},
        {"\"abc", "unterminated string"},
        {"\"a\tb\"", "control character"},
        {"\"\\x\"", "invalid escape"},
        {"\"\\u12\"", "\\u escape"},
        {"\"\\u12g4\"", "hex digit"},
        {"\"\\ud800\"", "unpaired high surrogate"},
        {"\"\\ud800\\u0041\"", "low surrogate"},
        {"\"\\udc00\"", "unpaired low surrogate"},
        {"\"\xC3\"", "UTF-8"},
        {"\"\xC3", "truncated UTF-8"},
        {"\"\xC0\xAF\"", "invalid UTF-8"},
        {"\"\xED\xA0\x80\"", "invalid UTF-8"},
        {"\"\xF4\x90\x80\x80\"", "invalid UTF-8"},
        {"\"\xFF\"", "invalid UTF-8"},
        {"{\"a\":1,\"a\":2}", "duplicate key"},
        {"[1] 2", "after the JSON value"},
        {"// comment\n1", "unexpected character"},
        {"{'a':1}", "string key"},
        {"[1 2]", "expected ','"},
    };
    for (const auto& b : bad) {
        CAPTURE(b.text);
        CHECK_THROWS_WITH_AS(io::json::parse(b.text), doctest::Contains(b.what), FormatError);
        CHECK_THROWS_WITH_AS(io::json::parse(b.text), doctest::Contains("byte offset"), FormatError);
    }
    CHECK_THROWS_WITH(io::json::parse("[1, 2, x]"), doctest::Contains("byte offset 7"));
    // duplicates also in large objects (hash-set path), or allowed on request (the last wins)
    std::string big = "{";
    for (int i = 0; i < 40; ++i) big += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
    CHECK_NOTHROW(io::json::parse(big + "\"z\":0}"));
    CHECK_THROWS_WITH_AS(io::json::parse(big + "\"k7\":0}"), doctest::Contains("duplicate key \"k7\""), FormatError);
    CHECK(io::json::parse("{\"a\":1,\"a\":2}", {.allow_duplicate_keys = true})["a"].as_int64() == 2);
    // depth limit
    const std::string deep = std::string(200, '[') + std::string(200, ']');
    CHECK_THROWS_WITH_AS(io::json::parse(deep), doctest::Contains("nesting deeper"), FormatError);
    CHECK_NOTHROW(io::json::parse(deep, {.max_depth = 300}));
}

TEST_CASE("json: the writer round-trips") {
    Json o;
    o.set("name", "tab\there \"quoted\" \x01 \xC3\xA9");
    o.set("n", Json(std::int64_t(-42)));
    o.set("x", Json(0.1));
    o.set("big", Json(1e300));
    o.set("whole", Json(2.0));
    Json arr;
    arr.push_back(Json(true));
    arr.push_back(Json(nullptr));
    arr.push_back(Json(Json::Object{}));
    o.set("arr", arr);
    for (int indent : {-1, 2}) {
        const std::string s = io::json::dump(o, indent);
        CAPTURE(s);
        const Json back = io::json::parse(s);
        CHECK(back == o);
        CHECK_FALSE(back["whole"].is_integer());
    }
    CHECK(io::json::dump(o).find("\\u0001") != std::string::npos);
    CHECK(io::json::dump(Json(Json::Array{})) == "[]");
    CHECK_THROWS_AS(io::json::dump(Json(std::numeric_limits<double>::infinity())), FormatError);
}
