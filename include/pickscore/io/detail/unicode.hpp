// pickscore/io/detail/unicode.hpp — UTF-8 coding, character classes, NFC and lowercase for the
// CLIP tokenizer, in two flavours (see unicode_tables.hpp for the Unicode versions):
//   UnicodeFlavor::hf        what Hugging Face tokenizers 0.23.3 does (CLIPTokenizer / ...Fast)
//   UnicodeFlavor::openclip  what open_clip 3.3.0 does on Python 3.11 (+ the regex module)
//
// Text is handled as std::u32string (code points). Invalid UTF-8 is decoded the way Python's
// bytes.decode("utf-8", errors="replace") does it: each maximal invalid subpart becomes one U+FFFD.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "unicode_tables.hpp"

namespace pickscore::io::unicode {

enum class UnicodeFlavor { hf, openclip };

inline constexpr char32_t replacement_char = 0xFFFD;

// ---------------------------------------------------------------- UTF-8

// Decodes UTF-8, replacing each maximal invalid subpart with U+FFFD (CPython's "replace").
inline void decode_utf8(std::string_view s, std::u32string& out) {
    out.clear();
    out.reserve(s.size());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            out.push_back(c);
            ++i;
            continue;
        }
        int need;
        unsigned char lo = 0x80, hi = 0xBF;
        char32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
        else if (c == 0xE0) { need = 2; lo = 0xA0; cp = 0; }
        else if (c == 0xED) { need = 2; hi = 0x9F; cp = 0xD; }
        else if (c >= 0xE1 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
        else if (c == 0xF0) { need = 3; lo = 0x90; cp = 0; }
        else if (c == 0xF4) { need = 3; hi = 0x8F; cp = 4; }
        else if (c >= 0xF1 && c <= 0xF3) { need = 3; cp = c & 0x07; }
        else {
            out.push_back(replacement_char);
            ++i;
            continue;
        }
        std::size_t j = i + 1;
        int got = 0;
        for (; got < need; ++got, ++j) {
            if (j >= n) break;
            const unsigned char b = static_cast<unsigned char>(s[j]);
            const unsigned char l = got == 0 ? lo : 0x80, h = got == 0 ? hi : 0xBF;
            if (b < l || b > h) break;
            cp = (cp << 6) | (b & 0x3F);
        }
        out.push_back(got == need ? cp : replacement_char);
        i = j;
    }
}

inline std::u32string decode_utf8(std::string_view s) {
    std::u32string out;
    decode_utf8(s, out);
    return out;
}

inline void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

inline std::string encode_utf8(std::u32string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t c : s) append_utf8(out, c);
    return out;
}

// ---------------------------------------------------------------- character tables

enum CharFlag : std::uint8_t {
    kLetter = 1,       // \p{L}
    kNumber = 2,       // \p{N}
    kSpace = 4,        // hf: \s (White_Space); openclip: str.isspace
    kLower = 8,        // has a lowercase mapping (or is U+0130 / U+03A3)
    kNfc = 16,         // may change under NFC (decomposes, combines, or has a combining class)
    kCased = 32,       // openclip Final_Sigma: Cased and not Case_Ignorable
    kIgnorable = 64,   // openclip Final_Sigma: Case_Ignorable
    kSkip = 128,       // the split pattern matches no alternative here (\s; openclip also U+0345)
};

