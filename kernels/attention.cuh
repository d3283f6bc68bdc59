// kernels/attention.cuh — the host wrappers of pickscore/cuda/attention.hpp: pick the kernel
// (tensor cores for bf16 with Dh in {64, 80, 128}, the tiled f32 kernel otherwise, cuDNN when
// AttentionBackend::cudnn is selected for bf16), size the grids, and run backward's three steps
// (D = rowsum(dout ∘ out); the main kernel with dq accumulated in f32; dq = scale · accumulator).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

#include <pickscore/core/tensor.hpp>
#include <pickscore/cuda/attention.hpp>
#include <pickscore/cuda/storage.hpp>

#include "attention_flash.cuh"
#include "attention_tiled.cuh"
#include "common.cuh"
#include "cudnn_attention.cuh"

namespace pickscore::cuda {

namespace detail {

// Raises a kernel's dynamic shared memory limit to `bytes` when above the default 48 KiB (once
// per device and kernel), after checking the device's opt-in limit; `what` names the call.
template <class... Params>
void prepare_dynamic_shared(void (*kernel)(Params...), std::size_t bytes, const char* what) {
    constexpr std::size_t kDefault = 48 * 1024;
    if (bytes <= kDefault) return;
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    static std::mutex m;
    static std::map<std::pair<int, const void*>, std::size_t> raised;
    std::lock_guard<std::mutex> lk(m);
    std::size_t& done = raised[{device, reinterpret_cast<const void*>(kernel)}];
    if (done >= bytes) return;
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    require<Error>(bytes <= prop.sharedMemPerBlockOptin, what, ": needs ", bytes,
                   " bytes of shared memory per block; device ", device, " allows ", prop.sharedMemPerBlockOptin);
    set_max_dynamic_shared(kernel, bytes);
    done = bytes;
}

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

inline void check_attention_sizes(const char* op, std::int64_t B, std::int64_t Tq, std::int64_t Tk, std::int64_t H,
                                  std::int64_t Dh, int rows_per_block) {
    require<Error>(B >= 0 && Tq >= 0 && H >= 0 && Dh >= 0 && Tk >= 1, op, ": invalid sizes B=", B, " Tq=", Tq,
                   " Tk=", Tk, " H=", H, " Dh=", Dh, " (at least one key is needed)");
    require<Error>(B * H <= 2147483647, op, ": B·H = ", B * H, " exceeds the grid's 2^31 - 1 blocks");
    require<Error>((std::max(Tq, Tk) + rows_per_block - 1) / rows_per_block <= 65535, op, ": sequence length ",
                   std::max(Tq, Tk), " exceeds the grid's 65535 tiles of ", rows_per_block);
    require<Error>(Dh <= 65536, op, ": head dim ", Dh, " is too large");
}

template <int D>
void flash_forward_launch(const kernels::attention::FlashForwardParams& p, std::int64_t BH) {
    using Cfg = kernels::attention::FlashForwardConfig<D>;
    auto kernel = kernels::attention::flash_forward_kernel<D>;
    prepare_dynamic_shared(kernel, Cfg::shared_bytes, "attention_forward (tensor cores)");
    const int tiles = int((p.Tq + Cfg::BM - 1) / Cfg::BM);
    launch(kernel, dim3(unsigned(BH), unsigned(tiles)), dim3(kernels::attention::kThreads), Cfg::shared_bytes, p);
}

template <int D>
void flash_backward_launch(const kernels::attention::FlashBackwardParams& p, std::int64_t BH) {
    using Cfg = kernels::attention::FlashBackwardConfig<D>;
    auto kernel = kernels::attention::flash_backward_kernel<D>;
    prepare_dynamic_shared(kernel, Cfg::shared_bytes, "attention_backward (tensor cores)");
    const int tiles = int((p.Tk + Cfg::BN - 1) / Cfg::BN);
    launch(kernel, dim3(unsigned(BH), unsigned(tiles)), dim3(kernels::attention::kThreads), Cfg::shared_bytes, p);
}

// Backward's shared steps around the main kernel: D = rowsum(dout ∘ out) into `delta`, the f32 dq
// accumulator zeroed before, and dq = scale · accumulator after.
template <class T>
void attention_delta(float* delta, const T* dout, const T* out, std::int64_t B, std::int64_t Tq, std::int64_t H,
                     std::int64_t Dh) {
    const std::int64_t rows = B * Tq * H;
    if (rows == 0) return;
    constexpr unsigned kWarpsPerBlock = 8;
    launch(kernels::attention::attention_delta_kernel<device_t<T>>, dim3(blocks_for(rows, kWarpsPerBlock)),
           dim3(32 * kWarpsPerBlock), 0, delta, device_ptr(dout), device_ptr(out), rows, Tq, H, int(Dh));
}

template <class T>
void attention_write_dq(T* dq, const float* acc, double scale, std::int64_t n) {
    if (n == 0) return;
    const std::int64_t blocks = std::min<std::int64_t>((n + 255) / 256, 8192);
    launch(kernels::attention::attention_dq_kernel<device_t<T>>, dim3(unsigned(blocks)), dim3(256), 0, device_ptr(dq),
           acc, float(scale), n);
}

}  // namespace detail

bool flash_attention_supported(std::int64_t Dh, std::initializer_list<const void*> pointers) {
    if (Dh != 64 && Dh != 80 && Dh != 128) return false;
    for (const void* p : pointers)
        if (!detail::aligned16(p)) return false;
    return true;
}

// ---- the tiled kernels ------------------------------------------------------------------------------------

template <class T>
void tiled_attention_forward(T* out, float* lse, const T* q, const T* k, const T* v, std::int64_t B, std::int64_t Tq,
                             std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal, double scale) {
    using Cfg = kernels::attention::TiledForwardConfig;
    detail::check_attention_sizes("attention_forward", B, Tq, Tk, H, Dh, Cfg::BN);
    if (B * H == 0 || Tq == 0) return;
    kernels::attention::TiledForwardParams<device_t<T>> p{device_ptr(q), device_ptr(k), device_ptr(v), device_ptr(out),
                                                         lse, Tq, Tk, H, int(Dh), float(scale), causal};
    auto kernel = kernels::attention::tiled_forward_kernel<device_t<T>>;
    const std::size_t bytes = Cfg::shared_bytes(int(Dh));
    detail::prepare_dynamic_shared(kernel, bytes, "attention_forward (tiled kernel)");
    launch(kernel, dim3(unsigned(B * H), unsigned((Tq + Cfg::BM - 1) / Cfg::BM)), dim3(kernels::attention::kThreads),
           bytes, p);
}

template <class T>
void tiled_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                              const float* lse, std::int64_t B, std::int64_t Tq, std::int64_t Tk, std::int64_t H,
                              std::int64_t Dh, bool causal, double scale) {
    using Cfg = kernels::attention::TiledBackwardConfig;
    detail::check_attention_sizes("attention_backward", B, Tq, Tk, H, Dh, Cfg::BN);
    if (B * H == 0 || Dh == 0) return;
    Tensor<float, Cuda> delta(Shape{B * H * Tq}), acc(Shape{B * Tq * H * Dh});
    zero(acc.view());
    detail::attention_delta<T>(delta.data(), dout, out, B, Tq, H, Dh);
    kernels::attention::TiledBackwardParams<device_t<T>> p{device_ptr(q), device_ptr(k),  device_ptr(v),
                                                          device_ptr(dout), lse, delta.data(), acc.data(),
                                                          device_ptr(dk), device_ptr(dv), Tq, Tk, H, int(Dh),
                                                          float(scale), causal};
    auto kernel = kernels::attention::tiled_backward_kernel<device_t<T>>;
    const std::size_t bytes = Cfg::shared_bytes(int(Dh));
    detail::prepare_dynamic_shared(kernel, bytes, "attention_backward (tiled kernel)");
    launch(kernel, dim3(unsigned(B * H), unsigned((Tk + Cfg::BN - 1) / Cfg::BN)), dim3(kernels::attention::kThreads),
           bytes, p);
    detail::attention_write_dq<T>(dq, acc.data(), scale, B * Tq * H * Dh);
}

