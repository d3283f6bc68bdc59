// pickscore/io/wordpiece.hpp — the BERT WordPiece tokenizer (bert-base-uncased), id-exact with
// Hugging Face's BertTokenizerFast. ImageReward's BLIP text encoder reads its ids.
//
//   auto tok = io::WordPieceTokenizer::from_file(".../vocab.txt");     // or tokenizer.json, a folder
//   tok.add_special_token("[DEC]"); tok.add_special_token("[ENC]");     // what BLIP's init_tokenizer adds
//   std::vector<std::int32_t> ids = tok.tokenize("a photo of a cat", 35);   // [CLS] ... [SEP] [PAD]...
//   Tensor<std::int32_t, Cpu> batch = tok.tokenize_batch(prompts, 35);     // [B, 35], multi-threaded
//
// The pipeline (transformers' BertTokenizerFast on tokenizers, what BertConverter builds from a
// vocab.txt with do_lower_case):
//   1. special tokens ([PAD] [UNK] [CLS] [SEP] [MASK] and any added with add_special_token) are
//      found in the raw text, case-sensitively, leftmost-longest, and become their ids;
//   2. the rest goes through BertNormalizer: NUL, U+FFFD and control / format / private-use
//      characters are dropped, whitespace becomes a space, CJK ideographs get a space on each side,
//      accents are stripped (NFD minus nonspacing marks) and everything is lowercased. It works
//      character by character, so it is one table lookup per code point (detail/bert_tables.hpp,
//      generated from the reference by tools/gen_wordpiece_data.py);
//   3. BertPreTokenizer: split at spaces, every punctuation character its own word;
//   4. WordPiece: a word of more than 100 characters is [UNK]; otherwise the longest prefix in the
//      vocabulary, then the longest "##"-prefixed continuation, and so on; a word with a piece
//      that matches nothing is [UNK] as a whole;
//   5. framing: [CLS] ids [SEP]; tokenize() truncates to max_length keeping [SEP] and pads with
//      [PAD] (what ImageReward's padding="max_length", truncation=True, max_length=35 does).
// Input is UTF-8; invalid UTF-8 becomes U+FFFD per maximal invalid subsequence (as Python's
// decode(errors="replace") would), which the normalizer then drops.
//
// ImageReward calls the slow (Python) BertTokenizer, which differs from the fast one on some unusual
// strings (unassigned code points, a few spacing marks); tests/data/tokenizer/wordpiece/differences.md
// lists them for the parity corpus.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/threads.hpp"
#include "detail/bert_tables.hpp"
#include "detail/unicode.hpp"
#include "gzip.hpp"
#include "json.hpp"

namespace pickscore::io {

namespace detail {

// What BertNormalizer does to one code point, plus the pre-tokenizer's punctuation flag.
class BertCharTable {
public:
    enum Kind : std::uint8_t { keep = 0, drop = 1, space = 2, cjk = 3, mapped = 4, hangul = 5 };
    static constexpr std::uint8_t punct_bit = 8;

    static const BertCharTable& get() {
        static const BertCharTable t;
        return t;
    }

    std::uint8_t flags(char32_t c) const {
        if (c >= 0x110000) return drop;
        return blocks_[std::size_t(index_[c >> 8]) * 256 + (c & 0xFF)];
    }