// Everything one flavour needs: a two-level flag table over all code points, the lowercase
// ranges, and the NFC data. Built once per flavour (function-local static).
class CharData {
public:
    explicit CharData(UnicodeFlavor f) : flavor_(f) {
        namespace ud = unicode_data;
        std::vector<std::uint8_t> full(0x110000, 0);
        const auto mark = [&](std::span<const ud::Range> rs, std::uint8_t bit) {
            for (const auto& r : rs)
                for (char32_t c = r.lo; c <= r.hi; ++c) full[c] |= bit;
        };
        const bool hf = f == UnicodeFlavor::hf;
        mark(hf ? ud::hf_letter() : ud::oc_letter(), kLetter);
        mark(hf ? ud::hf_number() : ud::oc_number(), kNumber);
        mark(hf ? ud::hf_space() : ud::oc_space(), kSpace);
        mark(hf ? ud::hf_space() : ud::oc_split_skip(), kSkip);
        lower_ = hf ? ud::hf_lower() : ud::oc_lower();
        for (const auto& r : lower_)
            for (char32_t c = r.lo; c <= r.hi; c += r.stride) full[c] |= kLower;
        full[0x130] |= kLower;
        if (!hf) {
            full[0x3A3] |= kLower;
            mark(ud::oc_cased(), kCased);
            mark(ud::oc_case_ignorable(), kIgnorable);
        }
        for (const auto& r : ud::combining_classes()) {
            if (hf && !r.hf) continue;
            for (char32_t c = r.lo; c <= r.hi; ++c) {
                full[c] |= kNfc;
                ccc_[c] = r.ccc;
            }
        }
        for (const auto& d : ud::decompositions()) {
            if (hf && !(d.flags & 1)) continue;
            decomp_[d.cp] = {d.first, d.second};
            full[d.cp] |= kNfc;
            if (d.flags & 2) {
                compose_[key(d.first, d.second)] = d.cp;
                full[d.second] |= kNfc;
            }
        }
        for (char32_t c = 0xAC00; c < 0xD7A4; ++c) full[c] |= kNfc;    // Hangul syllables
        for (char32_t c = 0x1161; c <= 0x1175; ++c) full[c] |= kNfc;   // Hangul V
        for (char32_t c = 0x11A8; c <= 0x11C2; ++c) full[c] |= kNfc;   // Hangul T
        // Two-level table: 256-code-point blocks, identical blocks shared.
        index_.resize(0x110000 / 256);
        std::unordered_map<std::string, std::uint16_t> seen;
        for (std::size_t b = 0; b < index_.size(); ++b) {
            std::string block(reinterpret_cast<const char*>(full.data() + b * 256), 256);
            auto [it, fresh] = seen.emplace(block, std::uint16_t(blocks_.size() / 256));
            if (fresh) blocks_.insert(blocks_.end(), full.begin() + b * 256, full.begin() + (b + 1) * 256);
            index_[b] = it->second;
        }
    }

    UnicodeFlavor flavor() const { return flavor_; }

    std::uint8_t flags(char32_t c) const {
        if (c >= 0x110000) return 0;
        return blocks_[std::size_t(index_[c >> 8]) * 256 + (c & 0xFF)];
    }
    bool is_letter(char32_t c) const { return flags(c) & kLetter; }
    bool is_number(char32_t c) const { return flags(c) & kNumber; }
    bool is_space(char32_t c) const { return flags(c) & kSpace; }
    bool is_skip(char32_t c) const { return flags(c) & kSkip; }

    std::uint8_t combining_class(char32_t c) const {
        if (!(flags(c) & kNfc)) return 0;
        const auto it = ccc_.find(c);
        return it == ccc_.end() ? 0 : it->second;
    }

    // Simple lowercase mapping of one code point (U+0130 and U+03A3 handled by lowercase()).
    char32_t lower_simple(char32_t c) const {
        if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
        if (!(flags(c) & kLower)) return c;
        const auto it = std::upper_bound(lower_.begin(), lower_.end(), c,
                                         [](char32_t v, const unicode_data::CaseRange& r) { return v < r.lo; });
        if (it == lower_.begin()) return c;
        const auto& r = *(it - 1);
        if (c > r.hi || (c - r.lo) % r.stride != 0) return c;
        return char32_t(std::int32_t(c) + r.delta);
    }

    // Full lowercase of a whole string. hf: Rust's char::to_lowercase on every code point (no
    // context). openclip: Python's str.lower (Final_Sigma: U+03A3 -> U+03C2 at the end of a word).
    void lowercase(std::u32string& s) const {
        bool special = false;
        for (char32_t& c : s) {
            if (c < 0x80) {
                if (c >= 'A' && c <= 'Z') c += 32;
            } else if (c == 0x130 || c == 0x3A3) {
                special = true;
            } else {
                c = lower_simple(c);
            }
        }
        if (!special) return;
        std::u32string out;
        out.reserve(s.size() + 4);
        for (std::size_t i = 0; i < s.size(); ++i) {
            const char32_t c = s[i];
            if (c == 0x130) {
                out.push_back(U'i');
                out.push_back(0x307);
            } else if (c == 0x3A3) {
                out.push_back(flavor_ == UnicodeFlavor::openclip && final_sigma(s, i) ? 0x3C2 : 0x3C3);
            } else {
                out.push_back(c);
            }
        }
        s.swap(out);
    }

