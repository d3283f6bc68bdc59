// pickscore/io/detail/text_clean.hpp — the text cleaning of the two tokenizer modes.
//
// hf_normalize: what CLIPTokenizer(Fast)'s normalizer does: NFC (Unicode 9.0 tables), every run
//   of \s (White_Space) replaced by one space, lowercase (Rust char::to_lowercase). The leading
//   and trailing space that may remain are dropped later by the pre-tokenizer.
//
// openclip_clean: open_clip 3.3.0's SimpleTokenizer clean ('lower'):
//     ftfy.fix_text(text) -> html.unescape twice -> str.strip -> " ".join(str.split()) -> str.lower
//   Of ftfy.fix_text (6.3.1, default settings) this implements, per line segment and repeated
//   until nothing changes as ftfy does: unescape_html (ftfy's own rules, switched off for good once
//   a segment contains '<'), fix_c1_controls, fix_latin_ligatures, fix_character_width,
//   uncurl_quotes, fix_line_breaks, remove_terminal_escapes, remove_control_chars, NFC.
//   NOT implemented: ftfy's mojibake repair (fix_encoding and its helpers restore_byte_a0,
//   replace_lossy_sequences, decode_inconsistent_utf8), a heuristic that re-decodes text that
//   "looks like" UTF-8 read as Latin-1/Windows-1252/MacRoman... ("cafÃ©" -> "café"). Such text is
//   tokenized as it stands. fix_surrogates has nothing to do: decoded UTF-8 holds no surrogates.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "ftfy_tables.hpp"
#include "unicode.hpp"

namespace pickscore::io::text {

using unicode::CharData;

// ---------------------------------------------------------------- Hugging Face

inline void hf_normalize(std::u32string& s) {
    const CharData& cd = unicode::char_data(unicode::UnicodeFlavor::hf);
    cd.nfc(s);
    std::size_t w = 0;
    bool in_space = false;
    for (std::size_t r = 0; r < s.size(); ++r) {
        const char32_t c = s[r];
        if (c == ' ' || (c < 0x80 ? (c >= 0x9 && c <= 0xD) : cd.is_space(c))) {
            if (!in_space) s[w++] = ' ';
            in_space = true;
        } else {
            s[w++] = c;
            in_space = false;
        }
    }
    s.resize(w);
    cd.lowercase(s);
}

// ---------------------------------------------------------------- open_clip tables

namespace detail {

struct FtfyTables {
    std::unordered_map<std::string, std::u32string> html5;        // html.entities.html5
    std::unordered_map<std::string, std::u32string> ftfy_entity;  // "&name;" -> text (ftfy)
    std::unordered_map<char32_t, std::u32string> ligature, width, c1;
    std::unordered_set<char32_t> control, invalid_codepoint;
    std::vector<unicode_data::Range> decimal;

