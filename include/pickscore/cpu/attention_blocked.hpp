// pickscore/cpu/attention_blocked.hpp — scaled dot-product attention in f32 as blocks of matrix
// products: the CPU's fast path (ops::attention_forward/backward use it for float; the loops of
// cpu/attention.hpp stay the reference, for the other element types and as the oracle in tests).
//
// Same contract and layout as cpu/attention.hpp: q, out [B, Tq, H, Dh], k, v [B, Tk, H, Dh], lse
// [B, H, Tq]. The rows of one head are H·Dh floats apart in these tensors, so each head's Q, K, V
// and O are matrices with leading dimension H·Dh, and cpu::sgemm reads and writes them in place
// (no gathering of heads). For each (batch, head) and each tile of up to `rows` query rows
// [i0, i1), with nk keys (Tk, or min(i1, Tk) when causal: keys past the tile's last query are
// masked for every row of it):
//   forward   S = scale·Q Kᵀ            [rows, nk]  sgemm into a per-thread buffer
//             P = exp(S − m_i) per row (masked entries 0), l_i = Σ_j P_ij, lse_i = m_i + log l_i
//             O = P V, then O_i /= l_i  [rows, Dh]  sgemm straight into out
//   backward  P = exp(scale·Q Kᵀ − lse_i)                    (recomputed, masked entries 0)
//             dV (+)= Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP − D_i),  D_i = dO_i · O_i
//             dQ = scale·dS K,  dK (+)= scale·dSᵀ Q
// The backward visits a head's tiles from the last to the first: the last tile sees every key,
// so its products write dK and dV (beta = 0) and the earlier tiles add to them.
//
// Threads: the tasks — (batch, head, tile) in forward, (batch, head) in backward, whose tiles share
// dK and dV — are spread over the pool with parallel_for; the sgemm calls inside a task then run
// on the task's thread (a parallel_for inside a task is serial). With a single task sgemm threads
// itself. Memory: one score tile per thread (two in backward), at most `kAttentionTileFloats`
// floats each: a whole 257 x 257 head of ViT-H/14 is one tile; long sequences are tiled over
// query rows. Arithmetic is f32 like the reference (acc_t<float>), rounded differently (sgemm's
// blocked sums, exp from cpu/vector_math.hpp), so results agree to f32 rounding, not bit for bit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>

#include "../core/threads.hpp"
#include "../ops/common.hpp"
#include "sgemm.hpp"
#include "vector_math.hpp"