template void tiled_attention_forward<float>(float*, float*, const float*, const float*, const float*, std::int64_t,
                                             std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, double);
template void tiled_attention_forward<bf16>(bf16*, float*, const bf16*, const bf16*, const bf16*, std::int64_t,
                                            std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, double);
template void tiled_attention_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                              const float*, const float*, const float*, std::int64_t, std::int64_t,
                                              std::int64_t, std::int64_t, std::int64_t, bool, double);
template void tiled_attention_backward<bf16>(bf16*, bf16*, bf16*, const bf16*, const bf16*, const bf16*, const bf16*,
                                             const bf16*, const float*, std::int64_t, std::int64_t, std::int64_t,
                                             std::int64_t, std::int64_t, bool, double);

// ---- the tensor-core kernels ------------------------------------------------------------------------------

void flash_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, std::int64_t B,
                             std::int64_t Tq, std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal,
                             double scale) {
    detail::check_attention_sizes("attention_forward", B, Tq, Tk, H, Dh, 64);
    require<Error>(flash_attention_supported(Dh, {out, q, k, v}), "flash_attention_forward: head dim ", Dh,
                   " (64, 80 or 128 needed) or a tensor not 16-byte aligned");
    if (B * H == 0 || Tq == 0) return;
    const kernels::attention::FlashForwardParams p{device_ptr(q), device_ptr(k), device_ptr(v), device_ptr(out), lse,
                                                   Tq, Tk, H, float(scale * 1.4426950408889634), causal};
    switch (Dh) {
        case 64: detail::flash_forward_launch<64>(p, B * H); break;
        case 80: detail::flash_forward_launch<80>(p, B * H); break;
        default: detail::flash_forward_launch<128>(p, B * H); break;
    }
}

