// pickscore/io/tokenizer.hpp — the CLIP byte-level BPE tokenizer, id-exact with its references.
//
//   auto tok = io::Tokenizer::from_file(".../bpe_simple_vocab_16e6.txt.gz");   // or tokenizer.json,
//                                                          // vocab.json (+ merges.txt beside it), a folder
//   std::vector<std::int32_t> ids = tok.tokenize("a photo of a cat");  // 77 ids: [49406, ..., 49407, pad...]
//   Tensor<std::int32_t, Cpu> batch = tok.tokenize_batch(prompts);      // [B, 77], multi-threaded
//   std::string text = tok.decode(ids);                                  // "a photo of a cat "
//
// Two modes (TokenizerMode), chosen at construction or with set_mode():
//   hf        (default; what PickScore used) Hugging Face CLIPTokenizer (called CLIPTokenizerFast
//             before transformers 5) on tokenizers 0.23.3: special tokens "<|startoftext|>" and
//             "<|endoftext|>" found in the raw text first; each remaining segment gets NFC,
//             \s+ -> " ", lowercase; split; BPE. Padding id 49407.
//   openclip  open_clip 3.3.0's SimpleTokenizer: ftfy-style fixes, html.unescape twice,
//             whitespace clean, lowercase (see detail/text_clean.hpp for what of ftfy is done);
//             the split pattern is case-insensitive and starts with open_clip's own special
//             tokens "<start_of_text>" and "<end_of_text>". Padding id 0.
// Split pattern: 's|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+ , hand-written. Each
// piece's UTF-8 bytes become byte symbols (GPT-2's byte-to-unicode map), "</w>" is appended to the
// last, and merges are applied lowest rank first (a per-tokenizer cache remembers words).
// Framing: [49406] + ids + [49407], truncated to context_length keeping the final 49407.
//
// Input is UTF-8. Invalid UTF-8 is not an error: each maximal invalid subsequence becomes U+FFFD
// before cleaning, exactly as Python's bytes.decode("utf-8", errors="replace") would give the
// references a str. An empty (or all-whitespace) prompt gives [49406, 49407, pad...].
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/threads.hpp"
#include "detail/text_clean.hpp"
#include "detail/unicode.hpp"
#include "gzip.hpp"
#include "json.hpp"

namespace pickscore::io {

enum class TokenizerMode { hf, openclip };

inline const char* to_string(TokenizerMode m) { return m == TokenizerMode::hf ? "hf" : "openclip"; }

inline TokenizerMode parse_tokenizer_mode(std::string_view s) {
    if (s == "hf") return TokenizerMode::hf;
    if (s == "openclip" || s == "open_clip") return TokenizerMode::openclip;
    fail<Error>("tokenizer: unknown mode '", s, "' (expected hf or openclip)");
}

namespace detail {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order.
inline const std::array<char32_t, 256>& byte_to_unicode() {
    static const std::array<char32_t, 256> table = [] {
        std::array<char32_t, 256> t{};
        char32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            t[std::size_t(b)] = printable ? char32_t(b) : next++;
        }
        return t;
    }();
    return table;
}

// The order in which CLIP's vocabulary lists the 256 byte symbols (printable ones first).
inline std::array<int, 256> byte_vocab_order() {
    std::array<int, 256> order{};
    int n = 0;
    for (int b = 0; b < 256; ++b)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) order[std::size_t(n++)] = b;
    for (int b = 0; b < 256; ++b)
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) order[std::size_t(n++)] = b;
    return order;
}

// Open-addressing map (left id, right id) -> (rank, merged id).
class MergeTable {
public:
    struct Entry {
        std::uint64_t key = ~std::uint64_t(0);
        std::int32_t rank = 0, id = 0;
    };
    void build(const std::vector<std::array<std::int32_t, 3>>& merges) {  // {left, right, merged}
        std::size_t cap = 16;
        while (cap < merges.size() * 2 + 16) cap *= 2;
        slots_.assign(cap, Entry{});
        mask_ = cap - 1;
        for (std::size_t r = 0; r < merges.size(); ++r) {
            const std::uint64_t k = key(merges[r][0], merges[r][1]);
            std::size_t i = hash(k) & mask_;
            while (slots_[i].key != ~std::uint64_t(0) && slots_[i].key != k) i = (i + 1) & mask_;
            if (slots_[i].key == k) continue;  // a repeated merge keeps its first (lowest) rank
            slots_[i] = Entry{k, std::int32_t(r), merges[r][2]};
        }
    }
    const Entry* find(std::int32_t a, std::int32_t b) const {
        if (slots_.empty()) return nullptr;
        const std::uint64_t k = key(a, b);
        std::size_t i = hash(k) & mask_;
        for (;;) {
            const Entry& e = slots_[i];
            if (e.key == k) return &e;
            if (e.key == ~std::uint64_t(0)) return nullptr;
            i = (i + 1) & mask_;
        }
    }

private:
    static std::uint64_t key(std::int32_t a, std::int32_t b) {
        return (std::uint64_t(std::uint32_t(a)) << 32) | std::uint32_t(b);
    }
    static std::size_t hash(std::uint64_t k) {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdULL;
        k ^= k >> 33;
        return std::size_t(k);
    }
    std::vector<Entry> slots_;
    std::size_t mask_ = 0;
};

struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Thread-safe word -> ids cache, sharded; it stops growing at a fixed size (like HF's).
class BpeCache {
public:
    static constexpr std::size_t shards = 16;
    static constexpr std::size_t max_entries_per_shard = 4096;

    bool lookup(std::string_view word, std::vector<std::int32_t>& out) const {
        const Shard& s = shard(word);
        std::shared_lock lock(s.m);
        const auto it = s.map.find(word);
        if (it == s.map.end()) return false;
        out.insert(out.end(), it->second.begin(), it->second.end());
        return true;
    }
    void insert(std::string_view word, std::span<const std::int32_t> ids) {
        Shard& s = shard(word);
        std::unique_lock lock(s.m);
        if (s.map.size() >= max_entries_per_shard) return;
        s.map.emplace(std::string(word), std::vector<std::int32_t>(ids.begin(), ids.end()));
    }
    void clear() {
        for (auto& s : shards_) {
            std::unique_lock lock(s.m);
            s.map.clear();
        }
    }

private:
    struct Shard {
        mutable std::shared_mutex m;
        std::unordered_map<std::string, std::vector<std::int32_t>, StringHash, std::equal_to<>> map;
    };
    Shard& shard(std::string_view w) { return shards_[StringHash{}(w) % shards]; }
    const Shard& shard(std::string_view w) const { return shards_[StringHash{}(w) % shards]; }
    std::array<Shard, shards> shards_;
};

}  // namespace detail

class Tokenizer {
public:
    static constexpr int default_context_length = 77;

    // ---- loading -------------------------------------------------------------------------
    // open_clip's / OpenAI's bpe_simple_vocab_16e6.txt.gz: a header line, then merges; the first
    // 49152 - 256 - 2 = 48894 are used (as open_clip does).
    static constexpr std::size_t clip_num_merges = 48894;
    static Tokenizer from_bpe_gz(const std::filesystem::path& path, TokenizerMode mode = TokenizerMode::hf,
                                 std::size_t num_merges = clip_num_merges) {
        return from_bpe_text(read_gzip_file(path, std::size_t(64) << 20), path.string(), mode, num_merges);
    }
    static Tokenizer from_bpe_gz_bytes(std::string_view gz, TokenizerMode mode = TokenizerMode::hf,
                                       std::string_view what = "bpe vocabulary", std::size_t num_merges = clip_num_merges) {
        return from_bpe_text(gunzip(gz, what, std::size_t(64) << 20), what, mode, num_merges);
    }
    static Tokenizer from_bpe_text(std::string_view text, std::string_view what = "bpe vocabulary",
                                   TokenizerMode mode = TokenizerMode::hf, std::size_t num_merges = clip_num_merges) {
        // The header line ends at the first newline.
        std::size_t pos = text.find('\n');
        require<FormatError>(pos != std::string_view::npos, what, ": no header line");
        ++pos;
        std::vector<std::pair<std::string, std::string>> merges;
        merges.reserve(num_merges);
        std::size_t line_no = 1;
        while (merges.size() < num_merges) {
            ++line_no;
            require<FormatError>(pos < text.size(), what, ": only ", merges.size(), " merges, ", num_merges, " expected");
            std::size_t end = text.find('\n', pos);
            if (end == std::string_view::npos) end = text.size();
            const std::string_view line = text.substr(pos, end - pos);
            pos = end + 1;
            merges.push_back(split_merge(line, what, line_no));
        }
        Tokenizer t;
        t.mode_ = mode;
        std::vector<std::string> vocab;
        vocab.reserve(512 + merges.size() + 2);
        const auto order = detail::byte_vocab_order();
        for (int b : order) vocab.push_back(byte_symbol(std::uint8_t(b)));
        for (int b : order) vocab.push_back(byte_symbol(std::uint8_t(b)) + "</w>");
        for (const auto& [a, b] : merges) vocab.push_back(a + b);
        vocab.push_back("<|startoftext|>");
        vocab.push_back("<|endoftext|>");
        std::unordered_map<std::string, std::int32_t> ids;
        for (std::size_t i = 0; i < vocab.size(); ++i) ids[vocab[i]] = std::int32_t(i);  // later duplicates win
        t.init(std::move(ids), merges, what, {{"<|startoftext|>", false}, {"<|endoftext|>", false}}, true);
        return t;
    }

