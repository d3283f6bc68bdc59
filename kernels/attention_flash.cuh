// kernels/attention_flash.cuh — flash-style attention on the tensor cores (bf16 in, f32
// accumulation), forward and backward, for head dims 64, 80 and 128 (template parameter D).
//
// Layout: q/out/dout [B,Tq,H,D], k/v [B,Tk,H,D], so the rows of one (batch, head) are H·D
// elements apart; lse and D (= rowsum(dout ∘ out)) are [B,H,Tq] f32. blockIdx.x = b·H + h.
// All tiles live in shared memory with a row stride of D + 8 elements: the 16-byte rows that one
// ldmatrix reads (8 rows of one 8x8 matrix) then fall into 8 different 16-byte bank groups, for
// every D here (row pitch 144, 176 or 272 bytes), so ldmatrix is conflict-free without a swizzle.
//
// Fragment bookkeeping (kernels/ptx.cuh has the PTX layouts; g = lane/4, t = lane%4, and lane l
// passes the address of row l%8 of matrix l/8 to ldmatrix.x4):
//   A operand, 16x16 tile of a row-major [m][k] array:   matrix i = rows +8·(i&1), cols +8·(i>>1)
//   B operand, two n8 tiles of a row-major [n][k] array (K rows for Q·Kᵀ): matrix i =
//     n rows +8·(i>>1), k cols +8·(i&1); tile 2j gets {r0, r1}, tile 2j+1 {r2, r3}
//   B operand, two n8 tiles of a row-major [k][n] array (V for P·V), ldmatrix .trans: matrix i =
//     k rows +8·(i&1), n cols +8·(i>>1); tile 2j gets {r0, r1}, tile 2j+1 {r2, r3}
//   A operand from an accumulator: the m16n8 accumulators of n-tiles 2j and 2j+1, packed to bf16
//     pairs, are the m16k16 A fragment of k-step j (c0c1 → a0, c2c3 → a1, next tile → a2, a3).
//
// Forward (one block = 64 queries of one (b,h), 4 warps x 16 rows; key tiles of 64, K and V
// double-buffered with cp.async): S = Q·Kᵀ, online softmax in the log2 domain (scale·log2 e folded
// into the scores, exp2f), P rounded to bf16 for P·V, O rescaled by exp2(m_old − m_new) per tile
// and divided by the row sum at the end; lse = (m + log2 l)·ln 2. Causal blocks stop at the
// diagonal tile, and within a tile a warp skips 16-key groups right of its last row.
//
// Backward (one block = 64 keys of one (b,h), warps x 16 keys; query tiles of BQ rows with Q, dO,
// lse, D double-buffered): per query tile, Sᵀ = K·Qᵀ, Pᵀ = exp2(Sᵀ·scale·log2e − lse·log2e),
// dV += Pᵀ·dO, dPᵀ = V·dOᵀ, dSᵀ = Pᵀ∘(dPᵀ − D), dK += dSᵀ·Q; dSᵀ goes to shared memory (bf16) and
// dQ += dS·K is computed by the warps over query rows and added to an f32 buffer with atomicAdd.
// dK is scaled by `scale` at the end; dq = scale · buffer is written by a separate pass.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.cuh"
#include "ptx.cuh"


namespace pickscore::cuda::kernels::attention {

inline constexpr int kThreads = 128;  // 4 warps in every attention kernel
inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

struct FlashForwardParams {
    const __nv_bfloat16* q;
    const __nv_bfloat16* k;
    const __nv_bfloat16* v;
    __nv_bfloat16* out;
    float* lse;  // may be null
    std::int64_t Tq, Tk, H;
    float scale_log2;  // scale · log2(e)
    bool causal;
};

struct FlashBackwardParams {
    const __nv_bfloat16* q;
    const __nv_bfloat16* k;
    const __nv_bfloat16* v;
    const __nv_bfloat16* dout;
    const float* lse;    // [B,H,Tq]
    const float* delta;  // D = rowsum(dout ∘ out), [B,H,Tq]
    float* dq_acc;       // [B,Tq,H,D] f32, zeroed; receives Σ dS·K (unscaled)
    __nv_bfloat16* dk;
    __nv_bfloat16* dv;
    std::int64_t Tq, Tk, H;
    float scale;       // for dK
    float scale_log2;  // scale · log2(e), for P
    bool causal;
};

__device__ __forceinline__ int ceil_div(std::int64_t a, int b) { return int((a + b - 1) / b); }

// x[0] += a, x[1] += b in global memory (x 8-byte aligned): one vector atomic on sm_90, two on sm_80.
__device__ __forceinline__ void atomic_add_pair(float* x, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2*>(x), make_float2(a, b));
#else
    atomicAdd(x, a);
    atomicAdd(x + 1, b);
#endif
}

