// kernels/embedding.cuh — the embedding kernels (pickscore/cuda/embedding.hpp): token + position,
// class + position, one-token pooling, and their backwards.
//
// Layout: one warp per output row (blocks of 32 x 8 threads, eight rows a block), the lanes
// striding over the row in chunks of W elements: W = 16 bytes' worth (4 f32, 8 bf16) when every
// row start is 16-byte aligned, else 1. Sums over the batch (the position and class gradients)
// split the batch over the 8 warps of a block and meet in shared memory in a fixed order, so
// every result is deterministic; there are no float atomics.
#pragma once

#include <climits>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include <pickscore/core/error.hpp>
#include <pickscore/core/tensor.hpp>
#include <pickscore/cuda/embedding.hpp>
#include <pickscore/cuda/storage.hpp>

#include "common.cuh"

namespace pickscore::cuda::kernels::embedding {

// W consecutive elements moved as one access (a 16-byte load or store when W·sizeof(T) = 16).
using chunk::Chunk;
using chunk::load;
using chunk::store;
template <class T, int W>
__device__ __forceinline__ Chunk<T, W> nan_chunk() {
    Chunk<T, W> c;
    for (int k = 0; k < W; ++k) c.v[k] = from_float<T>(__int_as_float(0x7fc00000));
    return c;
}

constexpr int kRowsPerBlock = 8;  // warps (rows) per block of the row kernels

// out[i, :] = table[ids[i], :] + pos[i % tokens, :]; a row with an id outside [0, vocab) is NaN.
template <class T, int W>
__global__ void token_embedding_forward_kernel(T* out, const std::int32_t* ids, const T* table, const T* pos,
                                               std::int64_t rows, std::int64_t tokens, std::int64_t vocab,
                                               std::int64_t C) {
    const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
    if (row >= rows) return;
    const std::int64_t id = ids[row];
    const bool valid = 0 <= id && id < vocab;
    const T* src = table + (valid ? id : 0) * C;
    const T* p = pos + (row % tokens) * C;
    T* o = out + row * C;
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < C; c += 32 * W) {
        Chunk<T, W> r = nan_chunk<T, W>();
        if (valid) {
            const auto a = load<W>(src + c), b = load<W>(p + c);
            for (int k = 0; k < W; ++k) r.v[k] = from_float<T>(to_float(a.v[k]) + to_float(b.v[k]));
        }
        store<W>(o + c, r);
    }
}

// One warp per segment of the grouped positions (TokenGroups): the sum of dout over the segment's
// positions, in order, added to its dtoken row (target >= 0, starting from the row's value as the
// CPU does) or stored as partial slot -target - 1.
template <class T, int W>
__global__ void token_segment_sum_kernel(T* dtoken, float* partial, const T* dout, const std::int32_t* order,
                                         const std::int32_t* segments, std::int64_t n_segments, std::int64_t C) {
    const std::int64_t seg = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
    if (seg >= n_segments) return;
    const std::int32_t begin = segments[3 * seg], end = segments[3 * seg + 1], target = segments[3 * seg + 2];
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < C; c += 32 * W) {
        float acc[W];
        if (target >= 0) {
            const auto d = load<W>(dtoken + std::int64_t(target) * C + c);
            for (int k = 0; k < W; ++k) acc[k] = to_float(d.v[k]);
        } else {
            for (int k = 0; k < W; ++k) acc[k] = 0.0f;
        }
        for (std::int32_t j = begin; j < end; ++j) {
            const auto g = load<W>(dout + std::int64_t(order[j]) * C + c);
            for (int k = 0; k < W; ++k) acc[k] += to_float(g.v[k]);
        }
        if (target >= 0) {
            Chunk<T, W> r;
            for (int k = 0; k < W; ++k) r.v[k] = from_float<T>(acc[k]);
            store<W>(dtoken + std::int64_t(target) * C + c, r);
        } else {
            Chunk<float, W> r;
            for (int k = 0; k < W; ++k) r.v[k] = acc[k];
            store<W>(partial + std::int64_t(-target - 1) * C + c, r);
        }
    }
}

