// pickscore/core/dtype.hpp — element types: f32, f64, bf16, f16 (and i32 for token ids).
//
// bf16 and f16 are storage types: 16 bits, converted to float for arithmetic. Conversions round to
// nearest even (as the hardware and PyTorch do); NaN stays NaN, infinities and subnormals are kept.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace pickscore {

struct bf16 {
    std::uint16_t bits = 0;

    constexpr bf16() = default;
    explicit bf16(float f) : bits(from_float(f)) {}
    explicit bf16(double d) : bf16(static_cast<float>(d)) {}
    explicit operator float() const { return std::bit_cast<float>(std::uint32_t(bits) << 16); }
    explicit operator double() const { return static_cast<float>(*this); }

    static constexpr bf16 from_bits(std::uint16_t b) {
        bf16 r;
        r.bits = b;
        return r;
    }
    static std::uint16_t from_float(float f) {
        std::uint32_t u = std::bit_cast<std::uint32_t>(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x0040u);  // quiet NaN
        u += 0x7fffu + ((u >> 16) & 1u);                                                 // round to nearest even
        return std::uint16_t(u >> 16);
    }
    friend bool operator==(bf16 a, bf16 b) { return float(a) == float(b); }
};

struct f16 {
    std::uint16_t bits = 0;

    constexpr f16() = default;
    explicit f16(float f) : bits(from_float(f)) {}
    explicit f16(double d) : f16(static_cast<float>(d)) {}
    explicit operator float() const { return to_float(bits); }
    explicit operator double() const { return static_cast<float>(*this); }

    static constexpr f16 from_bits(std::uint16_t b) {
        f16 r;
        r.bits = b;
        return r;
    }
    static float to_float(std::uint16_t h) {
        const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
        const std::uint32_t exp = (h >> 10) & 0x1fu;
        std::uint32_t mant = h & 0x3ffu;
        std::uint32_t out;
        if (exp == 0x1f) {
            out = sign | 0x7f800000u | (mant << 13);  // inf / nan
        } else if (exp != 0) {
            out = sign | ((exp + 112u) << 23) | (mant << 13);
        } else if (mant == 0) {
            out = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do {
                ++e;
                mant <<= 1;
            } while ((mant & 0x400u) == 0);
            out = sign | (std::uint32_t(112 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
        return std::bit_cast<float>(out);
    }
    static std::uint16_t from_float(float f) {
        const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
        const std::uint16_t sign = std::uint16_t((u >> 16) & 0x8000u);
        const std::uint32_t a = u & 0x7fffffffu;
        if (a > 0x7f800000u) return std::uint16_t(sign | 0x7e00u);  // NaN
        if (a >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
        if (a >= 0x38800000u) {                                      // normal half
            std::uint32_t r = a - 0x38000000u;                       // rebias exponent 127 -> 15
            r += 0xfffu + ((r >> 13) & 1u);
            return std::uint16_t(sign | (r >> 13));
        }
        if (a < 0x33000000u) return sign;  // below half the smallest subnormal: zero
        // subnormal half: value = mant * 2^-24
        const std::uint32_t e = a >> 23;
        const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
        const std::uint32_t shift = 126u - e;  // 14..24
        const std::uint32_t half_ulp = 1u << (shift - 1);
        std::uint32_t r = m >> shift;
        const std::uint32_t rem = m & ((1u << shift) - 1u);
        if (rem > half_ulp || (rem == half_ulp && (r & 1u))) ++r;
        return std::uint16_t(sign | r);
    }
    friend bool operator==(f16 a, f16 b) { return float(a) == float(b); }
};

enum class DType : std::uint8_t { f32, f64, bf16, f16, i32 };

template <class T> struct dtype_traits;
template <> struct dtype_traits<float>  { static constexpr DType value = DType::f32;  using acc = float; };
template <> struct dtype_traits<double> { static constexpr DType value = DType::f64;  using acc = double; };
template <> struct dtype_traits<bf16>   { static constexpr DType value = DType::bf16; using acc = float; };
template <> struct dtype_traits<f16>    { static constexpr DType value = DType::f16;  using acc = float; };
// Token ids and other indices.
template <> struct dtype_traits<std::int32_t> { static constexpr DType value = DType::i32; using acc = std::int64_t; };

template <class T>
inline constexpr DType dtype_of = dtype_traits<std::remove_cv_t<T>>::value;

// The type arithmetic on T is done in: double for double, float for everything else.
template <class T>
using acc_t = typename dtype_traits<std::remove_cv_t<T>>::acc;

template <class T>
concept Element = requires { dtype_traits<std::remove_cv_t<T>>::value; };

constexpr std::string_view dtype_name(DType t) {
    switch (t) {
        case DType::f32: return "f32";
        case DType::f64: return "f64";
        case DType::bf16: return "bf16";
        case DType::f16: return "f16";
        case DType::i32: return "i32";
    }
    return "?";
}

constexpr std::size_t dtype_size(DType t) {
    switch (t) {
        case DType::f32: return 4;
        case DType::f64: return 8;
        case DType::bf16: return 2;
        case DType::f16: return 2;
        case DType::i32: return 4;
    }
    return 0;
}

// Converts between element types through float (double where either side is double).
template <class To, class From>
inline To cast(From x) {
    if constexpr (std::is_same_v<To, From>) {
        return x;
    } else if constexpr (std::is_same_v<To, double> || std::is_same_v<From, double>) {
        return To(static_cast<double>(x));
    } else {
        return To(static_cast<float>(x));
    }
}

}  // namespace pickscore
