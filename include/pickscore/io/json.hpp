// pickscore/io/json.hpp — a small strict JSON parser and writer (RFC 8259).
//
// Used by the tokenizer loaders (vocab.json, tokenizer.json) and the safetensors header. Strict:
// no comments, no trailing commas, no leading zeros, no NaN/Infinity, no control characters
// inside strings, valid UTF-8 only, \u escapes with properly paired UTF-16 surrogates, nothing
// but whitespace after the value, a nesting-depth limit. Duplicate object keys are an error
// unless ParseOptions::allow_duplicate_keys (then the last one wins on lookup, as in Python).
// Every error is a pickscore::FormatError that names the byte offset.
//
//   Json j = json::parse(text);                 // or parse(text, {.max_depth = 32})
//   const Json& v = j["model"]["vocab"];        // throws FormatError when missing / wrong type
//   if (const Json* p = j.find("merges")) ...
//   for (const auto& [key, value] : v.items()) ...
//   std::string s = json::dump(j);              // compact; dump(j, 2) indents
//
// Numbers keep whether they were written as integers: is_integer() is true for a number without
// fraction or exponent that fits in int64 (as_int64() is then exact); as_double() works for all.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "../core/error.hpp"

namespace pickscore::io {

class Json {
public:
    enum class Type { null, boolean, number, string, array, object };
    using Array = std::vector<Json>;
    using Member = std::pair<std::string, Json>;
    using Object = std::vector<Member>;  // in document order

    Json() = default;
    Json(std::nullptr_t) {}
    Json(bool b) : v_(b) {}
    Json(int i) : v_(Number{double(i), std::int64_t(i), true}) {}
    Json(std::int64_t i) : v_(Number{double(i), i, true}) {}
    Json(double d) : v_(Number{d, 0, false}) {}
    Json(std::string s) : v_(std::move(s)) {}
    Json(std::string_view s) : v_(std::string(s)) {}
    Json(const char* s) : v_(std::string(s)) {}
    Json(Array a) : v_(std::move(a)) {}
    Json(Object o) : v_(std::move(o)) {}

    Type type() const { return Type(v_.index()); }
    bool is_null() const { return type() == Type::null; }
    bool is_bool() const { return type() == Type::boolean; }
    bool is_number() const { return type() == Type::number; }
    bool is_integer() const { return is_number() && std::get<Number>(v_).is_int; }
    bool is_string() const { return type() == Type::string; }
    bool is_array() const { return type() == Type::array; }
    bool is_object() const { return type() == Type::object; }

    bool as_bool() const { return get<bool>("a boolean"); }
    double as_double() const { return get<Number>("a number").d; }
    std::int64_t as_int64() const {
        const Number& n = get<Number>("an integer");
        require<FormatError>(n.is_int, "json: expected an integer, got ", n.d);
        return n.i;
    }
    const std::string& as_string() const { return get<std::string>("a string"); }
    const Array& as_array() const { return get<Array>("an array"); }
    Array& as_array() { return get<Array>("an array"); }
    const Object& items() const { return get<Object>("an object"); }
    Object& items() { return get<Object>("an object"); }

    std::size_t size() const {
        if (is_array()) return as_array().size();
        if (is_object()) return items().size();
        fail<FormatError>("json: size() of ", type_name(type()));
    }
    // Object member lookup: the last member with that key (nullptr when absent or not an object).
    const Json* find(std::string_view key) const {
        if (!is_object()) return nullptr;
        const Object& o = std::get<Object>(v_);
        for (auto it = o.rbegin(); it != o.rend(); ++it)
            if (it->first == key) return &it->second;
        return nullptr;
    }
    const Json& operator[](std::string_view key) const {
        const Json* p = find(key);
        if (!p) {
            require<FormatError>(is_object(), "json: expected an object to look up \"", key, "\", got ",
                                 type_name(type()));
            fail<FormatError>("json: missing key \"", key, "\"");
        }
        return *p;
    }
    const Json& operator[](std::size_t i) const {
        const Array& a = as_array();
        require<FormatError>(i < a.size(), "json: index ", i, " out of range (size ", a.size(), ")");
        return a[i];
    }
    // Builders.
    Json& push_back(Json v) {
        if (is_null()) v_ = Array{};
        as_array().push_back(std::move(v));
        return as_array().back();
    }
    Json& set(std::string key, Json v) {
        if (is_null()) v_ = Object{};
        Object& o = items();
        for (auto& m : o)
            if (m.first == key) return m.second = std::move(v);
        o.emplace_back(std::move(key), std::move(v));
        return o.back().second;
    }