// One warp per id whose group was split: dtoken[id] += its partial slots, in slot order.
template <class T, int W>
__global__ void token_finish_kernel(T* dtoken, const float* partial, const std::int32_t* finishes,
                                    std::int64_t n_finishes, std::int64_t C) {
    const std::int64_t f = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
    if (f >= n_finishes) return;
    const std::int32_t id = finishes[3 * f], first = finishes[3 * f + 1], slots = finishes[3 * f + 2];
    T* row = dtoken + std::int64_t(id) * C;
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < C; c += 32 * W) {
        const auto d = load<W>(row + c);
        float acc[W];
        for (int k = 0; k < W; ++k) acc[k] = to_float(d.v[k]);
        for (std::int32_t s = 0; s < slots; ++s) {
            const auto p = load<W>(partial + std::int64_t(first + s) * C + c);
            for (int k = 0; k < W; ++k) acc[k] += p.v[k];
        }
        Chunk<T, W> r;
        for (int k = 0; k < W; ++k) r.v[k] = from_float<T>(acc[k]);
        store<W>(row + c, r);
    }
}

// dst[r, :] += Σ_b src[b, r, :] for r < R (dst may be null), and dst0[:] += Σ_b src[b, 0, :] (may be
// null), src being [B, S, C] with S >= R. Block (32, 8), grid (R, column groups of 32·W): lane x
// owns W columns, warp y sums the batch rows b ≡ y (mod 8); the 8 partial sums meet in shared
// memory and are added in order.
template <class T, int W>
__global__ void batch_sum_kernel(T* dst, T* dst0, const T* src, std::int64_t B, std::int64_t S, std::int64_t C) {
    PICKSCORE_SHARED(float[kRowsPerBlock][32 * W], partial);
    const std::int64_t r = blockIdx.x;
    const std::int64_t c = (std::int64_t(blockIdx.y) * 32 + threadIdx.x) * W;
    const bool active = c < C;
    float acc[W];
    for (int k = 0; k < W; ++k) acc[k] = 0.0f;
    if (active)
        for (std::int64_t b = threadIdx.y; b < B; b += kRowsPerBlock) {
            const auto x = load<W>(src + (b * S + r) * C + c);
            for (int k = 0; k < W; ++k) acc[k] += to_float(x.v[k]);
        }
    for (int k = 0; k < W; ++k) partial[threadIdx.y][threadIdx.x * W + k] = acc[k];
    __syncthreads();
    if (threadIdx.y != 0 || !active) return;
    for (int k = 0; k < W; ++k) {
        acc[k] = partial[0][threadIdx.x * W + k];
        for (int y = 1; y < kRowsPerBlock; ++y) acc[k] += partial[y][threadIdx.x * W + k];
    }
    auto add_to = [&](T* t) {
        const auto d = load<W>(t);
        Chunk<T, W> o;
        for (int k = 0; k < W; ++k) o.v[k] = from_float<T>(to_float(d.v[k]) + acc[k]);
        store<W>(t, o);
    };
    if (dst != nullptr) add_to(dst + r * C + c);
    if (dst0 != nullptr && r == 0) add_to(dst0 + c);
}

// out[b, s, :] = (s == 0 ? cls : patches[b, s - 1, :]) + pos[s, :], one warp per row of out.
template <class T, int W>
__global__ void class_position_forward_kernel(T* out, const T* patches, const T* cls, const T* pos, std::int64_t B,
                                              std::int64_t S, std::int64_t C) {
    const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
    if (row >= B * S) return;
    const std::int64_t b = row / S, s = row % S;
    const T* src = s == 0 ? cls : patches + (b * (S - 1) + s - 1) * C;
    const T* p = pos + s * C;
    T* o = out + row * C;
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < C; c += 32 * W) {
        const auto a = load<W>(src + c), q = load<W>(p + c);
        Chunk<T, W> r;
        for (int k = 0; k < W; ++k) r.v[k] = from_float<T>(to_float(a.v[k]) + to_float(q.v[k]));
        store<W>(o + c, r);
    }
}

