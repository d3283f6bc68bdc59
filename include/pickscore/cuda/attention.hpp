// pickscore/cuda/attention.hpp — the CUDA backend of ops/attention.hpp: scaled dot-product
// attention, forward and backward, with the CPU backend's arguments (pickscore/cpu/attention.hpp):
// q, out, dout, dq [B,Tq,H,Dh] and k, v, dk, dv [B,Tk,H,Dh] (heads interleaved in the channel
// dimension as a Linear writes them), lse [B,H,Tq] in f32 (the natural log-sum-exp of each
// query's scaled scores), causal (then Tq == Tk), any Tq and Tk >= 1, scale given.
// pickscore-requires: pickscore::cuda_emulation (or pickscore::cuda: the CUDA runtime API, real or emulated)
//
// Implementations (kernels/attention*.cuh, kernels/cudnn_attention.cuh):
//   bf16, Dh in {64, 80, 128}, 16-byte aligned tensors — flash-style kernels on the tensor cores
//     (mma.sync m16n8k16, ldmatrix, cp.async double buffering): forward keeps an online softmax in
//     f32 and writes out and lse; backward computes D = rowsum(dout ∘ out), then per block of 64
//     keys walks the query blocks, recomputes P from q, k and lse, and accumulates dk, dv in
//     registers and dq in an f32 buffer with atomic adds (so dq's last bits vary between runs:
//     the order of the f32 additions is not fixed; dk and dv are deterministic).
//   f32, and bf16 with any other head dim or alignment — a tiled kernel without tensor cores,
//     f32 throughout (dq through the same f32 atomics).
//   AttentionBackend::cudnn (bf16 only) — cuDNN's fused flash attention through its graph API,
//     the baseline the benchmark compares against. Under the host emulation cuDNN has no
//     operations, so selecting it there throws pickscore::Error.
// Every function queues work on the current context's stream and does not synchronise; scratch
// memory (backward: the f32 dq accumulator and D) comes from the context's allocator.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <string_view>

#include "../core/dtype.hpp"
#include "../core/error.hpp"

namespace pickscore::cuda {

// Which implementation serves bf16 attention: ours (flash) or cuDNN's (the baseline).
enum class AttentionBackend { flash, cudnn };

namespace detail {
// The environment variable PICKSCORE_ATTENTION ("flash" or "cudnn"; unset or empty: flash).
inline AttentionBackend attention_backend_from_environment() {
    const char* env = std::getenv("PICKSCORE_ATTENTION");
    const std::string_view v = env ? std::string_view(env) : std::string_view();
    if (v.empty() || v == "flash") return AttentionBackend::flash;
    if (v == "cudnn") return AttentionBackend::cudnn;
    fail<Error>("PICKSCORE_ATTENTION is '", v, "'; expected 'flash' or 'cudnn'");
}
inline std::atomic<AttentionBackend>& attention_backend_setting() {
    static std::atomic<AttentionBackend> setting{attention_backend_from_environment()};
    return setting;
}
}  // namespace detail

// The process-wide choice for bf16 attention (f32 always runs our kernel). Starts from
// PICKSCORE_ATTENTION; set_attention_backend changes it for every thread.
inline AttentionBackend attention_backend() { return detail::attention_backend_setting().load(); }
inline void set_attention_backend(AttentionBackend b) { detail::attention_backend_setting().store(b); }
inline const char* to_string(AttentionBackend b) { return b == AttentionBackend::cudnn ? "cudnn" : "flash"; }

// Sets the backend for a scope and restores the previous one.
class AttentionBackendGuard {
public:
    explicit AttentionBackendGuard(AttentionBackend b) : previous_(attention_backend()) { set_attention_backend(b); }
    ~AttentionBackendGuard() { set_attention_backend(previous_); }
    AttentionBackendGuard(const AttentionBackendGuard&) = delete;
    AttentionBackendGuard& operator=(const AttentionBackendGuard&) = delete;

private:
    AttentionBackend previous_;
};

// out = softmax(scale · q kᵀ, masked) v per (batch, head); lse written unless null.
// T = float or bf16; dispatches by attention_backend(), head dim and alignment (see above).
template <class T>
void attention_forward(T* out /*B,Tq,H,Dh*/, float* lse /*B,H,Tq*/, const T* q /*B,Tq,H,Dh*/,
                       const T* k /*B,Tk,H,Dh*/, const T* v /*B,Tk,H,Dh*/, std::int64_t B, std::int64_t Tq,
                       std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal, double scale);

// dq, dk, dv written, from dout and what forward saw and saved (q, k, v, out, lse).
template <class T>
void attention_backward(T* dq /*B,Tq,H,Dh*/, T* dk /*B,Tk,H,Dh*/, T* dv /*B,Tk,H,Dh*/, const T* dout /*B,Tq,H,Dh*/,
                        const T* q /*B,Tq,H,Dh*/, const T* k /*B,Tk,H,Dh*/, const T* v /*B,Tk,H,Dh*/,
                        const T* out /*B,Tq,H,Dh*/, const float* lse /*B,H,Tq*/, std::int64_t B, std::int64_t Tq,
                        std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal, double scale);

// ---- the implementations themselves, whatever attention_backend() says (tests, benchmarks) ----

// Whether the tensor-core kernels take this call: bf16, Dh in {64, 80, 128}, every pointer
// 16-byte aligned. Otherwise attention_forward/backward use the generic tiled kernel.
bool flash_attention_supported(std::int64_t Dh, std::initializer_list<const void*> pointers);

// The generic tiled kernels (no tensor cores; f32 arithmetic), for T = float or bf16, any Dh whose
// tiles fit the device's shared memory (up to about 290 in backward on an H100).
template <class T>
void tiled_attention_forward(T* out, float* lse, const T* q, const T* k, const T* v, std::int64_t B,
                             std::int64_t Tq, std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal,
                             double scale);
template <class T>
void tiled_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                              const float* lse, std::int64_t B, std::int64_t Tq, std::int64_t Tk, std::int64_t H,
                              std::int64_t Dh, bool causal, double scale);

// The tensor-core kernels (flash_attention_supported must hold; throws otherwise).
void flash_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, std::int64_t B,
                             std::int64_t Tq, std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal,
                             double scale);
void flash_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                              const bf16* v, const bf16* out, const float* lse, std::int64_t B, std::int64_t Tq,
                              std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal, double scale);

// cuDNN's fused attention (bf16; the graph for each shape is built once and cached per cuDNN
// handle). lse uses the same convention as ours (cuDNN's softmax "stats" are the natural
// log-sum-exp). Throws pickscore::Error under the emulation, and a CudaError naming the cuDNN
// call when cuDNN declines the configuration (e.g. Dh not a multiple of 8).
bool cudnn_attention_available();
void cudnn_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, std::int64_t B,
                             std::int64_t Tq, std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal,
                             double scale);
void cudnn_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                              const bf16* v, const bf16* out, const float* lse, std::int64_t B, std::int64_t Tq,
                              std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal, double scale);

}  // namespace pickscore::cuda