    // Appends BertNormalizer's output for c to out.
    void normalize(char32_t c, std::u32string& out) const {
        switch (flags(c) & 7) {
            case keep: out.push_back(c); break;
            case drop: break;
            case space: out.push_back(U' '); break;
            case cjk:
                out.push_back(U' ');
                out.push_back(c);
                out.push_back(U' ');
                break;
            case hangul: {
                const char32_t s = c - 0xAC00;
                out.push_back(0x1100 + s / 588);
                out.push_back(0x1161 + (s % 588) / 28);
                if (s % 28 != 0) out.push_back(0x11A7 + s % 28);
                break;
            }
            default: {
                const auto m = bert_data::mapped();
                const auto it = std::lower_bound(m.begin(), m.end(), c,
                                                 [](const bert_data::Mapping& e, char32_t v) { return e.cp < v; });
                // The table holds every code point flagged `mapped` (built from it below).
                for (std::uint8_t i = 0; i < it->n; ++i) out.push_back(it->out[i]);
                break;
            }
        }
    }
    bool is_punctuation(char32_t c) const { return flags(c) & punct_bit; }

private:
    BertCharTable() {
        std::vector<std::uint8_t> full(0x110000, keep);
        auto mark = [&](std::span<const bert_data::Range> rs, std::uint8_t kind) {
            for (const auto& r : rs)
                for (char32_t c = r.lo; c <= r.hi; ++c) full[c] = std::uint8_t((full[c] & ~7u) | kind);
        };
        mark(bert_data::removed(), drop);
        mark(bert_data::spaces(), space);
        mark(bert_data::cjk(), cjk);
        for (char32_t c = 0xAC00; c < 0xD7A4; ++c) full[c] = hangul;
        for (const auto& m : bert_data::mapped()) full[m.cp] = std::uint8_t((full[m.cp] & ~7u) | mapped);
        for (const auto& r : bert_data::punctuation())
            for (char32_t c = r.lo; c <= r.hi; ++c) full[c] |= punct_bit;
        for (char32_t c = 0xD800; c < 0xE000; ++c) full[c] = drop;  // surrogates never occur in decoded text
        index_.resize(0x110000 / 256);
        std::unordered_map<std::string, std::uint16_t> seen;
        for (std::size_t b = 0; b < index_.size(); ++b) {
            std::string block(reinterpret_cast<const char*>(full.data() + b * 256), 256);
            auto [it, fresh] = seen.emplace(block, std::uint16_t(blocks_.size() / 256));
            if (fresh) blocks_.insert(blocks_.end(), full.begin() + std::ptrdiff_t(b * 256),
                                      full.begin() + std::ptrdiff_t((b + 1) * 256));
            index_[b] = it->second;
        }
    }
    std::vector<std::uint16_t> index_;
    std::vector<std::uint8_t> blocks_;
};

struct WordPieceStringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace detail

class WordPieceTokenizer {
public:
    static constexpr int imagereward_max_length = 35;
    static constexpr std::size_t max_input_chars_per_word = 100;

    // ---- loading -------------------------------------------------------------------------
    // vocab.txt: one token per line, line i is id i (only "\n" ends a line, as transformers'
    // load_vocab reads it; a token listed twice keeps its last id). [PAD], [UNK], [CLS] and [SEP]
    // must be present.
    static WordPieceTokenizer from_vocab_txt(const std::filesystem::path& path) {
        return from_vocab_text(read_file(path), path.string());
    }
    static WordPieceTokenizer from_vocab_text(std::string_view text, std::string_view what = "vocab.txt") {
        std::vector<std::string> tokens;
        std::size_t pos = 0;
        while (pos < text.size()) {
            std::size_t end = text.find('\n', pos);
            if (end == std::string_view::npos) end = text.size();
            tokens.emplace_back(text.substr(pos, end - pos));
            pos = end + 1;
        }
        WordPieceTokenizer t;
        t.init(std::move(tokens), what);
        return t;
    }