// dpatches[b, p, :] = dout[b, 1 + p, :], one warp per row of dpatches.
template <class T, int W>
__global__ void drop_class_row_kernel(T* dpatches, const T* dout, std::int64_t B, std::int64_t S, std::int64_t C) {
    const std::int64_t P = S - 1;
    const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
    if (row >= B * P) return;
    const T* src = dout + ((row / P) * S + 1 + row % P) * C;
    T* dst = dpatches + row * C;
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < C; c += 32 * W) store<W>(dst + c, load<W>(src + c));
}

// out[b, :] = in[b, positions[b], :] (NaN for a position outside [0, tokens)), one warp per row.
template <class T, int W>
__global__ void select_token_forward_kernel(T* out, const T* in, const std::int32_t* positions, std::int64_t B,
                                            std::int64_t tokens, std::int64_t C) {
    const std::int64_t b = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
    if (b >= B) return;
    const std::int64_t t = positions[b];
    const bool valid = 0 <= t && t < tokens;
    const T* src = in + (b * tokens + (valid ? t : 0)) * C;
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < C; c += 32 * W)
        store<W>(out + b * C + c, valid ? load<W>(src + c) : nan_chunk<T, W>());
}

// din[b, t, :] = t == positions[b] ? dout[b, :] : 0, one warp per row of din (all of row b's
// rows NaN if positions[b] is outside [0, tokens)).
template <class T, int W>
__global__ void select_token_backward_kernel(T* din, const T* dout, const std::int32_t* positions, std::int64_t B,
                                             std::int64_t tokens, std::int64_t C) {
    const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
    if (row >= B * tokens) return;
    const std::int64_t b = row / tokens, t = row % tokens, pos = positions[b];
    const bool valid = 0 <= pos && pos < tokens;
    Chunk<T, W> zero;
    for (int k = 0; k < W; ++k) zero.v[k] = from_float<T>(0.0f);
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < C; c += 32 * W)
        store<W>(din + row * C + c, !valid ? nan_chunk<T, W>() : t == pos ? load<W>(dout + b * C + c) : zero);
}

}  // namespace pickscore::cuda::kernels::embedding