    FtfyTables() {
        namespace fd = ftfy_data;
        for (const auto& e : fd::html5_entities()) {
            html5.emplace(e.name, unicode::decode_utf8(e.value));
            const std::string_view n(e.name);
            if (!n.empty() && n.back() == ';') ftfy_entity.emplace(amp(n), unicode::decode_utf8(e.value));
        }
        for (const auto& e : fd::ftfy_upper_entities()) ftfy_entity.emplace(amp(e.name), unicode::decode_utf8(e.value));
        for (const auto& m : fd::ligatures()) ligature.emplace(m.cp, unicode::decode_utf8(m.value));
        for (const auto& m : fd::width_map()) width.emplace(m.cp, unicode::decode_utf8(m.value));
        for (const auto& m : fd::c1_cp1252()) c1.emplace(m.cp, unicode::decode_utf8(m.value));
        for (char32_t c : fd::control_chars()) control.insert(c);
        for (char32_t c : fd::html_invalid_codepoints()) invalid_codepoint.insert(c);
        const auto d = unicode_data::oc_decimal();
        decimal.assign(d.begin(), d.end());
    }
    static std::string amp(std::string_view name) {
        std::string k(1, '&');
        k.append(name);
        return k;
    }
    bool is_decimal(char32_t c) const {
        const auto it = std::upper_bound(decimal.begin(), decimal.end(), c,
                                         [](char32_t v, const unicode_data::Range& r) { return v < r.lo; });
        return it != decimal.begin() && c <= (it - 1)->hi;
    }
};

inline const FtfyTables& ftfy_tables() {
    static const FtfyTables t;
    return t;
}

inline bool ascii_alnum(char32_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool ascii_hex(char32_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

inline std::string ascii_key(std::u32string_view s) {
    std::string k;
    k.reserve(s.size());
    for (char32_t c : s) unicode::append_utf8(k, c);
    return k;
}

}  // namespace detail

// Python's html.unescape (3.11): named references of html.entities.html5 (legacy names also
// without ';', longest prefix), decimal and hex references with the HTML5 replacement rules.
inline std::u32string html_unescape(std::u32string_view s) {
    if (s.find(U'&') == std::u32string_view::npos) return std::u32string(s);
    const auto& T = detail::ftfy_tables();
    std::u32string out;
    out.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
        if (s[i] != U'&' || i + 1 >= s.size()) {
            out.push_back(s[i++]);
            continue;
        }
        std::size_t j = i + 1;
        if (s[j] == U'#') {
            const bool hex = j + 1 < s.size() && (s[j + 1] == U'x' || s[j + 1] == U'X');
            std::size_t k = j + 1 + (hex ? 1 : 0);
            const std::size_t digits_at = k;
            std::uint64_t num = 0;
            while (k < s.size() && (hex ? detail::ascii_hex(s[k]) : (s[k] >= '0' && s[k] <= '9'))) {
                const char32_t c = s[k];
                const unsigned d = c <= '9' ? unsigned(c - '0') : (c | 0x20) - 'a' + 10;
                num = std::min<std::uint64_t>(num * (hex ? 16 : 10) + d, 0x7FFFFFFF);
                ++k;
            }
            // "&#x" followed by no hex digit: the decimal alternative fails on 'x' too.
            if (k == digits_at) {
                out.push_back(s[i++]);
                continue;
            }
            if (k < s.size() && s[k] == U';') ++k;
            if (const auto it = T.c1.find(char32_t(num)); num >= 0x80 && num <= 0x9F && it != T.c1.end()) {
                out += it->second;
            } else if (num == 0) {
                out.push_back(0xFFFD);
            } else if (num == 0x0D) {
                out.push_back(U'\r');
            } else if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
                out.push_back(0xFFFD);
            } else if (T.invalid_codepoint.count(char32_t(num))) {
                // dropped
            } else {
                out.push_back(char32_t(num));
            }
            i = k;
            continue;
        }
        // named: [^\t\n\f <&#;]{1,32};?
        std::size_t k = j;
        while (k < s.size() && k - j < 32) {
            const char32_t c = s[k];
            if (c == U'\t' || c == U'\n' || c == U'\f' || c == U' ' || c == U'<' || c == U'&' || c == U'#' || c == U';')
                break;
            ++k;
        }
        if (k == j) {
            out.push_back(s[i++]);
            continue;
        }
        if (k < s.size() && s[k] == U';') ++k;
        const std::u32string_view name = s.substr(j, k - j);
        const std::string key = detail::ascii_key(name);
        if (const auto it = T.html5.find(key); it != T.html5.end()) {
            out += it->second;
        } else {
            bool found = false;
            for (std::size_t x = name.size() - 1; x > 1; --x) {
                const auto p = T.html5.find(detail::ascii_key(name.substr(0, x)));
                if (p != T.html5.end()) {
                    out += p->second;
                    out.append(name.substr(x));
                    found = true;
                    break;
                }
            }
            if (!found) {
                out.push_back(U'&');
                out.append(name);
            }
        }
        i = k;
    }
    return out;
}

namespace detail {

// ftfy.fixes.unescape_html: "&#?[0-9A-Za-z]{1,24};" matches, decoded when ftfy knows the name
// (html5 names ending in ';' and its all-caps variants) or when it is a numeric reference that
// html.unescape decodes completely.
inline std::u32string ftfy_unescape_html(const std::u32string& s) {
    if (s.find(U'&') == std::u32string::npos) return s;
    const auto& T = ftfy_tables();
    std::u32string out;
    std::size_t i = 0;
    while (i < s.size()) {
        if (s[i] != U'&') {
            out.push_back(s[i++]);
            continue;
        }
        std::size_t j = i + 1;
        if (j < s.size() && s[j] == U'#') ++j;
        std::size_t k = j;
        while (k < s.size() && ascii_alnum(s[k])) ++k;
        if (k == j || k - j > 24 || k >= s.size() || s[k] != U';') {
            out.push_back(s[i++]);
            continue;
        }
        const std::u32string_view m(s.data() + i, k + 1 - i);
        const auto it = T.ftfy_entity.find(ascii_key(m));
        if (it != T.ftfy_entity.end()) {
            out += it->second;
        } else if (m.size() > 1 && m[1] == U'#') {
            const std::u32string u = html_unescape(m);
            if (u.find(U';') != std::u32string::npos) out.append(m);
            else out += u;
        } else {
            out.append(m);
        }
        i = k + 1;
    }
    return out;
}

// One pass of ftfy's fixers over a segment (fix_and_explain's loop body, without fix_encoding).
inline std::u32string ftfy_pass(const std::u32string& in, bool unescape) {
    const auto& T = ftfy_tables();
    std::u32string s = unescape ? ftfy_unescape_html(in) : in;
    std::u32string t;
    t.reserve(s.size());
    // fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes (in this order;
    // each maps one character to a string, and none produces input for an earlier one that the
    // later ones would treat differently, so one combined pass per fixer suffices)
    for (char32_t c : s) {
        if (c >= 0x80 && c <= 0x9F) t += T.c1.at(c);
        else t.push_back(c);
    }
    s.clear();
    for (char32_t c : t) {
        if (const auto it = T.ligature.find(c); c >= 0x100 && it != T.ligature.end()) s += it->second;
        else s.push_back(c);
    }
    t.clear();
    for (char32_t c : s) {
        if (const auto it = T.width.find(c); c >= 0x3000 && it != T.width.end()) t += it->second;
        else t.push_back(c);
    }
    s.clear();
    for (char32_t c : t) {
        if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) s.push_back(U'\'');
        else if (c >= 0x201C && c <= 0x201F) s.push_back(U'"');
        else s.push_back(c);
    }
    // fix_line_breaks: \r\n, \r, U+2028, U+2029, U+0085 -> \n
    t.clear();
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char32_t c = s[i];
        if (c == U'\r') {
            t.push_back(U'\n');
            if (i + 1 < s.size() && s[i + 1] == U'\n') ++i;
        } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
            t.push_back(U'\n');
        } else {
            t.push_back(c);
        }
    }
    // remove_terminal_escapes: \033\[(\d|;)*[a-zA-Z]
    s.clear();
    for (std::size_t i = 0; i < t.size(); ++i) {
        if (t[i] == 0x1B && i + 1 < t.size() && t[i + 1] == U'[') {
            std::size_t k = i + 2;
            while (k < t.size() && (t[k] == U';' || T.is_decimal(t[k]))) ++k;
            if (k < t.size() && ((t[k] >= 'a' && t[k] <= 'z') || (t[k] >= 'A' && t[k] <= 'Z'))) {
                i = k;
                continue;
            }
        }
        s.push_back(t[i]);
    }
    // remove_control_chars
    t.clear();
    for (char32_t c : s)
        if (!T.control.count(c)) t.push_back(c);
    // NFC (Python 3.11, Unicode 14.0)
    unicode::char_data(unicode::UnicodeFlavor::openclip).nfc(t);
    return t;
}

}  // namespace detail

