// pickscore/nn/workspace.hpp — where layers get their buffers: a planned Arena, or a planner that
// only counts.
//
// Every layer describes its buffers once, as a sequence of alloc() calls on a Workspace. Run with a
// planning Workspace (default-constructed), the sequence only adds up sizes and tracks the peak;
// run over an Arena, the same sequence hands out views. The model plans first, creates arenas of
// exactly the planned sizes, and from then on every step reuses them: nothing is allocated
// outside the plan (an Arena throws if asked for more than it holds).
//
// Scratch memory is stack-like: a Scope remembers the mark where it was opened and rewinds to it
// when it closes, so the peak of a scratch arena is the deepest nesting of scopes, and a planning
// Workspace finds that peak by walking the same scopes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "../core/arena.hpp"
#include "../core/device.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../cuda/enabled.hpp"
#include "../ops/common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/storage.hpp"
#endif

namespace pickscore::nn {

template <class D = Cpu>
class Workspace {
public:
    // A planner: alloc() returns views that point at nothing, and only the sizes are counted.
    Workspace() = default;
    // Hands out views of `arena`.
    explicit Workspace(Arena<D>& arena) : arena_(&arena) {}

    bool planning() const { return arena_ == nullptr; }

    template <class U>
    TensorView<U, D> alloc(const Shape& shape) {
        if (arena_) return arena_->template alloc<U>(shape);
        used_ += arena_round_up(std::size_t(shape.numel()) * sizeof(U));
        peak_ = std::max(peak_, used_);
        return TensorView<U, D>(nullptr, shape);
    }

    std::size_t mark() const { return arena_ ? arena_->mark() : used_; }
    void rewind(std::size_t mark) {
        if (arena_) {
            arena_->rewind(mark);
        } else {
            require(mark <= used_, "Workspace::rewind: mark ", mark, " is past the current use ", used_);
            used_ = mark;
        }
    }
    std::size_t used() const { return arena_ ? arena_->used() : used_; }
    std::size_t peak() const { return arena_ ? arena_->peak() : peak_; }

private:
    Arena<D>* arena_ = nullptr;
    std::size_t used_ = 0;
    std::size_t peak_ = 0;
};

// Rewinds a workspace to where it stood when the scope was opened.
template <class D>
class Scope {
public:
    explicit Scope(Workspace<D>& ws) : ws_(ws), mark_(ws.mark()) {}
    ~Scope() { ws_.rewind(mark_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

private:
    Workspace<D>& ws_;
    std::size_t mark_;
};

// dst (on device D) = src (host memory): how host-side inputs (token ids, pooling positions,
// initial weights) reach the device. On the CPU a plain copy.
template <class U, class D>
void copy_from_host(TensorView<U, D> dst, In<U, Cpu> src) {
    if constexpr (is_cpu<D>) {
        copy<U>(dst, src);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::copy<U>(dst, src);
#endif
    } else {
        static_assert(ops::dependent_false<D>, "copy_from_host: no backend for this device in this build");
    }
}

}  // namespace pickscore::nn
