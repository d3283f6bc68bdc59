// pickscore/cuda/storage.hpp — device memory for Tensor<T, Cuda>, and the explicit copies between
// host and device.
// pickscore-requires: pickscore::cuda_emulation (or pickscore::cuda: the CUDA runtime API, real or emulated)
//
//   Tensor<float, Cuda> x(Shape{257, 1280});         // from the current context's allocator
//   Tensor<float, Cuda> y(Shape{257, 1280}, ctx);    // ... or from ctx's
//   cuda::copy(x, host_x);                           // host -> device, async on the current stream
//   cuda::copy(host_y, y);                           // device -> host, async
//   cuda::synchronize();                             // now host_y may be read
//
// Copies are queued on the current context's stream and return without waiting (the CUDA
// runtime stages pageable host memory before returning, so the host source may be reused at
// once; the host destination of a device-to-host copy is valid only after a synchronisation).
// to_host() is the one convenience that synchronises, and says so in its name's documentation.
// A Storage<Cuda> gives its block back to the allocator it came from when it is destroyed;
// the allocator is stream-ordered (see context.hpp), so that is safe with work still queued.
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

#include "../core/device.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "context.hpp"
#include "runtime.hpp"

namespace pickscore {

template <>
class Storage<Cuda> {
public:
    Storage() = default;
    explicit Storage(std::size_t bytes) : Storage(bytes, cuda::current()) {}
    Storage(std::size_t bytes, cuda::Context& ctx) : allocator_(ctx.allocator_ptr()), bytes_(bytes) {
        ptr_ = static_cast<std::byte*>(allocator_->allocate(bytes));
    }
    Storage(Storage&& o) noexcept
        : allocator_(std::move(o.allocator_)), ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    Storage& operator=(Storage&& o) noexcept {
        if (this != &o) {
            release();
            allocator_ = std::move(o.allocator_);
            ptr_ = std::exchange(o.ptr_, nullptr);
            bytes_ = std::exchange(o.bytes_, 0);
        }
        return *this;
    }
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    ~Storage() { release(); }

    std::byte* data() const { return ptr_; }
    std::size_t bytes() const { return bytes_; }

private:
    void release() noexcept {
        if (ptr_ != nullptr) allocator_->deallocate(ptr_, bytes_);
        ptr_ = nullptr;
        bytes_ = 0;
        allocator_.reset();
    }
    std::shared_ptr<cuda::Allocator> allocator_;
    std::byte* ptr_ = nullptr;
    std::size_t bytes_ = 0;
};

namespace cuda {

namespace detail {
inline void copy_bytes(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
    if (bytes == 0) return;
    check(cudaMemcpyAsync(dst, src, bytes, kind, current().stream()), "cudaMemcpyAsync");
}
}  // namespace detail

// dst = src, host to device (asynchronous on the current stream).
template <class T>
void copy(TensorView<T, Cuda> dst, In<T, Cpu> src) {
    check_same_shape("cuda::copy (host to device)", "dst", dst.shape(), "src", src.shape());
    detail::copy_bytes(dst.data(), src.data(), src.bytes(), cudaMemcpyHostToDevice);
}

// dst = src, device to host (asynchronous: synchronize() before reading dst).
template <class T>
void copy(TensorView<T, Cpu> dst, In<T, Cuda> src) {
    check_same_shape("cuda::copy (device to host)", "dst", dst.shape(), "src", src.shape());
    detail::copy_bytes(dst.data(), src.data(), src.bytes(), cudaMemcpyDeviceToHost);
}

// dst = src, device to device (asynchronous).
template <class T>
void copy(TensorView<T, Cuda> dst, In<T, Cuda> src) {
    check_same_shape("cuda::copy (device to device)", "dst", dst.shape(), "src", src.shape());
    detail::copy_bytes(dst.data(), src.data(), src.bytes(), cudaMemcpyDeviceToDevice);
}

// A new device tensor holding a copy of src (the copy is queued on the current stream).
template <class T>
Tensor<std::remove_const_t<T>, Cuda> to_device(const TensorView<T, Cpu>& src) {
    Tensor<std::remove_const_t<T>, Cuda> out(src.shape());
    copy<std::remove_const_t<T>>(out, src);
    return out;
}

// A new host tensor holding a copy of src. Synchronises the current stream (it waits for all
// work queued before it, then for the copy) — the one call here that waits.
template <class T>
Tensor<std::remove_const_t<T>, Cpu> to_host(const TensorView<T, Cuda>& src) {
    Tensor<std::remove_const_t<T>, Cpu> out(src.shape());
    copy<std::remove_const_t<T>>(out, src);
    current().synchronize();
    return out;
}

// dst = 0 (all bits zero; asynchronous).
template <class T>
void zero(TensorView<T, Cuda> dst) {
    if (dst.numel() == 0) return;
    check(cudaMemsetAsync(dst.data(), 0, dst.bytes(), current().stream()), "cudaMemsetAsync");
}

}  // namespace cuda
}  // namespace pickscore