    // Hugging Face vocab.json + merges.txt (merges.txt may start with "#version: ...").
    static Tokenizer from_vocab_merges(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt,
                                       TokenizerMode mode = TokenizerMode::hf) {
        return from_vocab_merges_text(read_file(vocab_json), read_file(merges_txt), mode, vocab_json.string(),
                                      merges_txt.string());
    }
    static Tokenizer from_vocab_merges_text(std::string_view vocab_json, std::string_view merges_txt,
                                            TokenizerMode mode = TokenizerMode::hf, std::string_view vocab_what = "vocab.json",
                                            std::string_view merges_what = "merges.txt") {
        Json v;
        try {
            v = json::parse(vocab_json);
        } catch (const FormatError& e) {
            fail<FormatError>(vocab_what, ": ", e.what());
        }
        require<FormatError>(v.is_object(), vocab_what, ": expected a JSON object of token -> id");
        std::unordered_map<std::string, std::int32_t> ids = vocab_from_json(v, vocab_what);
        std::vector<std::pair<std::string, std::string>> merges;
        std::size_t pos = 0, line_no = 0;
        while (pos < merges_txt.size()) {
            ++line_no;
            std::size_t end = merges_txt.find('\n', pos);
            if (end == std::string_view::npos) end = merges_txt.size();
            std::string_view line = merges_txt.substr(pos, end - pos);
            pos = end + 1;
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
            merges.push_back(split_merge(line, merges_what, line_no));
        }
        Tokenizer t;
        t.mode_ = mode;
        t.init(std::move(ids), merges, vocab_what, {{"<|startoftext|>", false}, {"<|endoftext|>", false}}, true);
        return t;
    }

    // Hugging Face tokenizer.json of a CLIP tokenizer (model BPE with end_of_word_suffix "</w>").
    static Tokenizer from_tokenizer_json(const std::filesystem::path& path, TokenizerMode mode = TokenizerMode::hf) {
        return from_tokenizer_json_text(read_file(path), mode, path.string());
    }
    static Tokenizer from_tokenizer_json_text(std::string_view text, TokenizerMode mode = TokenizerMode::hf,
                                              std::string_view what = "tokenizer.json") {
        Json j;
        try {
            j = json::parse(text);
        } catch (const FormatError& e) {
            fail<FormatError>(what, ": ", e.what());
        }
        try {
            return from_tokenizer_json_value(j, mode, what);
        } catch (const FormatError& e) {
            const std::string msg = e.what();
            if (msg.starts_with(std::string(what))) throw;
            fail<FormatError>(what, ": ", msg);
        }
    }

    // Picks the loader from the path: *.gz, *.json (tokenizer.json, or vocab.json with merges.txt
    // beside it), or a folder holding tokenizer.json or vocab.json + merges.txt.
    static Tokenizer from_file(const std::filesystem::path& path, TokenizerMode mode = TokenizerMode::hf) {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (fs::is_directory(path, ec)) {
            if (fs::exists(path / "tokenizer.json", ec)) return from_tokenizer_json(path / "tokenizer.json", mode);
            if (fs::exists(path / "vocab.json", ec) && fs::exists(path / "merges.txt", ec))
                return from_vocab_merges(path / "vocab.json", path / "merges.txt", mode);
            if (fs::exists(path / "bpe_simple_vocab_16e6.txt.gz", ec))
                return from_bpe_gz(path / "bpe_simple_vocab_16e6.txt.gz", mode);
            fail<IoError>("tokenizer: '", path.string(),
                          "' holds none of tokenizer.json, vocab.json + merges.txt, bpe_simple_vocab_16e6.txt.gz");
        }
        require<IoError>(fs::exists(path, ec), "tokenizer: '", path.string(), "' does not exist");
        const std::string name = path.filename().string();
        if (name.ends_with(".gz")) return from_bpe_gz(path, mode);
        if (name == "vocab.json") return from_vocab_merges(path, path.parent_path() / "merges.txt", mode);
        if (name.ends_with(".json")) return from_tokenizer_json(path, mode);
        fail<IoError>("tokenizer: cannot tell the format of '", path.string(),
                      "' (expected *.gz, tokenizer.json, vocab.json or a folder)");
    }

