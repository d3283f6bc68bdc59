// pickscore/collect/security.hpp — the small pieces of security the collection server needs:
// pickscore-requires: pickscore::collect
// random tokens, SHA-256, HMAC-SHA-256 signed session values, a constant-time comparison, input
// checks for names, e-mail addresses and prompts, and a per-key token-bucket rate limiter.
// Cryptography comes from OpenSSL's libcrypto (which cpp-httplib links anyway).
//
// Session values. A signed-in browser holds the cookie value "<user id>.<expiry>.<mac>" where
// mac = hex(HMAC-SHA-256(secret, "session.<user id>.<expiry>")) and secret is 32 random bytes kept
// in the database (so sessions survive a restart). The server trusts the user id only when the MAC
// matches and the expiry (unix seconds) lies ahead; a forged or edited id fails the check.
#pragma once

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "../core/error.hpp"

namespace pickscore::collect {

inline std::string to_hex(const unsigned char* p, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s(2 * n, '0');
    for (std::size_t i = 0; i < n; ++i) {
        s[2 * i] = digits[p[i] >> 4];
        s[2 * i + 1] = digits[p[i] & 15];
    }
    return s;
}

// n cryptographically random bytes as 2n hex digits.
inline std::string random_hex(std::size_t n) {
    std::vector<unsigned char> b(n);
    require(RAND_bytes(b.data(), int(n)) == 1, "collect: the system's random number generator failed (RAND_bytes)");
    return to_hex(b.data(), n);
}

inline std::string sha256_hex(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    require(EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) == 1, "collect: SHA-256 failed");
    return to_hex(md, len);
}

inline std::string sha256_file_hex(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary);
    require<IoError>(bool(f), "cannot open '", path.string(), "' for reading");
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    require(ctx != nullptr, "collect: EVP_MD_CTX_new failed");
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    std::vector<char> buf(1 << 16);
    while (f) {
        f.read(buf.data(), std::streamsize(buf.size()));
        if (f.gcount() > 0) EVP_DigestUpdate(ctx, buf.data(), std::size_t(f.gcount()));
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    return to_hex(md, len);
}

inline std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    const unsigned char* r = HMAC(EVP_sha256(), key.data(), int(key.size()),
                                  reinterpret_cast<const unsigned char*>(message.data()), message.size(), md, &len);
    require(r != nullptr, "collect: HMAC-SHA-256 failed");
    return to_hex(md, len);
}

// Equality that takes the same time wherever the first difference is (for secrets and MACs).
inline bool constant_time_equal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    unsigned char d = 0;
    for (std::size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ b[i]);
    return d == 0;
}

// ---- session values ---------------------------------------------------------------------------

inline std::string sign_session(std::string_view secret, std::int64_t user_id, std::int64_t expires_unix) {
    const std::string body = std::to_string(user_id) + "." + std::to_string(expires_unix);
    return body + "." + hmac_sha256_hex(secret, "session." + body);
}

namespace detail {
inline std::optional<std::int64_t> parse_decimal(std::string_view s) {
    if (s.empty() || s.size() > 18) return std::nullopt;
    std::int64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    return v;
}
}  // namespace detail

// The user id of a session value whose MAC matches and whose expiry is after now_unix.
inline std::optional<std::int64_t> verify_session(std::string_view secret, std::string_view value, std::int64_t now_unix) {
    const std::size_t a = value.find('.');
    if (a == std::string_view::npos) return std::nullopt;
    const std::size_t b = value.find('.', a + 1);
    if (b == std::string_view::npos) return std::nullopt;
    const auto id = detail::parse_decimal(value.substr(0, a));
    const auto exp = detail::parse_decimal(value.substr(a + 1, b - a - 1));
    if (!id || !exp || *id <= 0) return std::nullopt;
    const std::string want = hmac_sha256_hex(secret, "session." + std::string(value.substr(0, b)));
    if (!constant_time_equal(want, value.substr(b + 1))) return std::nullopt;
    if (*exp <= now_unix) return std::nullopt;
    return id;
}