namespace pickscore::cuda {

namespace embedding_host {

template <class T>
constexpr bool supported = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

// Blocks of 8 row-warps covering `rows` rows.
inline dim3 row_grid(std::int64_t rows) { return dim3(blocks_for(rows, unsigned(kernels::embedding::kRowsPerBlock))); }
inline dim3 row_block() { return dim3(32, unsigned(kernels::embedding::kRowsPerBlock)); }

// dst[r] += Σ_b src[b, r] for r < R (dst may be null), dst0 += Σ_b src[b, 0] (may be null);
// src is [B, S, C] with S >= R.
template <class T>
void batch_sum(T* dst, T* dst0, const T* src, std::int64_t B, std::int64_t R, std::int64_t S, std::int64_t C) {
    if (R == 0 || C == 0 || (dst == nullptr && dst0 == nullptr)) return;
    with_chunk_width<T>(C, {dst, dst0, src}, [&](auto w) {
        constexpr int W = decltype(w)::value;
        const std::int64_t groups = (C / W + 31) / 32;
        require(R <= INT_MAX && groups <= 65535, "batch_sum: ", R, " rows of ", C,
                " columns are too many for one grid");
        launch(kernels::embedding::batch_sum_kernel<device_t<T>, W>, dim3(unsigned(R), unsigned(groups)), row_block(),
               0, device_ptr(dst), device_ptr(dst0), device_ptr(src), B, S, C);
    });
}

}  // namespace embedding_host

template <class T>
void token_embedding_forward(T* out, const std::int32_t* ids, const T* token_table, const T* pos_table,
                             std::int64_t rows, std::int64_t tokens, std::int64_t vocab, std::int64_t C) {
    static_assert(embedding_host::supported<T>, "the CUDA embeddings support f32 and bf16");
    if (rows == 0 || C == 0) return;
    with_chunk_width<T>(C, {out, token_table, pos_table}, [&](auto w) {
        launch(kernels::embedding::token_embedding_forward_kernel<device_t<T>, decltype(w)::value>,
               embedding_host::row_grid(rows), embedding_host::row_block(), 0, device_ptr(out), ids,
               device_ptr(token_table), device_ptr(pos_table), rows, tokens, vocab, C);
    });
}

template <class T>
void token_embedding_backward(T* dtoken, T* dpos, const T* dout, const std::int32_t* ids_host, std::int64_t B,
                              std::int64_t tokens, std::int64_t C) {
    static_assert(embedding_host::supported<T>, "the CUDA embeddings support f32 and bf16");
    const std::int64_t rows = B * tokens;
    if (rows == 0 || C == 0) return;
    if (dtoken != nullptr) {
        require(ids_host != nullptr,
                "cuda::token_embedding_backward: the token-table gradient needs the ids on the host");
        require(rows <= INT_MAX, "cuda::token_embedding_backward: ", rows, " positions are more than int32 indexes");
        const TokenGroups groups = group_token_ids(ids_host, rows);
        const std::vector<std::int32_t> packed = groups.packed();
        Tensor<std::int32_t, Cuda> plan(Shape{std::int64_t(packed.size())});
        copy<std::int32_t>(plan, TensorView<const std::int32_t, Cpu>(packed.data(), plan.shape()));
        Tensor<float, Cuda> partial;
        if (groups.partial_slots > 0) partial = Tensor<float, Cuda>(Shape{groups.partial_slots, C});
        const std::int32_t* order = plan.data();
        const std::int32_t* segments = order + rows;
        const std::int32_t* finishes = segments + 3 * std::int64_t(groups.segments.size());
        with_chunk_width<T>(C, {dtoken, dout, partial.data()}, [&](auto w) {
            constexpr int W = decltype(w)::value;
            const auto n_seg = std::int64_t(groups.segments.size()), n_fin = std::int64_t(groups.finishes.size());
            launch(kernels::embedding::token_segment_sum_kernel<device_t<T>, W>, embedding_host::row_grid(n_seg),
                   embedding_host::row_block(), 0, device_ptr(dtoken), partial.data(), device_ptr(dout), order,
                   segments, n_seg, C);
            if (n_fin > 0)
                launch(kernels::embedding::token_finish_kernel<device_t<T>, W>, embedding_host::row_grid(n_fin),
                       embedding_host::row_block(), 0, device_ptr(dtoken), static_cast<const float*>(partial.data()),
                       finishes, n_fin, C);
        });
    }
    if (dpos != nullptr) embedding_host::batch_sum<T>(dpos, nullptr, dout, B, tokens, tokens, C);
}

template <class T>
void class_position_forward(T* out, const T* patches, const T* cls, const T* pos, std::int64_t B, std::int64_t S,
                            std::int64_t C) {
    static_assert(embedding_host::supported<T>, "the CUDA embeddings support f32 and bf16");
    if (B * S == 0 || C == 0) return;
    with_chunk_width<T>(C, {out, patches, cls, pos}, [&](auto w) {
        launch(kernels::embedding::class_position_forward_kernel<device_t<T>, decltype(w)::value>,
               embedding_host::row_grid(B * S), embedding_host::row_block(), 0, device_ptr(out), device_ptr(patches),
               device_ptr(cls), device_ptr(pos), B, S, C);
    });
}

template <class T>
void class_position_backward(T* dpatches, T* dcls, T* dpos, const T* dout, std::int64_t B, std::int64_t S,
                             std::int64_t C) {
    static_assert(embedding_host::supported<T>, "the CUDA embeddings support f32 and bf16");
    if (C == 0 || S == 0) return;
    if (dpatches != nullptr && B * (S - 1) > 0) {
        with_chunk_width<T>(C, {dpatches, dout}, [&](auto w) {
            launch(kernels::embedding::drop_class_row_kernel<device_t<T>, decltype(w)::value>,
                   embedding_host::row_grid(B * (S - 1)), embedding_host::row_block(), 0, device_ptr(dpatches),
                   device_ptr(dout), B, S, C);
        });
    }
    // dpos gets every row's batch sum, dcls row 0's again (or alone, when dpos is not wanted).
    embedding_host::batch_sum<T>(dpos, dcls, dout, B, dpos != nullptr ? S : 1, S, C);
}

template <class T>
void select_token_forward(T* out, const T* in, const std::int32_t* positions, std::int64_t B, std::int64_t tokens,
                          std::int64_t C) {
    static_assert(embedding_host::supported<T>, "the CUDA embeddings support f32 and bf16");
    if (B == 0 || C == 0) return;
    with_chunk_width<T>(C, {out, in}, [&](auto w) {
        launch(kernels::embedding::select_token_forward_kernel<device_t<T>, decltype(w)::value>,
               embedding_host::row_grid(B), embedding_host::row_block(), 0, device_ptr(out), device_ptr(in), positions,
               B, tokens, C);
    });
}

template <class T>
void select_token_backward(T* din, const T* dout, const std::int32_t* positions, std::int64_t B, std::int64_t tokens,
                           std::int64_t C) {
    static_assert(embedding_host::supported<T>, "the CUDA embeddings support f32 and bf16");
    if (B * tokens == 0 || C == 0) return;
    with_chunk_width<T>(C, {din, dout}, [&](auto w) {
        launch(kernels::embedding::select_token_backward_kernel<device_t<T>, decltype(w)::value>,
               embedding_host::row_grid(B * tokens), embedding_host::row_block(), 0, device_ptr(din), device_ptr(dout),
               positions, B, tokens, C);
    });
}

template void token_embedding_forward<float>(float*, const std::int32_t*, const float*, const float*, std::int64_t,
                                             std::int64_t, std::int64_t, std::int64_t);
template void token_embedding_forward<bf16>(bf16*, const std::int32_t*, const bf16*, const bf16*, std::int64_t,
                                            std::int64_t, std::int64_t, std::int64_t);
template void token_embedding_backward<float>(float*, float*, const float*, const std::int32_t*, std::int64_t,
                                              std::int64_t, std::int64_t);
template void token_embedding_backward<bf16>(bf16*, bf16*, const bf16*, const std::int32_t*, std::int64_t, std::int64_t,
                                             std::int64_t);
template void class_position_forward<float>(float*, const float*, const float*, const float*, std::int64_t,
                                            std::int64_t, std::int64_t);
template void class_position_forward<bf16>(bf16*, const bf16*, const bf16*, const bf16*, std::int64_t, std::int64_t,
                                           std::int64_t);
template void class_position_backward<float>(float*, float*, float*, const float*, std::int64_t, std::int64_t,
                                             std::int64_t);
template void class_position_backward<bf16>(bf16*, bf16*, bf16*, const bf16*, std::int64_t, std::int64_t, std::int64_t);
template void select_token_forward<float>(float*, const float*, const std::int32_t*, std::int64_t, std::int64_t,
                                          std::int64_t);
template void select_token_forward<bf16>(bf16*, const bf16*, const std::int32_t*, std::int64_t, std::int64_t,
                                         std::int64_t);
template void select_token_backward<float>(float*, const float*, const std::int32_t*, std::int64_t, std::int64_t,
                                           std::int64_t);
template void select_token_backward<bf16>(bf16*, const bf16*, const std::int32_t*, std::int64_t, std::int64_t,
                                          std::int64_t);

}  // namespace pickscore::cuda