    // ---- settings --------------------------------------------------------------------------
    TokenizerMode mode() const { return mode_; }
    void set_mode(TokenizerMode m) {
        if (m != mode_) cache_->clear();
        mode_ = m;
    }
    // Empties the word cache (it fills again as text is tokenized; for benchmarks and tests).
    void clear_cache() const { cache_->clear(); }
    std::int32_t sot_id() const { return sot_; }
    std::int32_t eot_id() const { return eot_; }
    // Padding: 0 in open_clip, the end-of-text id in Hugging Face's CLIP tokenizers.
    std::int32_t pad_id() const { return mode_ == TokenizerMode::openclip ? 0 : eot_; }
    std::size_t vocab_size() const { return tokens_.size(); }
    // Whether "<|startoftext|>|<|endoftext|>" lead the split pattern (transformers 5 and some
    // tokenizer.json files; transformers 4's converter leaves them out). Only matters for text
    // that lowercases into a special token, such as "<|ENDOFTEXT|>".
    bool split_specials() const { return split_specials_; }
    void set_split_specials(bool on) {
        if (on != split_specials_) cache_->clear();
        split_specials_ = on;
    }
    const std::string& token(std::int32_t id) const {
        require<Error>(id >= 0 && std::size_t(id) < tokens_.size(), "tokenizer: id ", id, " out of range [0, ",
                       tokens_.size(), ")");
        return tokens_[std::size_t(id)];
    }

    // ---- encoding --------------------------------------------------------------------------
    // The BPE ids of a text, without start/end tokens and without truncation.
    std::vector<std::int32_t> encode(std::string_view text) const {
        std::vector<std::int32_t> out;
        encode_into(text, out, std::size_t(-1));
        return out;
    }

    // [sot] + ids + [eot], truncated to context_length keeping the end token, padded with pad_id().
    std::vector<std::int32_t> tokenize(std::string_view text, int context_length = default_context_length) const {
        std::vector<std::int32_t> out(std::size_t(check_context(context_length)));
        tokenize_into(text, out);
        return out;
    }

    // Writes one framed, padded row; out.size() is the context length.
    void tokenize_into(std::string_view text, std::span<std::int32_t> out) const {
        const std::size_t n = out.size();
        require<ShapeError>(n >= 2, "tokenize: context length must be at least 2, got ", n);
        thread_local std::vector<std::int32_t> ids;
        ids.clear();
        encode_into(text, ids, n - 2);  // stops once more than enough ids are known
        const std::size_t keep = std::min(ids.size(), n - 2);
        out[0] = sot_;
        std::copy(ids.begin(), ids.begin() + std::ptrdiff_t(keep), out.begin() + 1);
        out[keep + 1] = eot_;
        std::fill(out.begin() + std::ptrdiff_t(keep + 2), out.end(), pad_id());
    }

    // Batch: out /*B,T*/ gets one row per text; rows are tokenized in parallel (parallel_for).
    template <class Strings>
    void tokenize_batch(TensorView<std::int32_t, Cpu> out /*B,T*/, const Strings& texts) const {
        require<ShapeError>(out.shape().rank() == 2, "tokenize_batch: out must be [B, T], got ", out.shape());
        const std::int64_t B = out.shape()[0], T = out.shape()[1];
        require<ShapeError>(B == std::int64_t(std::size(texts)), "tokenize_batch: out has ", B, " rows for ",
                            std::size(texts), " texts");
        require<ShapeError>(T >= 2, "tokenize_batch: context length must be at least 2, got ", T);
        std::int32_t* base = out.data();
        parallel_for(B, [&](std::int64_t i) {
            const auto& s = *(std::begin(texts) + i);
            tokenize_into(std::string_view(s), std::span<std::int32_t>(base + i * T, std::size_t(T)));
        });
    }
    template <class Strings>
    Tensor<std::int32_t, Cpu> tokenize_batch(const Strings& texts, int context_length = default_context_length) const {
        Tensor<std::int32_t, Cpu> out(Shape{std::int64_t(std::size(texts)), std::int64_t(check_context(context_length))});
        tokenize_batch(out, texts);
        return out;
    }

    // The cleaned text the splitter sees (hf: one segment per special token boundary, joined).
    std::string normalize(std::string_view text) const {
        std::u32string s = unicode::decode_utf8(text);
        if (mode_ == TokenizerMode::hf) text::hf_normalize(s);
        else text::openclip_clean(s);
        return unicode::encode_utf8(s);
    }