    // A Hugging Face tokenizer.json of a BERT tokenizer (model WordPiece, BertNormalizer with
    // lowercase, the uncased models' settings).
    static WordPieceTokenizer from_tokenizer_json(const std::filesystem::path& path) {
        return from_tokenizer_json_text(read_file(path), path.string());
    }
    static WordPieceTokenizer from_tokenizer_json_text(std::string_view text, std::string_view what = "tokenizer.json") {
        Json j;
        try {
            j = json::parse(text);
        } catch (const FormatError& e) {
            fail<FormatError>(what, ": ", e.what());
        }
        require<FormatError>(j.is_object(), what, ": expected a JSON object");
        const Json* model = j.find("model");
        require<FormatError>(model && model->is_object(), what, ": no \"model\" object");
        const Json* type = model->find("type");
        require<FormatError>(type && type->is_string() && type->as_string() == "WordPiece", what,
                             ": model.type is not \"WordPiece\"");
        auto str = [&](const Json* obj, std::string_view key, std::string_view want) {
            const Json* v = obj ? obj->find(key) : nullptr;
            require<FormatError>(!v || v->is_null() || (v->is_string() && v->as_string() == want), what, ": ", key,
                                 " must be \"", want, "\" (the BERT settings this tokenizer implements)");
        };
        str(model, "continuing_subword_prefix", "##");
        str(model, "unk_token", "[UNK]");
        if (const Json* m = model->find("max_input_chars_per_word"); m && !m->is_null())
            require<FormatError>(m->is_number() && m->as_double() == double(max_input_chars_per_word), what,
                                 ": max_input_chars_per_word must be ", max_input_chars_per_word);
        if (const Json* n = j.find("normalizer"); n && !n->is_null()) {
            require<FormatError>(n->is_object(), what, ": normalizer is not an object");
            str(n, "type", "BertNormalizer");
            auto flag = [&](std::string_view key, bool want, bool null_ok) {
                const Json* v = n->find(key);
                const bool ok = (!v && null_ok) || (v && v->is_null() && null_ok) || (v && v->is_bool() && v->as_bool() == want);
                require<FormatError>(ok, what, ": normalizer.", key, " must be ", want ? "true" : "false",
                                     " (only the uncased BERT normalizer is implemented)");
            };
            flag("lowercase", true, false);
            flag("clean_text", true, true);
            flag("handle_chinese_chars", true, true);
            flag("strip_accents", true, true);
        }
        const Json* vocab = model->find("vocab");
        require<FormatError>(vocab && vocab->is_object(), what, ": model.vocab is not an object");
        std::vector<std::pair<std::int64_t, std::string>> entries;
        for (const auto& [tok, id] : vocab->items()) {
            require<FormatError>(id.is_integer() && id.as_int64() >= 0 && id.as_int64() < (std::int64_t(1) << 31), what,
                                 ": the id of '", tok, "' is not a non-negative integer");
            entries.emplace_back(id.as_int64(), tok);
        }
        std::sort(entries.begin(), entries.end());
        std::vector<std::string> tokens;
        for (std::size_t i = 0; i < entries.size(); ++i) {
            require<FormatError>(entries[i].first == std::int64_t(i), what, ": model.vocab ids are not 0..",
                                 entries.size() - 1, " (id ", i, " is missing or repeated)");
            tokens.push_back(entries[i].second);
        }
        WordPieceTokenizer t;
        t.init(std::move(tokens), what);
        if (const Json* added = j.find("added_tokens"); added && added->is_array()) {
            for (const Json& a : added->as_array()) {
                require<FormatError>(a.is_object(), what, ": added_tokens holds a non-object");
                const Json* c = a.find("content");
                const Json* id = a.find("id");
                const Json* sp = a.find("special");
                require<FormatError>(c && c->is_string() && id && id->is_integer(), what,
                                     ": an added token without content or id");
                if (sp && sp->is_bool() && !sp->as_bool()) continue;  // only special tokens are implemented
                t.add_special_token(c->as_string(), std::int32_t(id->as_int64()));
            }
        }
        return t;
    }

    // A folder (vocab.txt, else tokenizer.json), a *.json file, or a vocab file of any other name.
    static WordPieceTokenizer from_file(const std::filesystem::path& path) {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (fs::is_directory(path, ec)) {
            if (fs::exists(path / "vocab.txt", ec)) return from_vocab_txt(path / "vocab.txt");
            if (fs::exists(path / "tokenizer.json", ec)) return from_tokenizer_json(path / "tokenizer.json");
            fail<IoError>("wordpiece tokenizer: '", path.string(), "' holds neither vocab.txt nor tokenizer.json");
        }
        require<IoError>(fs::exists(path, ec), "wordpiece tokenizer: '", path.string(), "' does not exist");
        if (path.extension() == ".json") return from_tokenizer_json(path);
        return from_vocab_txt(path);
    }

    // BLIP's init_tokenizer (ImageReward): "[DEC]" and "[ENC]" added as special tokens after the
    // vocabulary (30522 and 30523 for bert-base-uncased).
    void add_blip_tokens() {
        add_special_token("[DEC]");
        add_special_token("[ENC]");
    }

    // Makes `token` a special token (found in raw text, never split). A token already in the
    // vocabulary keeps its id; a new one gets the next id (or `id` when given: it must be the next
    // one or the token's own).
    std::int32_t add_special_token(const std::string& token, std::int32_t id = -1) {
        require<Error>(!token.empty(), "wordpiece tokenizer: an empty special token");
        auto it = ids_.find(token);
        if (it == ids_.end()) {
            const std::int32_t next = std::int32_t(tokens_.size());
            require<FormatError>(id < 0 || id == next, "wordpiece tokenizer: special token '", token, "' has id ", id,
                                 " but the next free id is ", next);
            tokens_.push_back(token);
            it = ids_.emplace(token, next).first;
        } else {
            require<FormatError>(id < 0 || id == it->second, "wordpiece tokenizer: special token '", token, "' has id ",
                                 id, " but the vocabulary gives it ", it->second);
        }
        if (std::find(specials_.begin(), specials_.end(), token) == specials_.end()) {
            specials_.push_back(token);
            special_cps_.emplace_back(unicode::decode_utf8(token), it->second);
        }
        return it->second;
    }

