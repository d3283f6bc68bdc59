// kernels/attention_tiled.cuh — attention without tensor cores, f32 arithmetic throughout, for
// T = float or __nv_bfloat16 and any head dim whose tiles fit in shared memory: the f32 path of
// the CUDA backend and the fallback for bf16 head dims the tensor-core kernels do not take.
// Same layout and blockIdx.x = b·H + h as kernels/attention_flash.cuh; 4 warps a block.
//
// Forward: a block holds 16 queries (4 per warp) and walks key tiles of 32 (lane j = key j):
// each warp computes its rows' 32 scores, updates the online softmax (running max m, sum l; exp
// and log in f32, natural base) and O[row][d] = O·alpha + Σ_j p_j v_j[d] in shared memory (lanes
// over d). K and V tiles have row stride Dh + 1 so that lane j reading row j is conflict-free.
//
// Backward: a block holds 32 keys (K, V and the dK, dV accumulators in shared memory) and walks
// the queries in chunks of 32: (1) P and dS for the 32x32 pairs (lane = key, warps over queries),
// (2) dV[j][d] += Σ_i P_ij dO_i[d], dK[j][d] += Σ_i dS_ij Q_i[d] (threads over (j, d)) and
// dQ_i[d] += Σ_j dS_ij K_j[d], added to the f32 buffer with atomicAdd (threads over (i, d)).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "attention_flash.cuh"  // kThreads, ceil_div
#include "common.cuh"

