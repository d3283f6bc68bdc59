// pickscore/train/overlap.hpp — the gradient all-reduce overlapped with the backward: buckets of the
// flat gradient buffer are summed over the ranks as soon as the backward has finished them.
//
//   train::OverlappedSum sum(comm, 1 << 24);             // bucket size in elements
//   sum.begin(grad.data(), grad.numel(), dtype_of<T>);
//   model.loss_and_grad(ids, pixels, labels, weights,
//                       [&](std::int64_t lo, std::int64_t hi) { sum.ready(lo, hi); });
//   sum.finish();                                        // grad now holds the sum over ranks
//
// Buckets are made on the fly from the ranges the backward reports (model/hooks.hpp), in the order
// it reports them: a range that touches the open bucket in memory (just below or just above it)
// joins it, any other range closes it; a bucket is started (Communicator::all_reduce_sum_async)
// when it reaches bucket_elements or is closed. ClipModel reports its tensors from the end of a
// tower's layout to its start, so its buckets are consecutive layers of one tower, and the sum of
// the last layers runs while the first ones are still being differentiated. Every rank reports the
// same ranges in the same order, so every rank starts the same sums in the same order.
//
// finish() starts the open bucket, then sums whatever was not reported (blocking; counted in
// Stats::late_elements — zero for ClipModel, which the tests check), then waits for all. A range
// reported twice, or one outside the buffer, is a bug in the caller: pickscore::Error.
// Summation is per element, so the result does not depend on how the buffer was cut into buckets.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "comm.hpp"

namespace pickscore::train {

class OverlappedSum {
public:
    struct Stats {
        std::int64_t buckets = 0;        // sums started during the backward (and by finish for the open one)
        std::int64_t late_elements = 0;  // elements never reported, summed by finish()
    };

    OverlappedSum(Communicator& comm, std::int64_t bucket_elements)
        : comm_(comm), limit_(std::max<std::int64_t>(1, bucket_elements)) {}

    // Starts a pass over data[0, n) (element type dtype, in the communicator's memory).
    void begin(void* data, std::int64_t n, DType dtype) {
        require(!active_, "OverlappedSum::begin: the previous pass was not finished");
        require(n >= 0, "OverlappedSum::begin: n ", n);
        data_ = static_cast<std::byte*>(data);
        n_ = n;
        dtype_ = dtype;
        esize_ = dtype_size(dtype);
        lo_ = hi_ = -1;
        seen_.clear();
        stats_ = Stats{};
        active_ = true;
    }

    // [lo, hi) holds its final local values.
    void ready(std::int64_t lo, std::int64_t hi) {
        require(active_, "OverlappedSum::ready: no pass begun");
        require(0 <= lo && lo < hi && hi <= n_, "OverlappedSum::ready: range [", lo, ", ", hi,
                ") is not inside the buffer of ", n_, " elements");
        seen_.emplace_back(lo, hi);
        if (lo_ >= 0 && hi == lo_) {
            lo_ = lo;
        } else if (lo_ >= 0 && lo == hi_) {
            hi_ = hi;
        } else {
            start_open();
            lo_ = lo;
            hi_ = hi;
        }
        if (hi_ - lo_ >= limit_) start_open();
    }

    // Starts the open bucket, sums what was never reported, waits for every sum of the pass.
    Stats finish() {
        require(active_, "OverlappedSum::finish: no pass begun");
        active_ = false;
        start_open();
        std::sort(seen_.begin(), seen_.end());
        std::int64_t at = 0;
        std::vector<std::pair<std::int64_t, std::int64_t>> gaps;
        for (const auto& [lo, hi] : seen_) {
            if (lo < at) {
                comm_.wait_async();
                fail<Error>("OverlappedSum: range [", lo, ", ", hi, ") was reported twice (it overlaps one ending at ",
                            at, ")");
            }
            if (lo > at) gaps.emplace_back(at, lo);
            at = hi;
        }
        if (at < n_) gaps.emplace_back(at, n_);
        for (const auto& [lo, hi] : gaps) {
            stats_.late_elements += hi - lo;
            comm_.all_reduce_sum_async(data_ + std::size_t(lo) * esize_, hi - lo, dtype_);
        }
        comm_.wait_async();
        return stats_;
    }

    const Stats& stats() const { return stats_; }

private:
    void start_open() {
        if (lo_ < 0) return;
        comm_.all_reduce_sum_async(data_ + std::size_t(lo_) * esize_, hi_ - lo_, dtype_);
        ++stats_.buckets;
        lo_ = hi_ = -1;
    }

    Communicator& comm_;
    std::int64_t limit_;
    std::byte* data_ = nullptr;
    std::int64_t n_ = 0;
    DType dtype_ = DType::f32;
    std::size_t esize_ = 4;
    std::int64_t lo_ = -1, hi_ = -1;  // the open bucket
    std::vector<std::pair<std::int64_t, std::int64_t>> seen_;
    Stats stats_;
    bool active_ = false;
};

}  // namespace pickscore::train