// Copies rows [0, ROWS) of a tile (row r at src + r·ld, D bf16 each) into shared memory with row
// stride D + 8, 16 bytes per cp.async; rows at or past `valid` are zero-filled (nothing is read).
template <int D, int ROWS>
__device__ __forceinline__ void load_tile_async(__nv_bfloat16* dst, const __nv_bfloat16* src, std::int64_t ld,
                                                int valid, int tid) {
    constexpr int kChunks = D / 8;
    for (int c = tid; c < ROWS * kChunks; c += kThreads) {
        const int r = c / kChunks, ch = c % kChunks;
        __nv_bfloat16* d = dst + r * (D + 8) + ch * 8;
        if (r < valid) {
            ptx::cp_async_16(d, src + r * ld + ch * 8);
        } else {
            ptx::cp_async_16_zfill(d, src, 0);
        }
    }
}

// The lane's row address for an ldmatrix.x4 of a 16x16 A tile at (row0, col0) of an array with
// row stride `stride` (elements).
__device__ __forceinline__ const __nv_bfloat16* a_tile_row(const __nv_bfloat16* base, int stride, int row0, int col0,
                                                           int lane) {
    const int i = lane >> 3;
    return base + (row0 + (i & 1) * 8 + (lane & 7)) * stride + col0 + (i >> 1) * 8;
}
// ... for the B operand of two n8 tiles from a row-major [n][k] array (rows n0.., cols k0..).
__device__ __forceinline__ const __nv_bfloat16* bt_tile_row(const __nv_bfloat16* base, int stride, int n0, int k0,
                                                            int lane) {
    const int i = lane >> 3;
    return base + (n0 + (i >> 1) * 8 + (lane & 7)) * stride + k0 + (i & 1) * 8;
}
// ... for the B operand of two n8 tiles from a row-major [k][n] array (rows k0.., cols n0..), .trans.
__device__ __forceinline__ const __nv_bfloat16* bn_tile_row(const __nv_bfloat16* base, int stride, int k0, int n0,
                                                            int lane) {
    const int i = lane >> 3;
    return base + (k0 + (i & 1) * 8 + (lane & 7)) * stride + n0 + (i >> 1) * 8;
}

__device__ __forceinline__ void mma(float (&acc)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
    const std::uint32_t b[2] = {b0, b1};
    ptx::mma_m16n8k16_bf16(acc, a, b, acc);
}

// acc[2j] += a · B(tile 2j), acc[2j+1] += a · B(tile 2j+1) from one ldmatrix.x4 result r.
__device__ __forceinline__ void mma_pair(float (&acc0)[4], float (&acc1)[4], const std::uint32_t (&a)[4],
                                         const std::uint32_t (&r)[4]) {
    mma(acc0, a, r[0], r[1]);
    mma(acc1, a, r[2], r[3]);
}

// The A fragment of k-step j built from the accumulators of n-tiles 2j and 2j+1.
__device__ __forceinline__ void accumulators_to_a(std::uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
    a[0] = ptx::pack_bf16x2(c0[0], c0[1]);
    a[1] = ptx::pack_bf16x2(c0[2], c0[3]);
    a[2] = ptx::pack_bf16x2(c1[0], c1[1]);
    a[3] = ptx::pack_bf16x2(c1[2], c1[3]);
}

// Writes a warp's 16 x D accumulator tile (rows row0.., this lane's fragment) to shared memory as
// bf16 after multiplying by `factor[r]` (r = 0: row g, r = 1: row g + 8).
template <int D>
__device__ __forceinline__ void stage_accumulators(__nv_bfloat16* tile, int row0, const float (&acc)[D / 8][4],
                                                   float factor0, float factor1, int lane) {
    const int g = lane >> 2, t = lane & 3;
PICKSCORE_UNROLL
    for (int nt = 0; nt < D / 8; ++nt) {
        *reinterpret_cast<std::uint32_t*>(tile + (row0 + g) * (D + 8) + nt * 8 + 2 * t) =
            ptx::pack_bf16x2(acc[nt][0] * factor0, acc[nt][1] * factor0);
        *reinterpret_cast<std::uint32_t*>(tile + (row0 + g + 8) * (D + 8) + nt * 8 + 2 * t) =
            ptx::pack_bf16x2(acc[nt][2] * factor1, acc[nt][3] * factor1);
    }
}