    // ---- vocabulary ------------------------------------------------------------------------
    std::size_t vocab_size() const { return tokens_.size(); }
    std::int32_t cls_id() const { return cls_; }
    std::int32_t sep_id() const { return sep_; }
    std::int32_t pad_id() const { return pad_; }
    std::int32_t unk_id() const { return unk_; }
    const std::vector<std::string>& special_tokens() const { return specials_; }
    const std::string& token(std::int32_t id) const {
        require<Error>(id >= 0 && std::size_t(id) < tokens_.size(), "wordpiece tokenizer: id ", id,
                       " out of range [0, ", tokens_.size(), ")");
        return tokens_[std::size_t(id)];
    }
    // The id of a token, or -1.
    std::int32_t find(std::string_view token) const {
        const auto it = ids_.find(token);
        return it == ids_.end() ? -1 : it->second;
    }

    // ---- encoding --------------------------------------------------------------------------
    // The ids of a text without [CLS]/[SEP] and without truncation.
    std::vector<std::int32_t> encode(std::string_view text) const {
        std::vector<std::int32_t> out;
        const std::u32string s = unicode::decode_utf8(text);
        std::size_t start = 0, i = 0;
        while (i < s.size()) {
            const auto [id, len] = match_special(s, i);
            if (len == 0) {
                ++i;
                continue;
            }
            encode_segment(std::u32string_view(s).substr(start, i - start), out);
            out.push_back(id);
            i += len;
            start = i;
        }
        encode_segment(std::u32string_view(s).substr(start), out);
        return out;
    }

    // [CLS] + ids + [SEP], at most max_length ids (ids truncated, [SEP] kept), padded with [PAD]
    // to max_length when `pad`.
    std::vector<std::int32_t> tokenize(std::string_view text, int max_length = imagereward_max_length,
                                       bool pad = true) const {
        check_max_length(max_length);
        const std::vector<std::int32_t> ids = encode(text);
        const std::size_t keep = std::min(ids.size(), std::size_t(max_length - 2));
        std::vector<std::int32_t> out;
        out.reserve(std::size_t(max_length));
        out.push_back(cls_);
        out.insert(out.end(), ids.begin(), ids.begin() + std::ptrdiff_t(keep));
        out.push_back(sep_);
        if (pad) out.resize(std::size_t(max_length), pad_);
        return out;
    }

    // How many of tokenize(text, max_length)'s ids are not padding.
    std::int64_t length(std::string_view text, int max_length = imagereward_max_length) const {
        check_max_length(max_length);
        return std::min<std::int64_t>(std::int64_t(encode(text).size()) + 2, max_length);
    }

    // out [B, L] padded rows, one per text, tokenized on the thread pool.
    template <class Strings>
    void tokenize_batch(TensorView<std::int32_t, Cpu> out /*B,L*/, const Strings& texts) const {
        require<ShapeError>(out.rank() == 2, "WordPieceTokenizer::tokenize_batch: out must be [B, L], got ", out.shape());
        const std::int64_t B = out.size(0), L = out.size(1);
        require<ShapeError>(B == std::int64_t(std::size(texts)), "WordPieceTokenizer::tokenize_batch: out has ", B,
                            " rows for ", std::size(texts), " texts");
        check_max_length(int(std::min<std::int64_t>(L, 1 << 20)));
        parallel_for(B, [&](std::int64_t i) {
            const auto& s = *(std::begin(texts) + i);
            const std::vector<std::int32_t> row = tokenize(std::string_view(s), int(L), true);
            std::copy(row.begin(), row.end(), out.data() + i * L);
        });
    }
    template <class Strings>
    Tensor<std::int32_t, Cpu> tokenize_batch(const Strings& texts, int max_length = imagereward_max_length) const {
        Tensor<std::int32_t, Cpu> out(Shape{std::int64_t(std::size(texts)), std::int64_t(max_length)});
        tokenize_batch(out.view(), texts);
        return out;
    }

    // BertNormalizer's output for a text (special tokens included, not treated specially).
    static std::string normalize(std::string_view text) {
        const auto& table = detail::BertCharTable::get();
        std::u32string out;
        for (char32_t c : unicode::decode_utf8(text)) table.normalize(c, out);
        return unicode::encode_utf8(out);
    }