    static const char* type_name(Type t) {
        switch (t) {
            case Type::null: return "null";
            case Type::boolean: return "a boolean";
            case Type::number: return "a number";
            case Type::string: return "a string";
            case Type::array: return "an array";
            case Type::object: return "an object";
        }
        return "?";
    }

    bool operator==(const Json& o) const { return v_ == o.v_; }

private:
    struct Number {
        double d = 0;
        std::int64_t i = 0;
        bool is_int = false;
        bool operator==(const Number& o) const {
            return is_int == o.is_int && (is_int ? i == o.i : d == o.d);
        }
    };
    template <class T>
    const T& get(const char* what) const {
        if (const T* p = std::get_if<T>(&v_)) return *p;
        fail<FormatError>("json: expected ", what, ", got ", type_name(type()));
    }
    template <class T>
    T& get(const char* what) {
        if (T* p = std::get_if<T>(&v_)) return *p;
        fail<FormatError>("json: expected ", what, ", got ", type_name(type()));
    }
    friend class JsonParser;

    std::variant<std::nullptr_t, bool, Number, std::string, Array, Object> v_;
};

namespace json {

struct ParseOptions {
    int max_depth = 128;
    bool allow_duplicate_keys = false;
};

}  // namespace json

// Recursive-descent parser over a byte buffer. Public so that callers can parse a prefix
// (parse_value + offset) — the safetensors header is followed by binary data.
class JsonParser {
public:
    JsonParser(std::string_view text, json::ParseOptions opt = {}) : s_(text), opt_(opt) {}

    Json parse_document() {
        skip_ws();
        Json v = parse_value(0);
        skip_ws();
        if (pos_ != s_.size()) error("unexpected data after the JSON value");
        return v;
    }
    Json parse_value(int depth) {
        if (depth > opt_.max_depth) error("nesting deeper than ", opt_.max_depth);
        if (pos_ >= s_.size()) error("unexpected end of input, expected a value");
        const char c = s_[pos_];
        switch (c) {
            case '{': return parse_object(depth);
            case '[': return parse_array(depth);
            case '"': return Json(parse_string());
            case 't': literal("true"); return Json(true);
            case 'f': literal("false"); return Json(false);
            case 'n': literal("null"); return Json(nullptr);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
                error("unexpected character ", describe(c), ", expected a value");
        }
    }
    std::size_t offset() const { return pos_; }

    // Parses a JSON string literal at the current position (for streaming users).
    std::string parse_string() {
        expect('"');
        std::string out;
        for (;;) {
            const std::size_t run = pos_;
            while (pos_ < s_.size()) {
                const unsigned char c = static_cast<unsigned char>(s_[pos_]);
                if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
                ++pos_;
            }
            out.append(s_.data() + run, pos_ - run);
            if (pos_ >= s_.size()) error("unterminated string");
            const unsigned char c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                ++pos_;
                return out;
            }
            if (c < 0x20) error("control character ", describe(char(c)), " in a string (must be escaped)");
            if (c >= 0x80) {
                utf8_char(out);
                continue;
            }
            // backslash escape
            ++pos_;
            if (pos_ >= s_.size()) error("unterminated escape");
            const char e = s_[pos_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    const std::size_t at = pos_ - 2;
                    char32_t cp = hex4();
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (!(pos_ + 1 < s_.size() && s_[pos_] == '\\' && s_[pos_ + 1] == 'u'))
                            error_at(at, "unpaired high surrogate \\u", hex(cp));
                        pos_ += 2;
                        const char32_t lo = hex4();
                        if (lo < 0xDC00 || lo > 0xDFFF)
                            error_at(at, "high surrogate \\u", hex(cp), " not followed by a low surrogate");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        error_at(at, "unpaired low surrogate \\u", hex(cp));
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: error_at(pos_ - 1, "invalid escape \\", describe(e));
            }
        }
    }