// Copies a warp's 16 staged rows (row0.. of the shared tile) to global rows dst + r·ld for
// r < valid, 16 bytes per store.
template <int D>
__device__ __forceinline__ void store_staged_rows(__nv_bfloat16* dst, std::int64_t ld, const __nv_bfloat16* tile,
                                                  int row0, int valid, int lane) {
    constexpr int kChunks = D / 8;
    for (int c = lane; c < 16 * kChunks; c += 32) {
        const int r = c / kChunks, ch = c % kChunks;
        if (row0 + r < valid)
            *reinterpret_cast<uint4*>(dst + (row0 + r) * ld + ch * 8) =
                *reinterpret_cast<const uint4*>(tile + (row0 + r) * (D + 8) + ch * 8);
    }
}

// ---- forward -----------------------------------------------------------------------------------------------

template <int D>
struct FlashForwardConfig {
    static constexpr int BM = 64, BN = 64, S = D + 8;
    static constexpr std::size_t shared_bytes = std::size_t(BM + 4 * BN) * S * sizeof(std::uint16_t);
};

template <int D>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(FlashForwardParams p) {
    static_assert(D % 16 == 0 && D <= 128, "flash attention: head dim a multiple of 16, at most 128");
    using Cfg = FlashForwardConfig<D>;
    constexpr int BM = Cfg::BM, BN = Cfg::BN, S = Cfg::S, KS = D / 16, NT = D / 8;
    PICKSCORE_DYNAMIC_SHARED(__nv_bfloat16, smem);
    __nv_bfloat16* const Qs = smem;             // [BM][S]
    __nv_bfloat16* const Ks = Qs + BM * S;      // [2][BN][S]
    __nv_bfloat16* const Vs = Ks + 2 * BN * S;  // [2][BN][S]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const std::int64_t bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
    // Causal: the tiles near the end of the sequence have the most work; launch them first.
    const int qtile = p.causal ? int(gridDim.y - 1 - blockIdx.y) : int(blockIdx.y);
    const std::int64_t q0 = std::int64_t(qtile) * BM;
    const int valid_q = int(min(std::int64_t(BM), p.Tq - q0));
    const std::int64_t ld = p.H * D;
    const __nv_bfloat16* const qg = p.q + ((b * p.Tq + q0) * p.H + h) * D;
    const __nv_bfloat16* const kg = p.k + (b * p.Tk * p.H + h) * D;
    const __nv_bfloat16* const vg = p.v + (b * p.Tk * p.H + h) * D;

    int n_tiles = ceil_div(p.Tk, BN);
    if (p.causal) n_tiles = min(n_tiles, int((q0 + valid_q - 1) / BN) + 1);

    load_tile_async<D, BM>(Qs, qg, ld, valid_q, tid);
    load_tile_async<D, BN>(Ks, kg, ld, int(min(std::int64_t(BN), p.Tk)), tid);
    load_tile_async<D, BN>(Vs, vg, ld, int(min(std::int64_t(BN), p.Tk)), tid);
    ptx::cp_async_commit();

    const int wrow0 = warp * 16;                        // this warp's first row in the tile
    const bool active = wrow0 < valid_q;                // warp-uniform
    const std::int64_t last_row = q0 + wrow0 + 15;      // the warp's last query (causal bound)
    std::uint32_t qf[KS][4];
    float o[NT][4];
PICKSCORE_UNROLL
    for (int nt = 0; nt < NT; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    for (int j = 0; j < n_tiles; ++j) {
        const int buf = j & 1;
        if (j + 1 < n_tiles) {
            const std::int64_t n1 = std::int64_t(j + 1) * BN;
            const int valid1 = int(min(std::int64_t(BN), p.Tk - n1));
            load_tile_async<D, BN>(Ks + (buf ^ 1) * BN * S, kg + n1 * ld, ld, valid1, tid);
            load_tile_async<D, BN>(Vs + (buf ^ 1) * BN * S, vg + n1 * ld, ld, valid1, tid);
            ptx::cp_async_commit();
            ptx::cp_async_wait<1>();
        } else {
            ptx::cp_async_wait<0>();
        }
        __syncthreads();

        const std::int64_t n0 = std::int64_t(j) * BN;
        const int valid_k = int(min(std::int64_t(BN), p.Tk - n0));
        // 16-key groups this warp needs: the valid keys, and with a causal mask those left of
        // (or on) its last row.
        int groups = (valid_k + 15) / 16;
        if (p.causal) groups = last_row < n0 ? 0 : int(min(std::int64_t(groups), (last_row - n0) / 16 + 1));
        if (active && j == 0) {
PICKSCORE_UNROLL
            for (int kk = 0; kk < KS; ++kk) ptx::ldmatrix<4>(qf[kk], a_tile_row(Qs, S, wrow0, kk * 16, lane));
        }
        if (active && groups > 0) {
            const __nv_bfloat16* const Kb = Ks + buf * BN * S;
            const __nv_bfloat16* const Vb = Vs + buf * BN * S;
            float s[8][4];
PICKSCORE_UNROLL
            for (int nt = 0; nt < 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            // S = Q Kᵀ (16 rows x 64 keys per warp)
PICKSCORE_UNROLL
            for (int kk = 0; kk < KS; ++kk) {
PICKSCORE_UNROLL
                for (int np = 0; np < 4; ++np) {
                    if (np < groups) {
                        std::uint32_t r[4];
                        ptx::ldmatrix<4>(r, bt_tile_row(Kb, S, np * 16, kk * 16, lane));
                        mma_pair(s[2 * np], s[2 * np + 1], qf[kk], r);
                    }
                }
            }
            // Scale into the log2 domain; mask keys past Tk and, causal, right of the row.
            const bool need_mask = valid_k < BN || (p.causal && n0 + BN - 1 > q0 + wrow0);
PICKSCORE_UNROLL
            for (int nt = 0; nt < 8; ++nt)
PICKSCORE_UNROLL
                for (int e = 0; e < 4; ++e) {
                    float x = s[nt][e] * p.scale_log2;
                    if (need_mask) {
                        const std::int64_t key = n0 + nt * 8 + 2 * t + (e & 1);
                        const std::int64_t row = q0 + wrow0 + g + (e >> 1) * 8;
                        if (key >= p.Tk || (p.causal && key > row)) x = -INFINITY;
                    }
                    s[nt][e] = x;
                }
            // Online softmax over the two rows this lane holds (g and g + 8); the four lanes of a
            // quad share a row, so the maximum is reduced across them.
PICKSCORE_UNROLL
            for (int r = 0; r < 2; ++r) {
                float mx = -INFINITY;
PICKSCORE_UNROLL
                for (int nt = 0; nt < 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = fmaxf(m[r], mx);
                const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a row with nothing seen yet
                const float alpha = exp2f(m[r] - m_use);
                m[r] = m_new;
                float sum = 0.0f;
PICKSCORE_UNROLL
                for (int nt = 0; nt < 8; ++nt) {
                    s[nt][2 * r] = exp2f(s[nt][2 * r] - m_use);
                    s[nt][2 * r + 1] = exp2f(s[nt][2 * r + 1] - m_use);
                    sum += s[nt][2 * r] + s[nt][2 * r + 1];
                }
                l[r] = l[r] * alpha + sum;  // this lane's partial row sum; reduced at the end
PICKSCORE_UNROLL
                for (int nt = 0; nt < NT; ++nt) {
                    o[nt][2 * r] *= alpha;
                    o[nt][2 * r + 1] *= alpha;
                }
            }
            // O += P V, P as bf16 A fragments straight from the accumulators.
PICKSCORE_UNROLL
            for (int kk = 0; kk < 4; ++kk) {
                if (kk < groups) {
                    std::uint32_t a[4];
                    accumulators_to_a(a, s[2 * kk], s[2 * kk + 1]);
PICKSCORE_UNROLL
                    for (int dp = 0; dp < NT / 2; ++dp) {
                        std::uint32_t r[4];
                        ptx::ldmatrix<4, true>(r, bn_tile_row(Vb, S, kk * 16, dp * 16, lane));
                        mma_pair(o[2 * dp], o[2 * dp + 1], a, r);
                    }
                }
            }
        }
        __syncthreads();  // every warp is done with buffer `buf` before it is refilled
    }

    if (!active) return;
    float inv[2];
PICKSCORE_UNROLL
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        inv[r] = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    }
    if (p.lse != nullptr && t == 0) {
PICKSCORE_UNROLL
        for (int r = 0; r < 2; ++r) {
            const int row = wrow0 + g + 8 * r;
            if (row < valid_q) p.lse[bh * p.Tq + q0 + row] = (m[r] + log2f(l[r])) * kLn2;
        }
    }
    // Stage O in this warp's own rows of Qs (only this warp ever read them), then 16-byte stores.
    stage_accumulators<D>(Qs, wrow0, o, inv[0], inv[1], lane);
    __syncwarp();
    store_staged_rows<D>(p.out + ((b * p.Tq + q0) * p.H + h) * D, ld, Qs, wrow0, valid_q, lane);
}

// ---- backward ----------------------------------------------------------------------------------------------

template <int D>
struct FlashBackwardConfig {
    // Query rows per step: 64, or 32 at D = 128 so that dK, dV (2·D/2 floats a lane) and the
    // Sᵀ, dPᵀ tiles (2·BQ/2 floats) stay in registers.
    static constexpr int BN = 64, BQ = D > 80 ? 32 : 64, S = D + 8, SQ = BQ + 8;
    static constexpr std::size_t shared_bytes =
        std::size_t(2 * BN + 4 * BQ) * S * sizeof(std::uint16_t)  // K, V, Q[2], dO[2]
        + std::size_t(BN) * SQ * sizeof(std::uint16_t)            // dSᵀ
        + std::size_t(4 * BQ) * sizeof(float);                    // lse·log2e[2], D[2]
};

// D[b,h,i] = Σ_d dout[b,i,h,d] · out[b,i,h,d] in f32: one warp per (b, i, h) row.
template <class T>
__global__ void attention_delta_kernel(float* delta, const T* dout, const T* out, std::int64_t rows, std::int64_t Tq,
                                       std::int64_t H, int Dh) {
    const std::int64_t row = std::int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;  // whole warps leave together
    const T* a = dout + row * Dh;
    const T* c = out + row * Dh;
    float s = 0.0f;
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        const bool vec = Dh % 8 == 0 && (reinterpret_cast<std::uintptr_t>(a) % 16) == 0 &&
                         (reinterpret_cast<std::uintptr_t>(c) % 16) == 0;
        if (vec) {
            for (int ch = lane; ch < Dh / 8; ch += 32) {
                const uint4 x = *reinterpret_cast<const uint4*>(a + ch * 8);
                const uint4 y = *reinterpret_cast<const uint4*>(c + ch * 8);
                const std::uint32_t xs[4] = {x.x, x.y, x.z, x.w}, ys[4] = {y.x, y.y, y.z, y.w};
PICKSCORE_UNROLL
                for (int i = 0; i < 4; ++i) {
                    s += __uint_as_float(xs[i] << 16) * __uint_as_float(ys[i] << 16);
                    s += __uint_as_float(xs[i] & 0xffff0000u) * __uint_as_float(ys[i] & 0xffff0000u);
                }
            }
        } else {
            for (int d = lane; d < Dh; d += 32) s += to_float(a[d]) * to_float(c[d]);
        }
    } else {
        for (int d = lane; d < Dh; d += 32) s += to_float(a[d]) * to_float(c[d]);
    }
PICKSCORE_UNROLL
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) {
        const std::int64_t h = row % H, bi = row / H, i = bi % Tq, b = bi / Tq;
        delta[(b * H + h) * Tq + i] = s;
    }
}

