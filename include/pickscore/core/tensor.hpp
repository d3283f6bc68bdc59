// pickscore/core/tensor.hpp — TensorView<T, D> (non-owning) and Tensor<T, D> (owning).
//
// Storage is contiguous and row-major. A TensorView is a pointer and a shape, like std::span:
// cheap to copy, shallow constness. A Tensor owns its storage and *is* a view of it (it derives
// from TensorView), so every op that takes views also takes tensors, and template deduction works.
// Nothing here copies data or synchronises behind the caller's back: copies are explicit calls.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "device.hpp"
#include "dtype.hpp"
#include "error.hpp"
#include "shape.hpp"

namespace pickscore {

template <class T, class D = Cpu>
class TensorView {
public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;
    using device_type = D;

    TensorView() = default;
    TensorView(T* data, Shape shape) : data_(data), shape_(shape) {}
    // A view of mutable elements converts to a view of const elements.
    template <class U>
        requires(std::is_const_v<T> && std::is_same_v<const U, T>)
    TensorView(const TensorView<U, D>& o) : data_(o.data()), shape_(o.shape()) {}

    T* data() const { return data_; }
    const Shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    std::int64_t size(int dim) const { return shape_[dim]; }
    std::int64_t numel() const { return shape_.numel(); }
    std::size_t bytes() const { return std::size_t(numel()) * sizeof(value_type); }
    static constexpr DType dtype() { return dtype_of<value_type>; }
    // A view that points at nothing: how an optional tensor argument (a bias, say) is left out.
    bool empty() const { return data_ == nullptr; }
    explicit operator bool() const { return data_ != nullptr; }

    // Rows [begin, end) of the leading dimension.
    TensorView slice(std::int64_t begin, std::int64_t end) const {
        require<ShapeError>(rank() >= 1, "TensorView::slice: rank-0 view");
        require<ShapeError>(0 <= begin && begin <= end && end <= shape_[0], "TensorView::slice: [", begin, ", ",
                            end, ") out of range for shape ", shape_);
        const std::int64_t inner = rank() == 1 ? 1 : shape_.drop_front().numel();
        return TensorView(data_ + begin * inner, shape_.with_front(end - begin));
    }
    // Element i of the leading dimension, with that dimension dropped.
    TensorView select(std::int64_t i) const {
        require<ShapeError>(rank() >= 1, "TensorView::select: rank-0 view");
        require<ShapeError>(0 <= i && i < shape_[0], "TensorView::select: index ", i, " out of range for shape ",
                            shape_);
        const Shape inner = shape_.drop_front();
        return TensorView(data_ + i * inner.numel(), inner);
    }
    // The same elements under another shape with the same number of elements.
    TensorView reshape(Shape s) const {
        require<ShapeError>(s.numel() == numel(), "TensorView::reshape: cannot view ", shape_, " as ", s);
        return TensorView(data_, s);
    }
    // All leading dimensions folded into one: [a, b, c] -> [a*b, c].
    TensorView as_matrix() const {
        require<ShapeError>(rank() >= 1, "TensorView::as_matrix: rank-0 view");
        return TensorView(data_, Shape{shape_.rows(), shape_.last()});
    }
    TensorView flat() const { return TensorView(data_, Shape{numel()}); }
    TensorView<const T, D> cview() const { return *this; }

    // Element access on the CPU (bounds-checked in every dimension).
    template <class... I>
        requires(is_cpu<D> && (std::is_integral_v<I> && ...))
    T& at(I... idx) const {
        return data_[offset({std::int64_t(idx)...})];
    }
    // Flat element access on the CPU, unchecked: for inner loops.
    T& operator[](std::int64_t i) const
        requires is_cpu<D>
    {
        return data_[i];
    }
    T* begin() const
        requires is_cpu<D>
    {
        return data_;
    }
    T* end() const
        requires is_cpu<D>
    {
        return data_ + numel();
    }

private:
    std::int64_t offset(std::initializer_list<std::int64_t> idx) const {
        require<ShapeError>(int(idx.size()) == rank(), "TensorView::at: ", idx.size(), " indices for shape ", shape_);
        std::int64_t off = 0;
        int d = 0;
        for (std::int64_t i : idx) {
            require<ShapeError>(0 <= i && i < shape_[d], "TensorView::at: index ", i, " out of range in dimension ",
                                d, " of shape ", shape_);
            off = off * shape_[d] + i;
            ++d;
        }
        return off;
    }