    // NFC of s (in place). Quick check first: nothing to do unless some character is NFC-relevant.
    void nfc(std::u32string& s) const {
        bool any = false;
        for (char32_t c : s)
            if (c >= 0x300 && (flags(c) & kNfc)) {
                any = true;
                break;
            }
        if (!any) return;
        // 1. full canonical decomposition
        std::u32string d;
        d.reserve(s.size() + 8);
        for (char32_t c : s) decompose(c, d);
        // 2. canonical ordering: stable sort of each run of non-starters by combining class
        for (std::size_t i = 0; i < d.size();) {
            if (combining_class(d[i]) == 0) {
                ++i;
                continue;
            }
            std::size_t j = i;
            while (j < d.size() && combining_class(d[j]) != 0) ++j;
            std::stable_sort(d.begin() + std::ptrdiff_t(i), d.begin() + std::ptrdiff_t(j),
                             [&](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
            i = j;
        }
        // 3. canonical composition
        s.clear();
        std::ptrdiff_t starter = -1;
        for (char32_t c : d) {
            const std::uint8_t cc = combining_class(c);
            if (starter >= 0) {
                const bool adjacent = std::ptrdiff_t(s.size()) - 1 == starter;
                const bool blocked = !adjacent && combining_class(s.back()) >= cc;
                if (!blocked) {
                    if (const char32_t comp = compose(s[std::size_t(starter)], c)) {
                        s[std::size_t(starter)] = comp;
                        continue;
                    }
                }
            }
            if (cc == 0) starter = std::ptrdiff_t(s.size());
            s.push_back(c);
        }
    }

private:
    static std::uint64_t key(char32_t a, char32_t b) { return (std::uint64_t(a) << 21) | b; }

    void decompose(char32_t c, std::u32string& out) const {
        constexpr char32_t SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
        constexpr char32_t TCount = 28, NCount = 588, SCount = 11172;
        if (c >= SBase && c < SBase + SCount) {
            const char32_t si = c - SBase;
            out.push_back(LBase + si / NCount);
            out.push_back(VBase + (si % NCount) / TCount);
            if (si % TCount) out.push_back(TBase + si % TCount);
            return;
        }
        if (c >= 0x80 && (flags(c) & kNfc)) {
            const auto it = decomp_.find(c);
            if (it != decomp_.end()) {
                decompose(it->second[0], out);
                if (it->second[1]) decompose(it->second[1], out);
                return;
            }
        }
        out.push_back(c);
    }

    char32_t compose(char32_t a, char32_t b) const {
        constexpr char32_t SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
        constexpr char32_t LCount = 19, VCount = 21, TCount = 28, SCount = 11172;
        if (a >= LBase && a < LBase + LCount && b >= VBase && b < VBase + VCount)
            return SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
        if (a >= SBase && a < SBase + SCount && (a - SBase) % TCount == 0 && b > TBase && b < TBase + TCount)
            return a + (b - TBase);
        const auto it = compose_.find(key(a, b));
        return it == compose_.end() ? 0 : it->second;
    }

    // Python's handle_capital_sigma: cased (after skipping case-ignorables) before, and not
    // followed by (case-ignorables then) a cased character.
    bool final_sigma(const std::u32string& s, std::size_t i) const {
        std::size_t j = i;
        bool before = false;
        while (j > 0) {
            const std::uint8_t f = flags(s[--j]);
            if (f & kIgnorable) continue;
            before = (f & kCased) != 0;
            break;
        }
        if (!before) return false;
        for (std::size_t k = i + 1; k < s.size(); ++k) {
            const std::uint8_t f = flags(s[k]);
            if (f & kIgnorable) continue;
            return !(f & kCased);
        }
        return true;
    }

    UnicodeFlavor flavor_;
    std::vector<std::uint16_t> index_;
    std::vector<std::uint8_t> blocks_;
    std::span<const unicode_data::CaseRange> lower_;
    std::unordered_map<char32_t, std::uint8_t> ccc_;
    std::unordered_map<char32_t, std::array<char32_t, 2>> decomp_;
    std::unordered_map<std::uint64_t, char32_t> compose_;
};

inline const CharData& char_data(UnicodeFlavor f) {
    if (f == UnicodeFlavor::hf) {
        static const CharData hf(UnicodeFlavor::hf);
        return hf;
    }
    static const CharData oc(UnicodeFlavor::openclip);
    return oc;
}

}  // namespace pickscore::io::unicode