    static void append_utf8(std::string& out, char32_t cp) {
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

private:
    template <class... Parts>
    [[noreturn]] void error(Parts&&... parts) const {
        error_at(pos_, std::forward<Parts>(parts)...);
    }
    template <class... Parts>
    [[noreturn]] void error_at(std::size_t at, Parts&&... parts) const {
        fail<FormatError>("json: ", std::forward<Parts>(parts)..., " at byte offset ", at);
    }
    static std::string describe(char c) {
        const unsigned char u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7F) return std::string("'") + c + "'";
        static const char* digits = "0123456789ABCDEF";
        return std::string("0x") + digits[u >> 4] + digits[u & 15];
    }
    static std::string hex(char32_t v) {
        std::string s(4, '0');
        static const char* digits = "0123456789abcdef";
        for (int i = 3; i >= 0; --i, v >>= 4) s[i] = digits[v & 15];
        return s;
    }

    void skip_ws() {
        while (pos_ < s_.size()) {
            const char c = s_[pos_];
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') ++pos_;
            else break;
        }
    }
    void expect(char c) {
        if (pos_ >= s_.size()) error("unexpected end of input, expected '", c, "'");
        if (s_[pos_] != c) error("expected '", c, "', got ", describe(s_[pos_]));
        ++pos_;
    }
    void literal(const char* word) {
        const std::size_t n = std::strlen(word);
        if (s_.compare(pos_, n, word) != 0) error("invalid literal, expected ", word);
        pos_ += n;
    }
    char32_t hex4() {
        if (pos_ + 4 > s_.size()) error("truncated \\u escape");
        char32_t v = 0;
        for (int i = 0; i < 4; ++i) {
            const char c = s_[pos_];
            int d;
            if (c >= '0' && c <= '9') d = c - '0';
            else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
            else error("invalid hex digit ", describe(c), " in \\u escape");
            v = v * 16 + char32_t(d);
            ++pos_;
        }
        return v;
    }
    // Validates one UTF-8 encoded character (shortest form, no surrogates, <= U+10FFFF).
    void utf8_char(std::string& out) {
        const std::size_t at = pos_;
        const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s_[i]); };
        const unsigned char c = byte(pos_);
        int n;
        char32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
        else error_at(at, "invalid UTF-8 byte ", describe(char(c)));
        if (pos_ + n >= s_.size()) error_at(at, "truncated UTF-8 sequence");
        for (int i = 1; i <= n; ++i) {
            const unsigned char b = byte(pos_ + i);
            if ((b & 0xC0) != 0x80) error_at(at, "invalid UTF-8 continuation byte ", describe(char(b)));
            cp = (cp << 6) | (b & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            error_at(at, "invalid UTF-8 sequence (overlong, surrogate or out of range)");
        out.append(s_.data() + pos_, std::size_t(n + 1));
        pos_ += std::size_t(n + 1);
    }
    Json parse_number() {
        const std::size_t start = pos_;
        bool is_int = true;
        if (s_[pos_] == '-') ++pos_;
        if (pos_ >= s_.size()) error("truncated number");
        if (s_[pos_] == '0') {
            ++pos_;
            if (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') error("leading zero in a number");
        } else if (s_[pos_] >= '1' && s_[pos_] <= '9') {
            while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
        } else {
            error("invalid number");
        }
        if (pos_ < s_.size() && s_[pos_] == '.') {
            is_int = false;
            ++pos_;
            if (!(pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9')) error("expected a digit after '.'");
            while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
        }
        if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
            is_int = false;
            ++pos_;
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
            if (!(pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9')) error("expected a digit in the exponent");
            while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
        }
        const char* b = s_.data() + start;
        const char* e = s_.data() + pos_;
        Json::Number num;
        if (is_int) {
            std::int64_t i = 0;
            const auto r = std::from_chars(b, e, i);
            if (r.ec == std::errc() && r.ptr == e) {
                num.i = i;
                num.d = double(i);
                num.is_int = true;
                Json j;
                j.v_ = num;
                return j;
            }
            // too large for int64: fall through to double
        }
        double d = 0;
        const auto r = std::from_chars(b, e, d);
        if (r.ec == std::errc::result_out_of_range) {
            // from_chars reports underflow as well: a value that rounds to zero is zero (as in
            // Python); only a magnitude too large for a double is an error.
            if (decimal_exponent(std::string_view(b, std::size_t(e - b))) >= 0)
                error_at(start, "number out of range");
            d = (s_[start] == '-') ? -0.0 : 0.0;
        } else if (r.ec != std::errc() || r.ptr != e) {
            error_at(start, "invalid number");
        }
        num.d = d;
        num.is_int = false;
        Json j;
        j.v_ = num;
        return j;
    }
    // Position of the first significant digit relative to the decimal point, plus the exponent
    // (saturating): >= 0 for magnitudes >= 1, negative for tiny ones. Zero mantissas give -1.
    static long decimal_exponent(std::string_view num) {
        std::size_t i = (num[0] == '-') ? 1 : 0;
        long lead = 0;
        bool found = false;
        long int_digits = 0;
        for (; i < num.size() && num[i] >= '0' && num[i] <= '9'; ++i) {
            if (num[i] != '0') found = true;
            if (found) ++int_digits;
        }
        if (found) {
            lead = int_digits;
        } else if (i < num.size() && num[i] == '.') {
            ++i;
            long zeros = 0;
            for (; i < num.size() && num[i] == '0'; ++i) ++zeros;
            if (i >= num.size() || num[i] < '1' || num[i] > '9') return -1;
            lead = -zeros;
        } else {
            return -1;
        }
        const auto epos = num.find_first_of("eE");
        long exp = 0;
        if (epos != std::string_view::npos) {
            std::size_t j = epos + 1;
            const bool neg = num[j] == '-';
            if (num[j] == '+' || num[j] == '-') ++j;
            for (; j < num.size(); ++j) exp = std::min<long>(exp * 10 + (num[j] - '0'), 1L << 40);
            if (neg) exp = -exp;
        }
        return lead + exp;
    }
    Json parse_array(int depth) {
        expect('[');
        Json::Array a;
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            return Json(std::move(a));
        }
        for (;;) {
            skip_ws();
            a.push_back(parse_value(depth + 1));
            skip_ws();
            if (pos_ >= s_.size()) error("unterminated array");
            if (s_[pos_] == ',') { ++pos_; continue; }
            if (s_[pos_] == ']') { ++pos_; return Json(std::move(a)); }
            error("expected ',' or ']' in an array, got ", describe(s_[pos_]));
        }
    }
    Json parse_object(int depth) {
        expect('{');
        Json::Object o;
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == '}') {
            ++pos_;
            return Json(std::move(o));
        }
        // Duplicate detection: linear for small objects, a hash set (of copies: the member
        // vector reallocates) once the object has more than `linear` members.
        constexpr std::size_t linear = 16;
        std::unordered_set<std::string> index;
        for (;;) {
            skip_ws();
            if (pos_ >= s_.size()) error("unterminated object");
            if (s_[pos_] != '"') error("expected a string key, got ", describe(s_[pos_]));
            const std::size_t key_at = pos_;
            std::string key = parse_string();
            skip_ws();
            expect(':');
            skip_ws();
            Json v = parse_value(depth + 1);
            o.emplace_back(std::move(key), std::move(v));
            if (!opt_.allow_duplicate_keys) {
                const std::string& k = o.back().first;
                if (o.size() <= linear) {
                    for (std::size_t i = 0; i + 1 < o.size(); ++i)
                        if (o[i].first == k) error_at(key_at, "duplicate key \"", k, "\"");
                } else {
                    if (index.empty())
                        for (std::size_t i = 0; i + 1 < o.size(); ++i) index.insert(o[i].first);
                    if (!index.insert(k).second) error_at(key_at, "duplicate key \"", k, "\"");
                }
            }
            skip_ws();
            if (pos_ >= s_.size()) error("unterminated object");
            if (s_[pos_] == ',') { ++pos_; continue; }
            if (s_[pos_] == '}') { ++pos_; return Json(std::move(o)); }
            error("expected ',' or '}' in an object, got ", describe(s_[pos_]));
        }
    }
    std::string_view s_;
    json::ParseOptions opt_;
    std::size_t pos_ = 0;
};

namespace json {

inline Json parse(std::string_view text, ParseOptions opt = {}) {
    return JsonParser(text, opt).parse_document();
}

namespace detail {

inline void dump_string(std::string& out, std::string_view s) {
    out += '"';
    static const char* hex = "0123456789abcdef";
    for (const char ch : s) {
        const unsigned char c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 15];
                } else {
                    out += ch;  // UTF-8 passes through
                }
        }
    }
    out += '"';
}

inline void dump_value(std::string& out, const Json& v, int indent, int level) {
    const auto newline = [&](int lvl) {
        if (indent < 0) return;
        out += '\n';
        out.append(std::size_t(indent * lvl), ' ');
    };
    switch (v.type()) {
        case Json::Type::null: out += "null"; break;
        case Json::Type::boolean: out += v.as_bool() ? "true" : "false"; break;
        case Json::Type::number: {
            char buf[32];
            if (v.is_integer()) {
                const auto r = std::to_chars(buf, buf + sizeof buf, v.as_int64());
                out.append(buf, r.ptr);
            } else {
                const double d = v.as_double();
                require<FormatError>(std::isfinite(d), "json: cannot write a non-finite number");
                const auto r = std::to_chars(buf, buf + sizeof buf, d);
                std::string_view sv(buf, std::size_t(r.ptr - buf));
                out += sv;
                // keep it a non-integer on the way back
                if (sv.find_first_of(".eE") == std::string_view::npos) out += ".0";
            }
            break;
        }
        case Json::Type::string: dump_string(out, v.as_string()); break;
        case Json::Type::array: {
            const auto& a = v.as_array();
            out += '[';
            for (std::size_t i = 0; i < a.size(); ++i) {
                if (i) out += ',';
                newline(level + 1);
                dump_value(out, a[i], indent, level + 1);
            }
            if (!a.empty()) newline(level);
            out += ']';
            break;
        }
        case Json::Type::object: {
            const auto& o = v.items();
            out += '{';
            for (std::size_t i = 0; i < o.size(); ++i) {
                if (i) out += ',';
                newline(level + 1);
                dump_string(out, o[i].first);
                out += indent < 0 ? ":" : ": ";
                dump_value(out, o[i].second, indent, level + 1);
            }
            if (!o.empty()) newline(level);
            out += '}';
            break;
        }
    }
}

}  // namespace detail

// Writes v as JSON: compact when indent < 0, else pretty-printed with `indent` spaces.
inline std::string dump(const Json& v, int indent = -1) {
    std::string out;
    detail::dump_value(out, v, indent, 0);
    return out;
}

}  // namespace json
}  // namespace pickscore::io
