// pickscore/core/arena.hpp — planned memory for activations and gradients.
//
// Training memory is planned, not discovered: a layer (or model) first describes every buffer it
// needs to an ArenaPlan, which adds up aligned sizes; an Arena of exactly that size is then created
// once, and the same sequence of alloc() calls hands out views into it. reset() rewinds the arena
// for the next step; nothing is freed one by one.
#pragma once

#include <cstddef>
#include <cstdint>

#include "device.hpp"
#include "error.hpp"
#include "shape.hpp"
#include "tensor.hpp"

namespace pickscore {

inline constexpr std::size_t kArenaAlign = 64;

constexpr std::size_t arena_round_up(std::size_t n) { return (n + kArenaAlign - 1) / kArenaAlign * kArenaAlign; }

// Counts the bytes a sequence of allocations will take.
class ArenaPlan {
public:
    template <class T>
    void add(const Shape& shape) {
        bytes_ += arena_round_up(std::size_t(shape.numel()) * sizeof(T));
        ++count_;
    }
    void add_bytes(std::size_t n) {
        bytes_ += arena_round_up(n);
        ++count_;
    }
    std::size_t bytes() const { return bytes_; }
    std::size_t count() const { return count_; }

private:
    std::size_t bytes_ = 0;
    std::size_t count_ = 0;
};

template <class D = Cpu>
class Arena {
public:
    Arena() = default;
    template <class... Args>
    explicit Arena(std::size_t capacity, Args&&... storage_args)
        : storage_(capacity, std::forward<Args>(storage_args)...), capacity_(capacity) {}
    explicit Arena(const ArenaPlan& plan) : Arena(plan.bytes()) {}

    // A view of `shape` elements of T, 64-byte aligned; contents are whatever was there.
    template <class T>
    TensorView<T, D> alloc(const Shape& shape) {
        const std::size_t need = arena_round_up(std::size_t(shape.numel()) * sizeof(T));
        require(used_ + need <= capacity_, "Arena: allocation of ", shape, " (", need, " bytes) exceeds the planned ",
                capacity_, " bytes (", used_, " already used): the plan and the allocations differ");
        T* p = reinterpret_cast<T*>(storage_.data() + used_);
        used_ += need;
        peak_ = used_ > peak_ ? used_ : peak_;
        return TensorView<T, D>(p, shape);
    }
    // Where the next allocation starts; rewind(mark) frees everything allocated after it.
    std::size_t mark() const { return used_; }
    void rewind(std::size_t mark) {
        require(mark <= used_, "Arena::rewind: mark ", mark, " is past the current use ", used_);
        used_ = mark;
    }
    void reset() { used_ = 0; }

    std::size_t used() const { return used_; }
    std::size_t peak() const { return peak_; }
    std::size_t capacity() const { return capacity_; }

private:
    Storage<D> storage_;
    std::size_t capacity_ = 0;
    std::size_t used_ = 0;
    std::size_t peak_ = 0;
};

}  // namespace pickscore