    // ---- decoding --------------------------------------------------------------------------
    // Token strings joined, byte symbols mapped back to bytes, "</w>" -> " " (open_clip's decode;
    // invalid UTF-8 from partial ids becomes U+FFFD). skip_special: drop the start token and stop
    // at the first end token (what follows is padding).
    std::string decode(std::span<const std::int32_t> ids, bool skip_special = true) const {
        std::string bytes;
        for (const std::int32_t id : ids) {
            if (skip_special && id == sot_) continue;
            if (skip_special && id == eot_) break;
            const std::string& t = token(id);
            if (id == sot_ || id == eot_) {
                bytes += t;
                continue;
            }
            std::u32string cps = unicode::decode_utf8(t);
            std::size_t n = cps.size();
            const bool eow = t.ends_with("</w>");
            if (eow) n -= 4;
            for (std::size_t i = 0; i < n; ++i) {
                const int b = unicode_to_byte(cps[i]);
                if (b < 0) unicode::append_utf8(bytes, cps[i]);
                else bytes += char(b);
            }
            if (eow) bytes += ' ';
        }
        return unicode::encode_utf8(unicode::decode_utf8(bytes));
    }
    std::string decode(const std::vector<std::int32_t>& ids, bool skip_special = true) const {
        return decode(std::span<const std::int32_t>(ids), skip_special);
    }

private:
    struct Special {
        std::string content;
        bool normalized;
        std::int32_t id = -1;
    };

    Tokenizer() : cache_(std::make_unique<detail::BpeCache>()) {}

public:
    Tokenizer(Tokenizer&&) noexcept = default;
    Tokenizer& operator=(Tokenizer&&) noexcept = default;

private:
    static int check_context(int n) {
        require<ShapeError>(n >= 2, "tokenize: context length must be at least 2, got ", n);
        return n;
    }

    static std::string byte_symbol(std::uint8_t b) {
        std::string s;
        unicode::append_utf8(s, detail::byte_to_unicode()[b]);
        return s;
    }
    static int unicode_to_byte(char32_t c) {
        static const std::array<int, 324> inv = [] {
            std::array<int, 324> t;
            t.fill(-1);
            for (int b = 0; b < 256; ++b) t[std::size_t(detail::byte_to_unicode()[std::size_t(b)])] = b;
            return t;
        }();
        return c < inv.size() ? inv[c] : -1;
    }

    static std::pair<std::string, std::string> split_merge(std::string_view line, std::string_view what,
                                                           std::size_t line_no) {
        const std::size_t sp = line.find(' ');
        require<FormatError>(sp != std::string_view::npos && sp > 0 && sp + 1 < line.size() &&
                                 line.find(' ', sp + 1) == std::string_view::npos,
                             what, ": line ", line_no, ": a merge must be two symbols separated by one space");
        return {std::string(line.substr(0, sp)), std::string(line.substr(sp + 1))};
    }

    static std::unordered_map<std::string, std::int32_t> vocab_from_json(const Json& v, std::string_view what) {
        std::unordered_map<std::string, std::int32_t> ids;
        ids.reserve(v.items().size());
        for (const auto& [tok, id] : v.items()) {
            require<FormatError>(id.is_integer() && id.as_int64() >= 0 && id.as_int64() < (std::int64_t(1) << 24), what,
                                 ": the id of token \"", tok, "\" must be an integer in [0, 2^24)");
            ids[tok] = std::int32_t(id.as_int64());
        }
        return ids;
    }

