// pickscore/core/random.hpp — a small, seedable, reproducible random generator.
//
// xoshiro256** seeded through splitmix64. The state is four words, so it can be saved in a
// checkpoint and restored to continue the exact same sequence.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "dtype.hpp"
#include "tensor.hpp"

namespace pickscore {

class Rng {
public:
    using State = std::array<std::uint64_t, 4>;

    explicit Rng(std::uint64_t seed = 0x5eed) { this->seed(seed); }

    void seed(std::uint64_t seed) {
        std::uint64_t x = seed;
        for (auto& w : s_) w = splitmix64(x);
        has_spare_ = false;
    }
    std::uint64_t next_u64() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }
    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return double(next_u64() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Uniform integer in [0, n), without modulo bias.
    std::uint64_t below(std::uint64_t n) {
        if (n <= 1) return 0;
        const std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % n);
        std::uint64_t x;
        do x = next_u64();
        while (x >= limit);
        return x % n;
    }
    // Standard normal (Box-Muller, both values used).
    double normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        double u1;
        do u1 = uniform();
        while (u1 <= 0.0);
        const double u2 = uniform();
        const double r = std::sqrt(-2.0 * std::log(u1));
        spare_ = r * std::sin(2.0 * std::numbers::pi * u2);
        has_spare_ = true;
        return r * std::cos(2.0 * std::numbers::pi * u2);
    }
    double normal(double mean, double stddev) { return mean + stddev * normal(); }

    // The whole state, for checkpoints (the Box-Muller spare is dropped: call after an even count
    // of normals, or accept that the next normal is drawn fresh).
    State state() const { return s_; }
    void set_state(const State& s) {
        s_ = s;
        has_spare_ = false;
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    static std::uint64_t splitmix64(std::uint64_t& x) {
        std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    State s_{};
    double spare_ = 0.0;
    bool has_spare_ = false;
};

// Fills a CPU view with N(mean, stddev) values.
template <class T>
void fill_normal(TensorView<T, Cpu> t, Rng& rng, double mean = 0.0, double stddev = 1.0) {
    for (auto& x : t) x = cast<T>(rng.normal(mean, stddev));
}

// Fills a CPU view with U[lo, hi) values.
template <class T>
void fill_uniform(TensorView<T, Cpu> t, Rng& rng, double lo = 0.0, double hi = 1.0) {
    for (auto& x : t) x = cast<T>(rng.uniform(lo, hi));
}

}  // namespace pickscore