// dq[i] = scale · acc[i] (rounded to T).
template <class T>
__global__ void attention_dq_kernel(T* dq, const float* acc, float scale, std::int64_t n) {
    for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += std::int64_t(gridDim.x) * blockDim.x)
        dq[i] = from_float<T>(scale * acc[i]);
}

template <int D>
__global__ void __launch_bounds__(kThreads) flash_backward_kernel(FlashBackwardParams p) {
    static_assert(D % 16 == 0 && D <= 128, "flash attention: head dim a multiple of 16, at most 128");
    using Cfg = FlashBackwardConfig<D>;
    constexpr int BN = Cfg::BN, BQ = Cfg::BQ, S = Cfg::S, SQ = Cfg::SQ, KS = D / 16, NT = D / 8;
    constexpr int QT = BQ / 8, QG = BQ / 16;  // query n-tiles and 16-row groups per step
    constexpr int MT = BQ / 16, WPM = 4 / MT, NTW = NT / WPM;  // dQ phase: m-tiles, warps per m-tile, n-tiles per warp
    static_assert(NTW * WPM == NT && NTW % 2 == 0, "dQ phase: n-tiles split evenly in pairs");
    PICKSCORE_DYNAMIC_SHARED(__nv_bfloat16, smem);
    __nv_bfloat16* const Ks = smem;               // [BN][S]
    __nv_bfloat16* const Vs = Ks + BN * S;        // [BN][S]
    __nv_bfloat16* const Qs = Vs + BN * S;        // [2][BQ][S]
    __nv_bfloat16* const dOs = Qs + 2 * BQ * S;   // [2][BQ][S]
    __nv_bfloat16* const dSs = dOs + 2 * BQ * S;  // [BN][SQ]: dSᵀ, rows = keys
    float* const lse_s = reinterpret_cast<float*>(dSs + BN * SQ);  // [2][BQ], times log2(e)
    float* const delta_s = lse_s + 2 * BQ;                          // [2][BQ]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const std::int64_t bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
    const std::int64_t n0 = std::int64_t(blockIdx.y) * BN;
    const int valid_k = int(min(std::int64_t(BN), p.Tk - n0));
    const std::int64_t ld = p.H * D;
    const std::int64_t kv_off = ((b * p.Tk + n0) * p.H + h) * D;
    const std::int64_t q_base = (b * p.Tq * p.H + h) * D;  // row 0 of this (b, h) in q/dout/dq
    // Causal: queries before the block's first key see none of its keys.
    const int first = p.causal ? int(n0 / BQ) : 0;
    const int n_qtiles = ceil_div(p.Tq, BQ);

    auto load_query_tile = [&](int it, int buf) {
        const std::int64_t m0 = std::int64_t(it) * BQ;
        const int valid = int(min(std::int64_t(BQ), p.Tq - m0));
        load_tile_async<D, BQ>(Qs + buf * BQ * S, p.q + q_base + m0 * ld, ld, valid, tid);
        load_tile_async<D, BQ>(dOs + buf * BQ * S, p.dout + q_base + m0 * ld, ld, valid, tid);
        for (int i = tid; i < BQ; i += kThreads) {
            const bool in = i < valid;  // padding rows: P = exp2(-inf) = 0, D = 0
            lse_s[buf * BQ + i] = in ? p.lse[bh * p.Tq + m0 + i] * kLog2e : INFINITY;
            delta_s[buf * BQ + i] = in ? p.delta[bh * p.Tq + m0 + i] : 0.0f;
        }
    };

    load_tile_async<D, BN>(Ks, p.k + kv_off, ld, valid_k, tid);
    load_tile_async<D, BN>(Vs, p.v + kv_off, ld, valid_k, tid);
    if (first < n_qtiles) load_query_tile(first, 0);
    ptx::cp_async_commit();

    const int wkey0 = warp * 16;                       // this warp's first key in the block
    const std::int64_t wkey_first = n0 + wkey0;        // ... as a key index
    float dk[NT][4], dv[NT][4];
PICKSCORE_UNROLL
    for (int nt = 0; nt < NT; ++nt)
PICKSCORE_UNROLL
        for (int e = 0; e < 4; ++e) dk[nt][e] = dv[nt][e] = 0.0f;

    for (int it = first; it < n_qtiles; ++it) {
        const int buf = (it - first) & 1;
        if (it + 1 < n_qtiles) {
            load_query_tile(it + 1, buf ^ 1);
            ptx::cp_async_commit();
            ptx::cp_async_wait<1>();
        } else {
            ptx::cp_async_wait<0>();
        }
        __syncthreads();

        const std::int64_t m0 = std::int64_t(it) * BQ;
        const __nv_bfloat16* const Qb = Qs + buf * BQ * S;
        const __nv_bfloat16* const dOb = dOs + buf * BQ * S;
        const float* const lse_b = lse_s + buf * BQ;
        const float* const delta_b = delta_s + buf * BQ;
        // A 16-key group of the block takes part when it holds valid keys and, causal, some query
        // of this step is at or past its first key. (The same test, per group, in the dQ phase.)
        auto group_active = [&](int w) {
            return w * 16 < valid_k && (!p.causal || m0 + BQ - 1 >= n0 + w * 16);
        };
        if (group_active(warp)) {
            // Causal: 16-query groups that end before this warp's first key are fully masked.
            auto qgroup_needed = [&](int qg) { return !p.causal || m0 + qg * 16 + 15 >= wkey_first; };
            // Sᵀ = K_w Qᵀ  [16 keys x BQ queries]
            float st[QT][4];
PICKSCORE_UNROLL
            for (int nt = 0; nt < QT; ++nt) st[nt][0] = st[nt][1] = st[nt][2] = st[nt][3] = 0.0f;
PICKSCORE_UNROLL
            for (int kk = 0; kk < KS; ++kk) {
                std::uint32_t a[4];
                ptx::ldmatrix<4>(a, a_tile_row(Ks, S, wkey0, kk * 16, lane));
PICKSCORE_UNROLL
                for (int qg = 0; qg < QG; ++qg) {
                    if (qgroup_needed(qg)) {
                        std::uint32_t r[4];
                        ptx::ldmatrix<4>(r, bt_tile_row(Qb, S, qg * 16, kk * 16, lane));
                        mma_pair(st[2 * qg], st[2 * qg + 1], a, r);
                    }
                }
            }
            // Pᵀ = exp2(Sᵀ·scale·log2e − lse·log2e), masked (keys past Tk; causal key > query).
            const bool need_mask = valid_k < BN || (p.causal && m0 < n0 + BN);
PICKSCORE_UNROLL
            for (int nt = 0; nt < QT; ++nt)
PICKSCORE_UNROLL
                for (int e = 0; e < 4; ++e) {
                    const int col = nt * 8 + 2 * t + (e & 1);
                    float pv = exp2f(st[nt][e] * p.scale_log2 - lse_b[col]);
                    if (need_mask) {
                        const std::int64_t key = wkey_first + g + (e >> 1) * 8, query = m0 + col;
                        if (key >= p.Tk || (p.causal && key > query)) pv = 0.0f;
                    }
                    st[nt][e] = pv;
                }
            // dV += Pᵀ dO
PICKSCORE_UNROLL
            for (int kq = 0; kq < QG; ++kq) {
                if (qgroup_needed(kq)) {
                    std::uint32_t a[4];
                    accumulators_to_a(a, st[2 * kq], st[2 * kq + 1]);
PICKSCORE_UNROLL
                    for (int dp = 0; dp < NT / 2; ++dp) {
                        std::uint32_t r[4];
                        ptx::ldmatrix<4, true>(r, bn_tile_row(dOb, S, kq * 16, dp * 16, lane));
                        mma_pair(dv[2 * dp], dv[2 * dp + 1], a, r);
                    }
                }
            }
            // dPᵀ = V_w dOᵀ
            float dpt[QT][4];
PICKSCORE_UNROLL
            for (int nt = 0; nt < QT; ++nt) dpt[nt][0] = dpt[nt][1] = dpt[nt][2] = dpt[nt][3] = 0.0f;
PICKSCORE_UNROLL
            for (int kk = 0; kk < KS; ++kk) {
                std::uint32_t a[4];
                ptx::ldmatrix<4>(a, a_tile_row(Vs, S, wkey0, kk * 16, lane));
PICKSCORE_UNROLL
                for (int qg = 0; qg < QG; ++qg) {
                    if (qgroup_needed(qg)) {
                        std::uint32_t r[4];
                        ptx::ldmatrix<4>(r, bt_tile_row(dOb, S, qg * 16, kk * 16, lane));
                        mma_pair(dpt[2 * qg], dpt[2 * qg + 1], a, r);
                    }
                }
            }
            // dSᵀ = Pᵀ ∘ (dPᵀ − D), kept in dpt; to shared memory as bf16 for the dQ phase.
PICKSCORE_UNROLL
            for (int nt = 0; nt < QT; ++nt) {
PICKSCORE_UNROLL
                for (int e = 0; e < 4; ++e) dpt[nt][e] = st[nt][e] * (dpt[nt][e] - delta_b[nt * 8 + 2 * t + (e & 1)]);
                *reinterpret_cast<std::uint32_t*>(dSs + (wkey0 + g) * SQ + nt * 8 + 2 * t) =
                    ptx::pack_bf16x2(dpt[nt][0], dpt[nt][1]);
                *reinterpret_cast<std::uint32_t*>(dSs + (wkey0 + g + 8) * SQ + nt * 8 + 2 * t) =
                    ptx::pack_bf16x2(dpt[nt][2], dpt[nt][3]);
            }
            // dK += dSᵀ Q
PICKSCORE_UNROLL
            for (int kq = 0; kq < QG; ++kq) {
                if (qgroup_needed(kq)) {
                    std::uint32_t a[4];
                    accumulators_to_a(a, dpt[2 * kq], dpt[2 * kq + 1]);
PICKSCORE_UNROLL
                    for (int dp = 0; dp < NT / 2; ++dp) {
                        std::uint32_t r[4];
                        ptx::ldmatrix<4, true>(r, bn_tile_row(Qb, S, kq * 16, dp * 16, lane));
                        mma_pair(dk[2 * dp], dk[2 * dp + 1], a, r);
                    }
                }
            }
        }
        __syncthreads();  // dSᵀ complete

        // dQ (rows m0 + mt·16.., n-tiles part·NTW..) += dS · K over the active key groups.
        {
            const int mt = warp % MT, part = warp / MT;
            const int qrow0 = mt * 16;
            if (m0 + qrow0 < p.Tq) {
                float acc[NTW][4];
PICKSCORE_UNROLL
                for (int nt = 0; nt < NTW; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
                bool any = false;
PICKSCORE_UNROLL
                for (int kg = 0; kg < BN / 16; ++kg) {
                    // The group's dSᵀ rows were written (group_active) and some row of this m-tile
                    // sees its first key.
                    if (group_active(kg) && (!p.causal || m0 + qrow0 + 15 >= n0 + kg * 16)) {
                        any = true;
                        std::uint32_t a[4];
                        // A = dS [query][key] from dSᵀ [key][query]: .trans of the stored blocks
                        // (keys +8·(i>>1), queries +8·(i&1)).
                        ptx::ldmatrix<4, true>(a, bt_tile_row(dSs, SQ, kg * 16, qrow0, lane));
PICKSCORE_UNROLL
                        for (int np = 0; np < NTW / 2; ++np) {
                            std::uint32_t r[4];
                            ptx::ldmatrix<4, true>(r, bn_tile_row(Ks, S, kg * 16, (part * NTW + 2 * np) * 8, lane));
                            mma_pair(acc[2 * np], acc[2 * np + 1], a, r);
                        }
                    }
                }
                if (any) {
                    float* const dst = p.dq_acc + q_base + m0 * ld;
PICKSCORE_UNROLL
                    for (int r = 0; r < 2; ++r) {
                        const int row = qrow0 + g + 8 * r;
                        if (m0 + row < p.Tq) {
PICKSCORE_UNROLL
                            for (int nt = 0; nt < NTW; ++nt) {
                                atomic_add_pair(dst + row * ld + (part * NTW + nt) * 8 + 2 * t, acc[nt][2 * r],
                                                acc[nt][2 * r + 1]);
                            }
                        }
                    }
                }
            }
        }
        __syncthreads();  // dSᵀ and this step's Q/dO buffer are free again
    }
    ptx::cp_async_wait<0>();  // (no query step at all: K and V still had to land)
    __syncthreads();

    // dK (times scale) and dV through this warp's own rows of Ks / Vs, 16-byte stores.
    if (wkey0 < valid_k) {
        stage_accumulators<D>(Ks, wkey0, dk, p.scale, p.scale, lane);
        stage_accumulators<D>(Vs, wkey0, dv, 1.0f, 1.0f, lane);
        __syncwarp();
        store_staged_rows<D>(p.dk + kv_off, ld, Ks, wkey0, valid_k, lane);
        store_staged_rows<D>(p.dv + kv_off, ld, Vs, wkey0, valid_k, lane);
    }
}

}  // namespace pickscore::cuda::kernels::attention