// ftfy.fix_text with default settings, minus mojibake repair (see the file comment).
inline std::u32string ftfy_fix_text(const std::u32string& text) {
    std::u32string out;
    out.reserve(text.size());
    bool unescape = true;  // "auto": off for the rest of the text once a segment holds '<'
    constexpr std::size_t max_decode_length = 1000000;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t brk = text.find(U'\n', pos);
        brk = brk == std::u32string::npos ? text.size() : brk + 1;
        if (brk - pos > max_decode_length) brk = pos + max_decode_length;
        std::u32string seg = text.substr(pos, brk - pos);
        if (unescape && seg.find(U'<') != std::u32string::npos) unescape = false;
        // ftfy repeats until nothing changes; every pass that changes something shrinks the
        // segment or reaches the fixed point on the next pass, so this bound is never the limit.
        for (std::size_t guard = 0; guard < seg.size() + 8; ++guard) {
            std::u32string fixed = detail::ftfy_pass(seg, unescape);
            if (fixed == seg) break;
            seg.swap(fixed);
        }
        out += seg;
        pos = brk;
    }
    return out;
}

inline void openclip_clean(std::u32string& s) {
    const CharData& cd = unicode::char_data(unicode::UnicodeFlavor::openclip);
    std::u32string t = html_unescape(html_unescape(ftfy_fix_text(s)));
    // str.strip() then " ".join(str.split()): runs of isspace -> one space, trimmed
    s.clear();
    bool pending = false;
    for (char32_t c : t) {
        if (c < 0x80 ? (c == ' ' || (c >= 0x9 && c <= 0xD) || (c >= 0x1C && c <= 0x1F)) : cd.is_space(c)) {
            pending = !s.empty();
        } else {
            if (pending) s.push_back(U' ');
            pending = false;
            s.push_back(c);
        }
    }
    cd.lowercase(s);
}

}  // namespace pickscore::io::text