    // The token strings of ids joined by spaces, "##" continuations glued to the previous piece
    // (transformers' convert_tokens_to_string); skip_special drops [CLS], [SEP], [PAD] and the
    // other special tokens.
    std::string decode(std::span<const std::int32_t> ids, bool skip_special = true) const {
        std::string out;
        for (const std::int32_t id : ids) {
            const std::string& t = token(id);
            if (skip_special && std::find(specials_.begin(), specials_.end(), t) != specials_.end()) continue;
            if (t.starts_with("##") && !out.empty()) {
                out += t.substr(2);
            } else {
                if (!out.empty()) out += ' ';
                out += t;
            }
        }
        return out;
    }

private:
    WordPieceTokenizer() = default;

    static void check_max_length(int max_length) {
        require<Error>(max_length >= 2, "wordpiece tokenizer: max_length must be at least 2 ([CLS] and [SEP]), got ",
                       max_length);
    }

    void init(std::vector<std::string> tokens, std::string_view what) {
        require<FormatError>(!tokens.empty(), what, ": empty vocabulary");
        require<FormatError>(tokens.size() < (std::size_t(1) << 31), what, ": too many tokens");
        tokens_ = std::move(tokens);
        ids_.clear();
        ids_.reserve(tokens_.size());
        for (std::size_t i = 0; i < tokens_.size(); ++i) ids_[tokens_[i]] = std::int32_t(i);  // later duplicates win
        auto need = [&](const char* t) {
            const auto it = ids_.find(std::string_view(t));
            require<FormatError>(it != ids_.end(), what, ": the vocabulary has no ", t, " token");
            return it->second;
        };
        pad_ = need("[PAD]");
        unk_ = need("[UNK]");
        cls_ = need("[CLS]");
        sep_ = need("[SEP]");
        specials_.clear();
        special_cps_.clear();
        for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
            if (ids_.count(std::string_view(t))) add_special_token(t);
    }

    // The longest special token starting at s[i]: (id, length in code points), length 0 if none.
    std::pair<std::int32_t, std::size_t> match_special(const std::u32string& s, std::size_t i) const {
        std::int32_t best_id = -1;
        std::size_t best = 0;
        for (const auto& [t, id] : special_cps_)
            if (t.size() > best && s.compare(i, t.size(), t) == 0) {
                best = t.size();
                best_id = id;
            }
        return {best_id, best};
    }

    void encode_segment(std::u32string_view seg, std::vector<std::int32_t>& out) const {
        if (seg.empty()) return;
        const auto& table = detail::BertCharTable::get();
        std::u32string norm;
        norm.reserve(seg.size() + 8);
        for (char32_t c : seg) table.normalize(c, norm);
        std::u32string word;
        for (char32_t c : norm) {
            if (c == U' ') {
                word_piece(word, out);
                word.clear();
            } else if (table.is_punctuation(c)) {
                word_piece(word, out);
                word.assign(1, c);
                word_piece(word, out);
                word.clear();
            } else {
                word.push_back(c);
            }
        }
        word_piece(word, out);
    }

    // Greedy longest-match-first over the vocabulary.
    void word_piece(const std::u32string& word, std::vector<std::int32_t>& out) const {
        if (word.empty()) return;
        if (word.size() > max_input_chars_per_word) {
            out.push_back(unk_);
            return;
        }
        const std::string utf8 = unicode::encode_utf8(word);
        std::vector<std::size_t> at;  // byte offset of each code point, and the end
        at.reserve(word.size() + 1);
        for (std::size_t b = 0; b < utf8.size(); ++b)
            if ((static_cast<unsigned char>(utf8[b]) & 0xC0) != 0x80) at.push_back(b);
        at.push_back(utf8.size());
        const std::size_t first = out.size();
        std::string key;
        std::size_t start = 0;
        while (start < word.size()) {
            std::size_t end = word.size();
            std::int32_t id = -1;
            while (end > start) {
                key.assign(start > 0 ? "##" : "");
                key.append(utf8, at[start], at[end] - at[start]);
                const auto it = ids_.find(std::string_view(key));
                if (it != ids_.end()) {
                    id = it->second;
                    break;
                }
                --end;
            }
            if (id < 0) {
                out.resize(first);
                out.push_back(unk_);
                return;
            }
            out.push_back(id);
            start = end;
        }
    }

    std::vector<std::string> tokens_;
    std::unordered_map<std::string, std::int32_t, detail::WordPieceStringHash, std::equal_to<>> ids_;
    std::vector<std::string> specials_;
    std::vector<std::pair<std::u32string, std::int32_t>> special_cps_;  // the special tokens as code points
    std::int32_t pad_ = 0, unk_ = 0, cls_ = 0, sep_ = 0;
};

}  // namespace pickscore::io