    static Tokenizer from_tokenizer_json_value(const Json& j, TokenizerMode mode, std::string_view what) {
        const Json& model = j["model"];
        if (const Json* type = model.find("type"))
            require<FormatError>(type->as_string() == "BPE", "model.type is \"", type->as_string(), "\", expected \"BPE\"");
        const Json* eow = model.find("end_of_word_suffix");
        require<FormatError>(eow && eow->is_string() && eow->as_string() == "</w>",
                             "model.end_of_word_suffix must be \"</w>\" (a CLIP tokenizer)");
        if (const Json* p = model.find("continuing_subword_prefix"); p && !p->is_null())
            require<FormatError>(p->as_string().empty(), "model.continuing_subword_prefix must be empty");
        std::unordered_map<std::string, std::int32_t> ids = vocab_from_json(model["vocab"], "model.vocab");
        std::vector<std::pair<std::string, std::string>> merges;
        const Json& m = model["merges"];
        merges.reserve(m.size());
        std::size_t k = 0;
        for (const Json& e : m.as_array()) {
            ++k;
            if (e.is_string()) {
                merges.push_back(split_merge(e.as_string(), "model.merges", k));
            } else {
                require<FormatError>(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(),
                                     "model.merges[", k - 1, "] must be \"a b\" or [\"a\", \"b\"]");
                merges.emplace_back(e[0].as_string(), e[1].as_string());
            }
        }
        std::vector<Special> specials;
        if (const Json* added = j.find("added_tokens"); added && !added->is_null()) {
            for (const Json& a : added->as_array()) {
                const std::string& content = a["content"].as_string();
                const std::int64_t id = a["id"].as_int64();
                require<FormatError>(id >= 0 && id < (std::int64_t(1) << 24), "added token id out of range");
                ids[content] = std::int32_t(id);
                bool normalized = false;
                if (const Json* n = a.find("normalized")) normalized = n->as_bool();
                for (const char* flag : {"lstrip", "rstrip", "single_word"})
                    if (const Json* f = a.find(flag))
                        require<FormatError>(!f->as_bool(), "added token \"", content, "\": ", flag,
                                             " = true is not supported (CLIP's added tokens have it false)");
                specials.push_back({content, normalized});
            }
        }
        bool split_specials = true;
        if (const Json* pre = j.find("pre_tokenizer"); pre && !pre->is_null()) split_specials = split_variant(*pre);
        Tokenizer t;
        t.mode_ = mode;
        t.init(std::move(ids), merges, what, std::move(specials), split_specials);
        return t;
    }

    // Recognises CLIP's Split regex inside the pre_tokenizer; returns whether it starts with the
    // special-token alternatives.
    static bool split_variant(const Json& pre) {
        static constexpr std::string_view base = R"('s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+)";
        static constexpr std::string_view specials = R"(<\|startoftext\|>|<\|endoftext\|>|)";
        const Json* split = nullptr;
        if (pre["type"].as_string() == "Sequence") {
            for (const Json& p : pre["pretokenizers"].as_array())
                if (p["type"].as_string() == "Split") split = &p;
        } else if (pre["type"].as_string() == "Split") {
            split = &pre;
        }
        require<FormatError>(split != nullptr, "pre_tokenizer: no Split step (not a CLIP tokenizer)");
        const std::string& re = (*split)["pattern"]["Regex"].as_string();
        if (re == base) return false;
        if (re.size() == specials.size() + base.size() && re.starts_with(specials) && re.ends_with(base)) return true;
        fail<FormatError>("pre_tokenizer: unsupported Split pattern \"", re, "\" (not CLIP's)");
    }

    void init(std::unordered_map<std::string, std::int32_t> ids, const std::vector<std::pair<std::string, std::string>>& merges,
              std::string_view what, std::vector<Special> specials, bool split_specials) {
        std::int32_t max_id = -1;
        for (const auto& [tok, id] : ids) max_id = std::max(max_id, id);
        require<FormatError>(max_id >= 0, what, ": empty vocabulary");
        tokens_.assign(std::size_t(max_id) + 1, std::string());
        for (const auto& [tok, id] : ids) tokens_[std::size_t(id)] = tok;
        const auto id_of = [&](const std::string& tok, const char* role) {
            const auto it = ids.find(tok);
            if (it == ids.end()) fail<FormatError>(what, ": ", role, " \"", tok, "\" is not in the vocabulary");
            return it->second;
        };
        for (int b = 0; b < 256; ++b) {
            byte_id_[std::size_t(b)] = id_of(byte_symbol(std::uint8_t(b)), "byte symbol");
            byte_eow_id_[std::size_t(b)] = id_of(byte_symbol(std::uint8_t(b)) + "</w>", "byte symbol");
        }
        std::vector<std::array<std::int32_t, 3>> table;
        table.reserve(merges.size());
        for (const auto& [a, b] : merges)
            table.push_back({id_of(a, "merge part"), id_of(b, "merge part"), id_of(a + b, "merge result")});
        merges_.build(table);
        sot_ = id_of("<|startoftext|>", "special token");
        eot_ = id_of("<|endoftext|>", "special token");
        specials_.clear();
        for (auto& s : specials) {
            require<FormatError>(!s.content.empty(), what, ": empty added token");
            s.id = id_of(s.content, "added token");
            specials_.push_back(std::move(s));
        }
        split_specials_ = split_specials;
    }

    // ---- the pipeline ----------------------------------------------------------------------

