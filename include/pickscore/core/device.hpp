// pickscore/core/device.hpp — device tags and the storage each device owns.
//
// A device is a tag type. `Cpu` is pickscore::cpu::Device and `Cuda` is pickscore::cuda::Device,
// so the backend namespaces and the tags go together. Storage<Cpu> is complete here; the CUDA
// storage (a block from the stream-ordered caching allocator) is declared here and defined by
// pickscore/cuda/storage.hpp, so host-only programs never see a CUDA header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>

#include "error.hpp"

namespace pickscore {

namespace cpu {
struct Device {
    static constexpr std::string_view name = "cpu";
};
}  // namespace cpu

namespace cuda {
struct Device {
    static constexpr std::string_view name = "cuda";
};
}  // namespace cuda

using Cpu = cpu::Device;
using Cuda = cuda::Device;

template <class D>
inline constexpr bool is_cpu = std::is_same_v<D, Cpu>;
template <class D>
inline constexpr bool is_cuda = std::is_same_v<D, Cuda>;

template <class D>
concept DeviceTag = is_cpu<D> || is_cuda<D>;

// The bytes a tensor owns. Move-only: copying a tensor's contents is always an explicit call.
template <class D>
class Storage;

template <>
class Storage<Cpu> {
public:
    static constexpr std::size_t kAlign = 64;

    Storage() = default;
    explicit Storage(std::size_t bytes) : bytes_(bytes) {
        if (bytes_ == 0) return;
        try {
            ptr_ = static_cast<std::byte*>(::operator new(round_up(bytes_), std::align_val_t(kAlign)));
        } catch (const std::bad_alloc&) {
            fail("Storage<cpu>: cannot allocate ", bytes_, " bytes");
        }
    }
    Storage(Storage&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    Storage& operator=(Storage&& o) noexcept {
        if (this != &o) {
            release();
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
    static std::size_t round_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
    void release() {
        if (ptr_) ::operator delete(ptr_, std::align_val_t(kAlign));
        ptr_ = nullptr;
        bytes_ = 0;
    }
    std::byte* ptr_ = nullptr;
    std::size_t bytes_ = 0;
};

}  // namespace pickscore