namespace pickscore::cuda::kernels::attention {

template <class T>
struct TiledForwardParams {
    const T* q;
    const T* k;
    const T* v;
    T* out;
    float* lse;  // may be null
    std::int64_t Tq, Tk, H;
    int Dh;
    float scale;
    bool causal;
};

template <class T>
struct TiledBackwardParams {
    const T* q;
    const T* k;
    const T* v;
    const T* dout;
    const float* lse;
    const float* delta;
    float* dq_acc;  // [B,Tq,H,Dh] f32, zeroed; receives Σ dS·K (unscaled)
    T* dk;
    T* dv;
    std::int64_t Tq, Tk, H;
    int Dh;
    float scale;
    bool causal;
};

struct TiledForwardConfig {
    static constexpr int BM = 16, BN = 32;
    static std::size_t shared_bytes(int Dh) {
        // Q[BM][Dh], K[BN][Dh+1], V[BN][Dh+1], O[BM][Dh], P[4][BN]
        return sizeof(float) * (std::size_t(2 * BM) * Dh + std::size_t(2 * BN) * (Dh + 1) + 4 * BN);
    }
};

struct TiledBackwardConfig {
    static constexpr int BN = 32, BQ = 32;
    static std::size_t shared_bytes(int Dh) {
        // K, V, dK, dV [BN][Dh+1]; Q, dO [BQ][Dh+1]; P, dS [BQ][BN+1]; lse, D [BQ]
        return sizeof(float) * (std::size_t(4 * BN + 2 * BQ) * (Dh + 1) + std::size_t(2 * BQ) * (BN + 1) + 2 * BQ);
    }
};

__device__ __forceinline__ float warp_max(float x) {
PICKSCORE_UNROLL
    for (int off = 16; off > 0; off >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
    return x;
}
__device__ __forceinline__ float warp_sum(float x) {
PICKSCORE_UNROLL
    for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
    return x;
}

template <class T>
__global__ void __launch_bounds__(kThreads) tiled_forward_kernel(TiledForwardParams<T> p) {
    constexpr int BM = TiledForwardConfig::BM, BN = TiledForwardConfig::BN, RPW = BM / 4;  // rows per warp
    const int Dh = p.Dh, SK = Dh + 1;
    PICKSCORE_DYNAMIC_SHARED(float, smem);
    float* const Qs = smem;              // [BM][Dh]
    float* const Os = Qs + BM * Dh;      // [BM][Dh]
    float* const Ks = Os + BM * Dh;      // [BN][SK]
    float* const Vs = Ks + BN * SK;      // [BN][SK]
    float* const Ps = Vs + BN * SK;      // [4][BN]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const std::int64_t bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
    const int qtile = p.causal ? int(gridDim.y - 1 - blockIdx.y) : int(blockIdx.y);
    const std::int64_t q0 = std::int64_t(qtile) * BM;
    const int valid_q = int(min(std::int64_t(BM), p.Tq - q0));
    const std::int64_t ld = p.H * Dh;
    const T* const qg = p.q + ((b * p.Tq + q0) * p.H + h) * Dh;
    const T* const kg = p.k + (b * p.Tk * p.H + h) * Dh;
    const T* const vg = p.v + (b * p.Tk * p.H + h) * Dh;

    for (int e = tid; e < BM * Dh; e += kThreads) {
        const int r = e / Dh, d = e % Dh;
        Qs[e] = r < valid_q ? to_float(qg[r * ld + d]) : 0.0f;
        Os[e] = 0.0f;
    }
    float m[RPW], l[RPW];
PICKSCORE_UNROLL
    for (int rr = 0; rr < RPW; ++rr) m[rr] = -INFINITY, l[rr] = 0.0f;

    int n_tiles = ceil_div(p.Tk, BN);
    if (p.causal) n_tiles = min(n_tiles, int((q0 + valid_q - 1) / BN) + 1);
    for (int j = 0; j < n_tiles; ++j) {
        const std::int64_t n0 = std::int64_t(j) * BN;
        const int valid_k = int(min(std::int64_t(BN), p.Tk - n0));
        __syncthreads();  // the previous tile is no longer read
        for (int e = tid; e < BN * Dh; e += kThreads) {
            const int r = e / Dh, d = e % Dh;
            const bool in = r < valid_k;
            Ks[r * SK + d] = in ? to_float(kg[(n0 + r) * ld + d]) : 0.0f;
            Vs[r * SK + d] = in ? to_float(vg[(n0 + r) * ld + d]) : 0.0f;
        }
        __syncthreads();
PICKSCORE_UNROLL
        for (int rr = 0; rr < RPW; ++rr) {
            const int row = warp * RPW + rr;
            if (row >= valid_q) continue;  // warp-uniform
            const std::int64_t query = q0 + row, key = n0 + lane;
            float s = -INFINITY;
            if (lane < valid_k && !(p.causal && key > query)) {
                float dot = 0.0f;
                for (int d = 0; d < Dh; ++d) dot += Qs[row * Dh + d] * Ks[lane * SK + d];
                s = dot * p.scale;
            }
            const float m_new = fmaxf(m[rr], warp_max(s));
            const float m_use = m_new == -INFINITY ? 0.0f : m_new;
            const float alpha = expf(m[rr] - m_use);
            const float pj = expf(s - m_use);
            l[rr] = l[rr] * alpha + warp_sum(pj);
            m[rr] = m_new;
            Ps[warp * BN + lane] = pj;
            __syncwarp();
            for (int d = lane; d < Dh; d += 32) {
                float acc = Os[row * Dh + d] * alpha;
                for (int jj = 0; jj < valid_k; ++jj) acc += Ps[warp * BN + jj] * Vs[jj * SK + d];
                Os[row * Dh + d] = acc;
            }
            __syncwarp();  // Ps is rewritten for the next row
        }
    }
PICKSCORE_UNROLL
    for (int rr = 0; rr < RPW; ++rr) {
        const int row = warp * RPW + rr;
        if (row >= valid_q) continue;
        const float inv = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;
        for (int d = lane; d < Dh; d += 32) p.out[((b * p.Tq + q0 + row) * p.H + h) * Dh + d] = from_float<T>(Os[row * Dh + d] * inv);
        if (p.lse != nullptr && lane == 0) p.lse[bh * p.Tq + q0 + row] = m[rr] + logf(l[rr]);
    }
}

template <class T>
__global__ void __launch_bounds__(kThreads) tiled_backward_kernel(TiledBackwardParams<T> p) {
    constexpr int BN = TiledBackwardConfig::BN, BQ = TiledBackwardConfig::BQ, SP = BN + 1;
    const int Dh = p.Dh, SD = Dh + 1;
    PICKSCORE_DYNAMIC_SHARED(float, smem);
    float* const Ks = smem;               // [BN][SD]
    float* const Vs = Ks + BN * SD;       // [BN][SD]
    float* const dKs = Vs + BN * SD;      // [BN][SD]
    float* const dVs = dKs + BN * SD;     // [BN][SD]
    float* const Qs = dVs + BN * SD;      // [BQ][SD]
    float* const dOs = Qs + BQ * SD;      // [BQ][SD]
    float* const Ps = dOs + BQ * SD;      // [BQ][SP]
    float* const dSs = Ps + BQ * SP;      // [BQ][SP]
    float* const lse_s = dSs + BQ * SP;   // [BQ]
    float* const delta_s = lse_s + BQ;    // [BQ]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const std::int64_t bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
    const std::int64_t n0 = std::int64_t(blockIdx.y) * BN;
    const int valid_k = int(min(std::int64_t(BN), p.Tk - n0));
    const std::int64_t ld = p.H * Dh;
    const std::int64_t kv_off = ((b * p.Tk + n0) * p.H + h) * Dh;
    const std::int64_t q_base = (b * p.Tq * p.H + h) * Dh;

    for (int e = tid; e < BN * Dh; e += kThreads) {
        const int r = e / Dh, d = e % Dh;
        const bool in = r < valid_k;
        Ks[r * SD + d] = in ? to_float(p.k[kv_off + r * ld + d]) : 0.0f;
        Vs[r * SD + d] = in ? to_float(p.v[kv_off + r * ld + d]) : 0.0f;
        dKs[r * SD + d] = 0.0f;
        dVs[r * SD + d] = 0.0f;
    }
    // Causal: queries before the first key of the block see none of its keys.
    const std::int64_t start = p.causal ? n0 / BQ * BQ : 0;
    for (std::int64_t m0 = start; m0 < p.Tq; m0 += BQ) {
        const int valid_q = int(min(std::int64_t(BQ), p.Tq - m0));
        __syncthreads();  // the previous chunk is no longer read
        for (int e = tid; e < BQ * Dh; e += kThreads) {
            const int r = e / Dh, d = e % Dh;
            const bool in = r < valid_q;
            Qs[r * SD + d] = in ? to_float(p.q[q_base + (m0 + r) * ld + d]) : 0.0f;
            dOs[r * SD + d] = in ? to_float(p.dout[q_base + (m0 + r) * ld + d]) : 0.0f;
        }
        for (int i = tid; i < BQ; i += kThreads) {
            lse_s[i] = i < valid_q ? p.lse[bh * p.Tq + m0 + i] : INFINITY;  // padding rows: P = 0
            delta_s[i] = i < valid_q ? p.delta[bh * p.Tq + m0 + i] : 0.0f;
        }
        __syncthreads();
        // (1) P_ij and dS_ij: lane = key j, warps over queries i.
        for (int i = warp; i < BQ; i += 4) {
            const std::int64_t query = m0 + i, key = n0 + lane;
            float pij = 0.0f, dsij = 0.0f;
            if (lane < valid_k && i < valid_q && !(p.causal && key > query)) {
                float s = 0.0f, dp = 0.0f;
                for (int d = 0; d < Dh; ++d) {
                    s += Qs[i * SD + d] * Ks[lane * SD + d];
                    dp += dOs[i * SD + d] * Vs[lane * SD + d];
                }
                pij = expf(s * p.scale - lse_s[i]);
                dsij = pij * (dp - delta_s[i]);
            }
            Ps[i * SP + lane] = pij;
            dSs[i * SP + lane] = dsij;
        }
        __syncthreads();
        // (2a) dV[j][d] += Σ_i P_ij dO_i[d], dK[j][d] += Σ_i dS_ij Q_i[d]; threads over (j, d).
        for (int e = tid; e < BN * Dh; e += kThreads) {
            const int j = e % BN, d = e / BN;
            float av = 0.0f, ak = 0.0f;
            for (int i = 0; i < valid_q; ++i) {
                av += Ps[i * SP + j] * dOs[i * SD + d];
                ak += dSs[i * SP + j] * Qs[i * SD + d];
            }
            dVs[j * SD + d] += av;
            dKs[j * SD + d] += ak;
        }
        // (2b) dQ_i[d] += Σ_j dS_ij K_j[d]; threads over (i, d), consecutive d for the atomics.
        for (int e = tid; e < valid_q * Dh; e += kThreads) {
            const int i = e / Dh, d = e % Dh;
            float acc = 0.0f;
            for (int j = 0; j < valid_k; ++j) acc += dSs[i * SP + j] * Ks[j * SD + d];
            atomicAdd(p.dq_acc + q_base + (m0 + i) * ld + d, acc);
        }
    }
    __syncthreads();
    for (int e = tid; e < valid_k * Dh; e += kThreads) {
        const int r = e / Dh, d = e % Dh;
        p.dk[kv_off + r * ld + d] = from_float<T>(dKs[r * SD + d] * p.scale);
        p.dv[kv_off + r * ld + d] = from_float<T>(dVs[r * SD + d]);
    }
}

}  // namespace pickscore::cuda::kernels::attention