    // Appends the ids of text to out; stops early once out holds more than `limit` ids.
    void encode_into(std::string_view text, std::vector<std::int32_t>& out, std::size_t limit) const {
        thread_local std::u32string seg;
        if (mode_ == TokenizerMode::openclip) {
            unicode::decode_utf8(text, seg);
            text::openclip_clean(seg);
            split_and_bpe(seg, out, limit);
            return;
        }
        // hf: special tokens (not normalized) are cut out of the raw text first.
        std::size_t pos = 0;
        while (pos <= text.size() && out.size() <= limit) {
            std::size_t best = std::string_view::npos, best_len = 0;
            std::int32_t best_id = -1;
            for (const Special& s : specials_) {
                if (s.normalized) continue;
                const std::size_t at = text.find(s.content, pos);
                if (at != std::string_view::npos && (at < best || (at == best && s.content.size() > best_len))) {
                    best = at;
                    best_len = s.content.size();
                    best_id = s.id;
                }
            }
            const std::size_t end = best == std::string_view::npos ? text.size() : best;
            if (end > pos) {
                unicode::decode_utf8(text.substr(pos, end - pos), seg);
                text::hf_normalize(seg);
                encode_normalized_hf(seg, out, limit);
            }
            if (best == std::string_view::npos) break;
            out.push_back(best_id);
            pos = best + best_len;
        }
    }

    // A normalized hf segment: normalized special tokens (if any) split it further.
    void encode_normalized_hf(const std::u32string& s, std::vector<std::int32_t>& out, std::size_t limit) const {
        bool any = false;
        for (const Special& sp : specials_) any |= sp.normalized;
        if (!any) {
            split_and_bpe(s, out, limit);
            return;
        }
        const std::string utf8 = unicode::encode_utf8(s);
        std::size_t pos = 0;
        while (pos <= utf8.size()) {
            std::size_t best = std::string::npos, best_len = 0;
            std::int32_t best_id = -1;
            for (const Special& sp : specials_) {
                if (!sp.normalized) continue;
                const std::size_t at = utf8.find(sp.content, pos);
                if (at != std::string::npos && (at < best || (at == best && sp.content.size() > best_len))) {
                    best = at;
                    best_len = sp.content.size();
                    best_id = sp.id;
                }
            }
            const std::size_t end = best == std::string::npos ? utf8.size() : best;
            if (end > pos) split_and_bpe(unicode::decode_utf8(std::string_view(utf8).substr(pos, end - pos)), out, limit);
            if (best == std::string::npos) break;
            out.push_back(best_id);
            pos = best + best_len;
        }
    }

    static bool matches_at(const std::u32string& s, std::size_t i, std::string_view lit, bool fold_long_s) {
        if (s.size() - i < lit.size()) return false;
        for (std::size_t k = 0; k < lit.size(); ++k) {
            const char32_t c = s[i + k];
            if (c == char32_t(static_cast<unsigned char>(lit[k]))) continue;
            if (fold_long_s && lit[k] == 's' && c == 0x17F) continue;  // regex IGNORECASE: U+017F folds to 's'
            return false;
        }
        return true;
    }

    // The split pattern, then BPE of each piece.
    void split_and_bpe(const std::u32string& s, std::vector<std::int32_t>& out, std::size_t limit) const {
        const bool oc = mode_ == TokenizerMode::openclip;
        const unicode::CharData& cd = unicode::char_data(oc ? unicode::UnicodeFlavor::openclip : unicode::UnicodeFlavor::hf);
        thread_local std::string piece;
        const std::size_t n = s.size();
        std::size_t i = 0;
        // Character class for the pattern: letter, number, or skipped (no alternative matches:
        // \s, and in openclip mode also U+0345, see unicode_tables.hpp); anything else is "other".
        const auto cls = [&](char32_t c) -> std::uint8_t {
            if (c < 0x80) {
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return unicode::kLetter;
                if (c >= '0' && c <= '9') return unicode::kNumber;
                if (c == ' ' || (c >= 0x9 && c <= 0xD)) return unicode::kSkip;
                return 0;
            }
            return cd.flags(c) & (unicode::kLetter | unicode::kNumber | unicode::kSkip);
        };
        while (i < n && out.size() <= limit) {
            const char32_t c = s[i];
            std::size_t j = i;
            // special tokens inside the pattern
            if (c == U'<') {
                if (oc) {
                    // open_clip maps the piece to the special id only when it is spelled exactly so;
                    // a caseless match ("<ſtart_of_text>") is one ordinary piece.
                    if (matches_at(s, i, "<start_of_text>", false)) { out.push_back(sot_); i += 15; continue; }
                    if (matches_at(s, i, "<end_of_text>", false)) { out.push_back(eot_); i += 13; continue; }
                    if (matches_at(s, i, "<start_of_text>", true)) j = i + 15;
                    else if (matches_at(s, i, "<end_of_text>", true)) j = i + 13;
                } else if (split_specials_) {
                    // A special token found by the split pattern (it only gets here when the
                    // text lowercased into one) is a piece, which tokenizers' ByteLevel step then
                    // splits again with GPT-2's pattern: "<|", the name, "|>".
                    const bool start = matches_at(s, i, "<|startoftext|>", false);
                    if (start || matches_at(s, i, "<|endoftext|>", false)) {
                        bpe("<|", out);
                        bpe(start ? "startoftext" : "endoftext", out);
                        bpe("|>", out);
                        i += start ? 15 : 13;
                        continue;
                    }
                }
            }
            if (j == i && c == U'\'' && i + 1 < n) {
                const char32_t d = s[i + 1];
                const char32_t e = i + 2 < n ? s[i + 2] : 0;
                if (d == U's' || d == U't' || d == U'm' || d == U'd' || (oc && d == 0x17F)) j = i + 2;
                else if ((d == U'r' && e == U'e') || (d == U'v' && e == U'e') || (d == U'l' && e == U'l')) j = i + 3;
            }
            if (j == i) {
                const std::uint8_t f = cls(c);
                if (f & unicode::kLetter) {
                    j = i + 1;
                    while (j < n && (cls(s[j]) & unicode::kLetter)) ++j;
                } else if (f & unicode::kNumber) {
                    j = i + 1;
                } else if (f & unicode::kSkip) {
                    ++i;
                    continue;
                } else {
                    j = i + 1;
                    while (j < n && !(cls(s[j]) & (unicode::kLetter | unicode::kNumber | unicode::kSkip))) ++j;
                }
            }
            piece.clear();
            for (std::size_t k = i; k < j; ++k) unicode::append_utf8(piece, s[k]);
            bpe(piece, out);
            i = j;
        }
    }