void flash_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                              const bf16* v, const bf16* out, const float* lse, std::int64_t B, std::int64_t Tq,
                              std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal, double scale) {
    detail::check_attention_sizes("attention_backward", B, Tq, Tk, H, Dh, 32);
    require<Error>(flash_attention_supported(Dh, {dq, dk, dv, dout, q, k, v, out}), "flash_attention_backward: head dim ",
                   Dh, " (64, 80 or 128 needed) or a tensor not 16-byte aligned");
    if (B * H == 0) return;
    Tensor<float, Cuda> delta(Shape{B * H * Tq}), acc(Shape{B * Tq * H * Dh});
    zero(acc.view());
    detail::attention_delta<bf16>(delta.data(), dout, out, B, Tq, H, Dh);
    const kernels::attention::FlashBackwardParams p{device_ptr(q), device_ptr(k), device_ptr(v), device_ptr(dout), lse,
                                                    delta.data(), acc.data(), device_ptr(dk), device_ptr(dv), Tq, Tk,
                                                    H, float(scale), float(scale * 1.4426950408889634), causal};
    switch (Dh) {
        case 64: detail::flash_backward_launch<64>(p, B * H); break;
        case 80: detail::flash_backward_launch<80>(p, B * H); break;
        default: detail::flash_backward_launch<128>(p, B * H); break;
    }
    detail::attention_write_dq<bf16>(dq, acc.data(), scale, B * Tq * H * Dh);
}

// ---- dispatch ---------------------------------------------------------------------------------------------

template <class T>
void attention_forward(T* out, float* lse, const T* q, const T* k, const T* v, std::int64_t B, std::int64_t Tq,
                       std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal, double scale) {
    if constexpr (std::is_same_v<T, bf16>) {
        if (attention_backend() == AttentionBackend::cudnn) {
            cudnn_attention_forward(out, lse, q, k, v, B, Tq, Tk, H, Dh, causal, scale);
            return;
        }
        if (flash_attention_supported(Dh, {out, q, k, v})) {
            flash_attention_forward(out, lse, q, k, v, B, Tq, Tk, H, Dh, causal, scale);
            return;
        }
    }
    tiled_attention_forward<T>(out, lse, q, k, v, B, Tq, Tk, H, Dh, causal, scale);
}

template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                        const float* lse, std::int64_t B, std::int64_t Tq, std::int64_t Tk, std::int64_t H,
                        std::int64_t Dh, bool causal, double scale) {
    if constexpr (std::is_same_v<T, bf16>) {
        if (attention_backend() == AttentionBackend::cudnn) {
            cudnn_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, B, Tq, Tk, H, Dh, causal, scale);
            return;
        }
        if (flash_attention_supported(Dh, {dq, dk, dv, dout, q, k, v, out})) {
            flash_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, B, Tq, Tk, H, Dh, causal, scale);
            return;
        }
    }
    tiled_attention_backward<T>(dq, dk, dv, dout, q, k, v, out, lse, B, Tq, Tk, H, Dh, causal, scale);
}

template void attention_forward<float>(float*, float*, const float*, const float*, const float*, std::int64_t,
                                       std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, double);
template void attention_forward<bf16>(bf16*, float*, const bf16*, const bf16*, const bf16*, std::int64_t,
                                      std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, double);
template void attention_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                        const float*, const float*, const float*, std::int64_t, std::int64_t,
                                        std::int64_t, std::int64_t, std::int64_t, bool, double);
template void attention_backward<bf16>(bf16*, bf16*, bf16*, const bf16*, const bf16*, const bf16*, const bf16*,
                                       const bf16*, const float*, std::int64_t, std::int64_t, std::int64_t,
                                       std::int64_t, std::int64_t, bool, double);

}  // namespace pickscore::cuda