    T* data_ = nullptr;
    Shape shape_{0};  // an empty view holds no elements (a rank-0 shape would mean one)
};

// Non-deduced const input: `In<T, D>` lets an op deduce T and D from its outputs and accept a
// Tensor, a mutable view or a const view as the input.
template <class T, class D>
using In = std::type_identity_t<TensorView<const T, D>>;

template <class T, class D = Cpu>
class Tensor : public TensorView<T, D> {
    using View = TensorView<T, D>;

public:
    Tensor() = default;
    // Uninitialised storage of the given shape.
    explicit Tensor(Shape shape) : View(nullptr, shape), storage_(std::size_t(shape.numel()) * sizeof(T)) {
        static_cast<View&>(*this) = View(reinterpret_cast<T*>(storage_.data()), shape);
    }
    template <class... Args>
        requires(sizeof...(Args) > 0)
    explicit Tensor(Shape shape, Args&&... storage_args)
        : View(nullptr, shape), storage_(std::size_t(shape.numel()) * sizeof(T), std::forward<Args>(storage_args)...) {
        static_cast<View&>(*this) = View(reinterpret_cast<T*>(storage_.data()), shape);
    }

    Tensor(Tensor&& o) noexcept : View(o), storage_(std::move(o.storage_)) { static_cast<View&>(o) = View(); }
    Tensor& operator=(Tensor&& o) noexcept {
        if (this != &o) {
            storage_ = std::move(o.storage_);
            static_cast<View&>(*this) = static_cast<View&>(o);
            static_cast<View&>(o) = View();
        }
        return *this;
    }
    Tensor(const Tensor&) = delete;
    Tensor& operator=(const Tensor&) = delete;

    const View& view() const { return *this; }
    Storage<D>& storage() { return storage_; }

    // An owning CPU tensor filled with zeros / a value.
    static Tensor zeros(Shape shape)
        requires is_cpu<D>
    {
        Tensor t(shape);
        if (t.numel()) std::memset(static_cast<void*>(t.data()), 0, t.bytes());
        return t;
    }
    static Tensor full(Shape shape, T value)
        requires is_cpu<D>
    {
        Tensor t(shape);
        std::fill(t.begin(), t.end(), value);
        return t;
    }

private:
    Storage<D> storage_;
};

// ---- explicit copies and conversions on the CPU ----------------------------------------------

// Fails with a message naming `op` and both shapes unless they are equal.
inline void check_same_shape(const char* op, const char* a_name, const Shape& a, const char* b_name, const Shape& b) {
    require<ShapeError>(a == b, op, ": ", a_name, " has shape ", a, " but ", b_name, " has shape ", b);
}

// dst = src, element by element, converting the element type (round to nearest even).
template <class To, class From>
void convert(TensorView<To, Cpu> dst, In<From, Cpu> src) {
    check_same_shape("convert", "dst", dst.shape(), "src", src.shape());
    const std::int64_t n = src.numel();
    for (std::int64_t i = 0; i < n; ++i) dst[i] = cast<To>(src[i]);
}

// A new CPU tensor holding src converted to element type To.
template <class To, class From>
Tensor<To, Cpu> to_dtype(const TensorView<From, Cpu>& src) {
    Tensor<To, Cpu> out(src.shape());
    convert<To, std::remove_const_t<From>>(out, src);
    return out;
}

// dst = src on the CPU, same element type and shape.
template <class T>
void copy(TensorView<T, Cpu> dst, In<T, Cpu> src) {
    check_same_shape("copy", "dst", dst.shape(), "src", src.shape());
    if (src.numel()) std::memcpy(static_cast<void*>(dst.data()), src.data(), src.bytes());
}

// A new CPU tensor with the same contents.
template <class T>
Tensor<std::remove_const_t<T>, Cpu> clone(const TensorView<T, Cpu>& src) {
    Tensor<std::remove_const_t<T>, Cpu> out(src.shape());
    copy<std::remove_const_t<T>>(out, src);
    return out;
}

template <class T>
void fill(TensorView<T, Cpu> dst, T value) {
    std::fill(dst.begin(), dst.end(), value);
}

template <class T>
void zero(TensorView<T, Cpu> dst) {
    if (dst.numel()) std::memset(static_cast<void*>(dst.data()), 0, dst.bytes());
}

}  // namespace pickscore