    // BPE of one piece (its UTF-8 bytes), lowest-rank merge first; results are cached.
    void bpe(std::string_view word, std::vector<std::int32_t>& out) const {
        if (word.size() == 1) {
            out.push_back(byte_eow_id_[static_cast<unsigned char>(word[0])]);
            return;
        }
        if (cache_->lookup(word, out)) return;
        struct Sym {
            std::int32_t id;
            std::int32_t prev, next;
        };
        struct Cand {
            std::int32_t rank, pos, id;
            bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
        };
        thread_local std::vector<Sym> sym;
        thread_local std::vector<Cand> heap;
        const std::size_t n = word.size();
        sym.resize(n);
        for (std::size_t k = 0; k < n; ++k) {
            const auto b = static_cast<unsigned char>(word[k]);
            sym[k] = {k + 1 == n ? byte_eow_id_[b] : byte_id_[b], std::int32_t(k) - 1,
                      k + 1 == n ? -1 : std::int32_t(k) + 1};
        }
        heap.clear();
        const auto push = [&](std::int32_t pos) {
            const std::int32_t nx = sym[std::size_t(pos)].next;
            if (nx < 0) return;
            if (const auto* e = merges_.find(sym[std::size_t(pos)].id, sym[std::size_t(nx)].id)) {
                heap.push_back({e->rank, pos, e->id});
                std::push_heap(heap.begin(), heap.end(), std::greater<>{});
            }
        };
        for (std::size_t k = 0; k + 1 < n; ++k) push(std::int32_t(k));
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
            const Cand top = heap.back();
            heap.pop_back();
            Sym& left = sym[std::size_t(top.pos)];
            if (left.id < 0 || left.next < 0) continue;
            Sym& right = sym[std::size_t(left.next)];
            const auto* e = merges_.find(left.id, right.id);
            if (!e || e->id != top.id) continue;  // stale candidate
            left.id = top.id;
            right.id = -1;
            left.next = right.next;
            if (left.next >= 0) sym[std::size_t(left.next)].prev = top.pos;
            if (left.prev >= 0) push(left.prev);
            push(top.pos);
        }
        const std::size_t first = out.size();
        for (std::int32_t k = 0; k >= 0; k = sym[std::size_t(k)].next) out.push_back(sym[std::size_t(k)].id);
        cache_->insert(word, std::span<const std::int32_t>(out.data() + first, out.size() - first));
    }

    TokenizerMode mode_ = TokenizerMode::hf;
    std::vector<std::string> tokens_;
    std::array<std::int32_t, 256> byte_id_{}, byte_eow_id_{};
    detail::MergeTable merges_;
    std::int32_t sot_ = 49406, eot_ = 49407;
    std::vector<Special> specials_;
    bool split_specials_ = true;
    std::unique_ptr<detail::BpeCache> cache_;
};

}  // namespace pickscore::io
