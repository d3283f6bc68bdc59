// pickscore/core/shape.hpp — a small fixed-capacity shape (row-major, contiguous tensors).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <sstream>
#include <string>

#include "error.hpp"

namespace pickscore {

class Shape {
public:
    static constexpr int kMaxRank = 6;

    constexpr Shape() = default;
    Shape(std::initializer_list<std::int64_t> dims) {
        require<ShapeError>(dims.size() <= std::size_t(kMaxRank), "Shape: rank ", dims.size(),
                            " exceeds the maximum of ", kMaxRank);
        for (std::int64_t d : dims) push_back(d);
    }
    template <class It>
    static Shape from_range(It first, It last) {
        Shape s;
        for (; first != last; ++first) s.push_back(std::int64_t(*first));
        return s;
    }

    int rank() const { return rank_; }
    std::int64_t operator[](int i) const {
        if (i < 0) i += rank_;
        if (i < 0 || i >= rank_) fail<ShapeError>("Shape ", *this, ": dimension ", i, " out of range");
        return d_[std::size_t(i)];
    }
    std::int64_t numel() const {
        std::int64_t n = 1;
        for (int i = 0; i < rank_; ++i) n *= d_[std::size_t(i)];
        return n;
    }
    // Product of all dimensions but the last: the "rows" of a tensor seen as a matrix.
    std::int64_t rows() const {
        std::int64_t n = 1;
        for (int i = 0; i + 1 < rank_; ++i) n *= d_[std::size_t(i)];
        return n;
    }
    std::int64_t last() const { return rank_ == 0 ? 1 : d_[std::size_t(rank_ - 1)]; }

    void push_back(std::int64_t d) {
        require<ShapeError>(rank_ < kMaxRank, "Shape: rank exceeds the maximum of ", kMaxRank);
        require<ShapeError>(d >= 0, "Shape: negative dimension ", d);
        d_[std::size_t(rank_++)] = d;
    }
    // The shape without its first dimension.
    Shape drop_front() const {
        require<ShapeError>(rank_ > 0, "Shape: drop_front of a rank-0 shape");
        Shape s;
        for (int i = 1; i < rank_; ++i) s.push_back(d_[std::size_t(i)]);
        return s;
    }
    // The same shape with the first dimension replaced.
    Shape with_front(std::int64_t n) const {
        require<ShapeError>(rank_ > 0, "Shape: with_front of a rank-0 shape");
        Shape s = *this;
        s.d_[0] = n;
        return s;
    }
    // A copy with `n` prepended.
    Shape prepend(std::int64_t n) const {
        Shape s;
        s.push_back(n);
        for (int i = 0; i < rank_; ++i) s.push_back(d_[std::size_t(i)]);
        return s;
    }

    const std::int64_t* begin() const { return d_.data(); }
    const std::int64_t* end() const { return d_.data() + rank_; }

    friend bool operator==(const Shape& a, const Shape& b) {
        if (a.rank_ != b.rank_) return false;
        for (int i = 0; i < a.rank_; ++i)
            if (a.d_[std::size_t(i)] != b.d_[std::size_t(i)]) return false;
        return true;
    }

    std::string str() const {
        std::ostringstream os;
        os << '[';
        for (int i = 0; i < rank_; ++i) os << (i ? ", " : "") << d_[std::size_t(i)];
        os << ']';
        return os.str();
    }
    friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

private:
    std::array<std::int64_t, kMaxRank> d_{};
    int rank_ = 0;
};

}  // namespace pickscore