namespace pickscore::cpu {

// The most floats of one score tile by default: 512 KiB (a 257 x 257 head is 264 KiB). The
// functions below take it as their last argument (tests make it small to force many tiles).
inline constexpr std::int64_t kAttentionTileFloats = std::int64_t(1) << 17;

namespace attention_blocked_detail {

using i64 = std::int64_t;
using ops::Trans;

// A 64-byte aligned buffer per thread that only grows.
class TileBuffer {
public:
    TileBuffer() = default;
    TileBuffer(const TileBuffer&) = delete;
    TileBuffer& operator=(const TileBuffer&) = delete;
    ~TileBuffer() { std::free(data_); }
    float* get(i64 floats) {
        const std::size_t bytes = std::size_t((std::max<i64>(floats, 16) + 15) / 16 * 16) * sizeof(float);
        if (bytes > bytes_) {
            std::free(data_);
            data_ = nullptr;
            bytes_ = 0;
            data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
            if (!data_) throw std::bad_alloc();
            bytes_ = bytes;
        }
        return data_;
    }

private:
    float* data_ = nullptr;
    std::size_t bytes_ = 0;
};

inline float* scores_buffer(i64 floats) {
    thread_local TileBuffer buffer;
    return buffer.get(floats);
}
inline float* grad_buffer(i64 floats) {
    thread_local TileBuffer buffer;
    return buffer.get(floats);
}
inline float* row_buffer(i64 floats) {
    thread_local TileBuffer buffer;
    return buffer.get(floats);
}

// How one call is cut: score rows are `ld` floats apart (Tk rounded up to 16), tiles of at most
// `rows` query rows, balanced (257 rows with room for 200 become 129 + 128).
struct Tiling {
    i64 ld, rows, tiles;
    Tiling(i64 Tq, i64 Tk, i64 budget) {
        ld = (Tk + 15) / 16 * 16;
        const i64 most = std::max<i64>(1, std::min<i64>(std::max<i64>(Tq, 1), budget / ld));
        tiles = (Tq + most - 1) / most;
        rows = tiles == 0 ? 0 : (Tq + tiles - 1) / tiles;
    }
};

}  // namespace attention_blocked_detail

// out = softmax(scale · q kᵀ (masked)) v per (batch, head); lse written when not null.
inline void attention_forward_blocked(float* out, float* lse, const float* q, const float* k, const float* v,
                                      std::int64_t B, std::int64_t Tq, std::int64_t Tk, std::int64_t H, std::int64_t Dh,
                                      bool causal, double scale, std::int64_t tile_floats = kAttentionTileFloats) {
    using namespace attention_blocked_detail;
    const i64 HD = H * Dh;
    const Tiling tiling(Tq, Tk, tile_floats);
    const i64 ld = tiling.ld;
    const float sc = float(scale);
    parallel_for(B * H * tiling.tiles, [&](std::int64_t task) {
        const i64 tile = task % tiling.tiles, bh = task / tiling.tiles;
        const i64 b = bh / H, h = bh % H;
        const i64 i0 = tile * tiling.rows, i1 = std::min(Tq, i0 + tiling.rows), m = i1 - i0;
        const i64 nk = causal ? std::min(i1, Tk) : Tk;
        const float* Q = q + (b * Tq + i0) * HD + h * Dh;
        const float* K = k + b * Tk * HD + h * Dh;
        const float* V = v + b * Tk * HD + h * Dh;
        float* O = out + (b * Tq + i0) * HD + h * Dh;
        float* S = scores_buffer(m * ld);
        float* inv_l = row_buffer(m);
        sgemm(Trans::N, Trans::T, m, nk, Dh, sc, Q, HD, K, HD, 0.0f, S, ld);
        for (i64 r = 0; r < m; ++r) {
            float* s = S + r * ld;
            const i64 n = causal ? std::min(i0 + r + 1, Tk) : Tk;  // keys this query sees
            const float mx = max_of(s, n);
            const float l = exp_shifted_sum(s, n, mx);
            std::fill(s + n, s + nk, 0.0f);
            inv_l[r] = 1.0f / l;
            if (lse) lse[bh * Tq + i0 + r] = mx + std::log(l);
        }
        sgemm(Trans::N, Trans::N, m, Dh, nk, 1.0f, S, ld, V, HD, 0.0f, O, HD);
        for (i64 r = 0; r < m; ++r) {
            float* o = O + r * HD;
            const float f = inv_l[r];
            for (i64 d = 0; d < Dh; ++d) o[d] *= f;
        }
    });
}

// dq, dk, dv written (the formulas are at the top of the file and of cpu/attention.hpp).
inline void attention_backward_blocked(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                       const float* k, const float* v, const float* out, const float* lse,
                                       std::int64_t B, std::int64_t Tq, std::int64_t Tk, std::int64_t H,
                                       std::int64_t Dh, bool causal, double scale,
                                       std::int64_t tile_floats = kAttentionTileFloats) {
    using namespace attention_blocked_detail;
    const i64 HD = H * Dh;
    // Two tiles per task (P and dP): each gets half the budget.
    const Tiling tiling(Tq, Tk, tile_floats / 2);
    const i64 ld = tiling.ld;
    const float sc = float(scale);
    parallel_for(B * H, [&](std::int64_t bh) {
        const i64 b = bh / H, h = bh % H;
        const float* K = k + b * Tk * HD + h * Dh;
        const float* V = v + b * Tk * HD + h * Dh;
        float* dK = dk + b * Tk * HD + h * Dh;
        float* dV = dv + b * Tk * HD + h * Dh;
        // Keys that no query sees (causal with Tq < Tk, or no queries) get zero gradients.
        const i64 seen = Tq == 0 ? 0 : causal ? std::min(Tq, Tk) : Tk;
        for (i64 j = seen; j < Tk; ++j) {
            std::fill(dK + j * HD, dK + j * HD + Dh, 0.0f);
            std::fill(dV + j * HD, dV + j * HD + Dh, 0.0f);
        }
        float* P = scores_buffer(tiling.rows * ld);
        float* dS = grad_buffer(tiling.rows * ld);
        float* D = row_buffer(tiling.rows);
        for (i64 tile = tiling.tiles - 1; tile >= 0; --tile) {
            const i64 i0 = tile * tiling.rows, i1 = std::min(Tq, i0 + tiling.rows), m = i1 - i0;
            const i64 nk = causal ? std::min(i1, Tk) : Tk;
            const float beta = tile == tiling.tiles - 1 ? 0.0f : 1.0f;
            const float* Q = q + (b * Tq + i0) * HD + h * Dh;
            const float* dO = dout + (b * Tq + i0) * HD + h * Dh;
            const float* O = out + (b * Tq + i0) * HD + h * Dh;
            float* dQ = dq + (b * Tq + i0) * HD + h * Dh;
            const float* L = lse + bh * Tq + i0;
            sgemm(Trans::N, Trans::T, m, nk, Dh, sc, Q, HD, K, HD, 0.0f, P, ld);
            for (i64 r = 0; r < m; ++r) {
                float* p = P + r * ld;
                const i64 n = causal ? std::min(i0 + r + 1, Tk) : Tk;
                exp_shifted_sum(p, n, L[r]);
                std::fill(p + n, p + nk, 0.0f);
                float d = 0;
                for (i64 e = 0; e < Dh; ++e) d += dO[r * HD + e] * O[r * HD + e];
                D[r] = d;
            }
            sgemm(Trans::T, Trans::N, nk, Dh, m, 1.0f, P, ld, dO, HD, beta, dV, HD);
            sgemm(Trans::N, Trans::T, m, nk, Dh, 1.0f, dO, HD, V, HD, 0.0f, dS, ld);
            for (i64 r = 0; r < m; ++r) {
                const float* p = P + r * ld;
                float* ds = dS + r * ld;
                const float d = D[r];
                for (i64 j = 0; j < nk; ++j) ds[j] = p[j] * (ds[j] - d);
            }
            sgemm(Trans::N, Trans::N, m, Dh, nk, sc, dS, ld, K, HD, 0.0f, dQ, HD);
            sgemm(Trans::T, Trans::N, nk, Dh, m, sc, dS, ld, Q, HD, beta, dK, HD);
        }
    });
}

}  // namespace pickscore::cpu