// ---- input checks ----------------------------------------------------------------------------
// Strings arrive as JSON strings, which the parser has already checked to be valid UTF-8.

inline bool has_control_chars(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        const unsigned char u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

// A display name: 1 to 100 bytes, no control characters, not only spaces.
inline bool valid_name(std::string_view s) {
    return !s.empty() && s.size() <= 100 && !has_control_chars(s) && s.find_first_not_of(' ') != std::string_view::npos;
}

// A plausible e-mail address: local@domain, 3 to 254 bytes, no spaces, quotes, angle brackets or
// control characters, a dot-separated domain without empty labels.
inline bool valid_email(std::string_view s) {
    if (s.size() < 3 || s.size() > 254 || has_control_chars(s)) return false;
    if (s.find_first_of(" \"'<>(),;:\\[]") != std::string_view::npos) return false;
    const std::size_t at = s.find('@');
    if (at == 0 || at == std::string_view::npos || s.find('@', at + 1) != std::string_view::npos) return false;
    const std::string_view domain = s.substr(at + 1);
    if (domain.empty() || domain.front() == '.' || domain.back() == '.' || domain.find("..") != std::string_view::npos)
        return false;
    return true;
}

// A prompt typed for --generate: 1 to max_bytes bytes, no control characters, and not starting with
// '-' (the prompt becomes one argument of the generator command, which must not read it as an option).
inline bool valid_prompt(std::string_view s, std::size_t max_bytes = 500) {
    if (s.empty() || s.size() > max_bytes || has_control_chars(s)) return false;
    const std::size_t first = s.find_first_not_of(' ');
    return first != std::string_view::npos && s[first] != '-';
}

// ---- rate limiting ---------------------------------------------------------------------------

// A token bucket per key: `burst` tokens at most, refilled at `per_second`. take() spends one token
// when there is one. Thread-safe. Keys that have refilled completely are forgotten now and then, so
// the map stays as small as the set of recently active keys.
class RateLimiter {
public:
    using Clock = std::chrono::steady_clock;

    RateLimiter(double per_second, double burst) : rate_(per_second), burst_(std::max(1.0, burst)) {}

    // True (and one token spent) when `key` may act now; false when it must wait. A rate <= 0
    // means unlimited.
    bool take(const std::string& key, Clock::time_point now = Clock::now()) {
        if (rate_ <= 0) return true;
        std::lock_guard<std::mutex> lock(mu_);
        if (buckets_.size() > 100000) forget_full(now);
        auto [it, fresh] = buckets_.try_emplace(key, Bucket{burst_, now});
        Bucket& b = it->second;
        if (!fresh) {
            b.tokens = std::min(burst_, b.tokens + rate_ * std::chrono::duration<double>(now - b.last).count());
            b.last = now;
        }
        if (b.tokens < 1.0) return false;
        b.tokens -= 1.0;
        return true;
    }
    // Seconds until `key` has a token again (0 when it has one).
    double wait_seconds(const std::string& key, Clock::time_point now = Clock::now()) {
        if (rate_ <= 0) return 0;
        std::lock_guard<std::mutex> lock(mu_);
        auto it = buckets_.find(key);
        if (it == buckets_.end()) return 0;
        const double t = std::min(burst_, it->second.tokens + rate_ * std::chrono::duration<double>(now - it->second.last).count());
        return t >= 1.0 ? 0.0 : (1.0 - t) / rate_;
    }

private:
    struct Bucket {
        double tokens;
        Clock::time_point last;
    };
    void forget_full(Clock::time_point now) {
        for (auto it = buckets_.begin(); it != buckets_.end();) {
            const double t = it->second.tokens + rate_ * std::chrono::duration<double>(now - it->second.last).count();
            it = t >= burst_ ? buckets_.erase(it) : std::next(it);
        }
    }
    double rate_, burst_;
    std::mutex mu_;
    std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace pickscore::collect
