// pickscore/cuda/emulation/tensor_core.hpp — the warp-level matrix and asynchronous-copy
// instructions, emulated: mma.sync m16n8k16 (bf16 and f16 inputs, f32 accumulators), ldmatrix
// m8n8 .x1/.x2/.x4 (.trans), and cp.async with commit_group/wait_group.
// pickscore-requires: pickscore::cuda_emulation
//
// Kernels do not call these directly: kernels/ptx.cuh wraps each instruction in a function that
// is inline PTX under nvcc and calls the emulation here otherwise.
//
// The register layouts are the PTX ISA's ("Matrix Fragments for mma.m16n8k16 with floating point
// type" and "Warp-level matrix load instruction: ldmatrix"), with groupID = lane >> 2 and
// threadID_in_group = lane % 4; a .b32 register holding two 16-bit elements keeps the one with
// the lower index in its low half. mma and ldmatrix are collective over the full warp (.aligned):
// all 32 lanes must execute them, or the block reports a deadlock / an error.
//
// cp.async reads its source when issued and writes shared memory only when a cp.async.wait_group
// covering its group executes (the latest moment the hardware may) — so a kernel that reads the
// destination before waiting sees the poison, and a missing wait shows.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "bfloat16.hpp"
#include "executor.hpp"

namespace pickscore::cuda::emu {

namespace detail {

template <class Elem>
struct MmaTag {};
template <int N, bool Trans>
struct LdmatrixTag {};

inline float lo_bf16(std::uint32_t r) { return std::bit_cast<float>(r << 16); }
inline float hi_bf16(std::uint32_t r) { return std::bit_cast<float>(r & 0xffff0000u); }
inline float lo_f16(std::uint32_t r) { return float(__half(__half_raw{static_cast<unsigned short>(r & 0xffffu)})); }
inline float hi_f16(std::uint32_t r) { return float(__half(__half_raw{static_cast<unsigned short>(r >> 16)})); }

}  // namespace detail

// d = a · b + c for one warp: a is 16x16 (row-major fragments), b is 16x8 (column fragments),
// c and d are 16x8 f32. Elem is __nv_bfloat16 or __half. d may alias c.
template <class Elem>
void mma_m16n8k16(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2], const float (&c)[4]) {
    static_assert(std::is_same_v<Elem, __nv_bfloat16> || std::is_same_v<Elem, __half>);
    struct In {
        std::uint32_t a[4], b[2];
        float c[4];
    };
    struct Out {
        float d[4];
    };
    In in;
    for (int i = 0; i < 4; ++i) in.a[i] = a[i];
    for (int i = 0; i < 2; ++i) in.b[i] = b[i];
    for (int i = 0; i < 4; ++i) in.c[i] = c[i];
    const Out out = detail::collective<detail::MmaTag<Elem>, In, Out>(
        0xffffffffu, "mma.sync.m16n8k16", in, [](unsigned, const auto& ins, auto& outs) {
            auto lo = [](std::uint32_t r) {
                if constexpr (std::is_same_v<Elem, __nv_bfloat16>) return detail::lo_bf16(r);
                else return detail::lo_f16(r);
            };
            auto hi = [](std::uint32_t r) {
                if constexpr (std::is_same_v<Elem, __nv_bfloat16>) return detail::hi_bf16(r);
                else return detail::hi_f16(r);
            };
            float A[16][16], B[16][8], C[16][8];
            for (int lane = 0; lane < 32; ++lane) {
                const In& f = *ins[std::size_t(lane)];
                const int g = lane >> 2, t = lane & 3;
                for (int i = 0; i < 8; ++i) {  // a_i lives in register i/2, low half for even i
                    const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
                    const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
                    A[row][col] = (i & 1) ? hi(f.a[i / 2]) : lo(f.a[i / 2]);
                }
                for (int i = 0; i < 4; ++i) {
                    const int row = t * 2 + (i & 1) + (i >= 2 ? 8 : 0);
                    B[row][g] = (i & 1) ? hi(f.b[i / 2]) : lo(f.b[i / 2]);
                }
                for (int i = 0; i < 4; ++i) C[i < 2 ? g : g + 8][t * 2 + (i & 1)] = f.c[i];
            }
            for (int lane = 0; lane < 32; ++lane) {
                const int g = lane >> 2, t = lane & 3;
                for (int i = 0; i < 4; ++i) {
                    const int row = i < 2 ? g : g + 8, col = t * 2 + (i & 1);
                    float acc = 0.0f;  // the products of 16-bit inputs are exact in f32
                    for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
                    outs[std::size_t(lane)]->d[i] = C[row][col] + acc;
                }
            }
        });
    for (int i = 0; i < 4; ++i) d[i] = out.d[i];
}

// ldmatrix.sync.aligned.m8n8.xN{.trans}.shared.b16: lanes 8i..8i+7 give the row addresses of
// matrix i (16 bytes each, 16-byte aligned, in shared memory); register i of lane l receives
// row l/4, columns 2(l%4) and 2(l%4)+1 of matrix i — or, with .trans, rows 2(l%4) and
// 2(l%4)+1 of column l/4.
template <int N, bool Trans>
void ldmatrix(std::uint32_t (&r)[N], const void* row_address) {
    static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
    struct Out {
        std::uint32_t r[N];
    };
    const char* name = Trans ? "ldmatrix.trans" : "ldmatrix";
    const Out out = detail::collective<detail::LdmatrixTag<N, Trans>, const void*, Out>(
        0xffffffffu, name, row_address, [name](unsigned, const auto& ins, auto& outs) {
            detail::BlockRunner& runner = detail::runner();
            std::uint16_t M[N][8][8];
            for (int m = 0; m < N; ++m)
                for (int row = 0; row < 8; ++row) {
                    const void* p = *ins[std::size_t(8 * m + row)];
                    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0 || !runner.in_shared(p, 16))
                        detail::kernel_fail(::pickscore::detail::concat(
                            name, ": lane ", 8 * m + row, " gives row address ", p,
                            ", which is not a 16-byte aligned address in the block's shared memory"));
                    std::memcpy(M[m][row], p, 16);
                }
            for (int lane = 0; lane < 32; ++lane) {
                const int g = lane >> 2, t = lane & 3;
                for (int m = 0; m < N; ++m) {
                    const std::uint16_t lo = Trans ? M[m][2 * t][g] : M[m][g][2 * t];
                    const std::uint16_t hi = Trans ? M[m][2 * t + 1][g] : M[m][g][2 * t + 1];
                    outs[std::size_t(lane)]->r[m] = std::uint32_t(lo) | (std::uint32_t(hi) << 16);
                }
            }
        });
    for (int i = 0; i < N; ++i) r[i] = out.r[i];
}

// cp.async.{ca,cg}.shared.global [dst], [src], cp_bytes, src_bytes: copies src_bytes bytes and
// zero-fills the rest of cp_bytes (4, 8 or 16).
inline void cp_async(void* dst, const void* src, unsigned cp_bytes, unsigned src_bytes) {
    detail::BlockRunner& r = detail::runner();
    if (cp_bytes != 4 && cp_bytes != 8 && cp_bytes != 16)
        detail::kernel_fail(::pickscore::detail::concat("cp.async: copy size ", cp_bytes, " is not 4, 8 or 16"));
    if (src_bytes > cp_bytes)
        detail::kernel_fail(::pickscore::detail::concat("cp.async: source size ", src_bytes, " exceeds the copy size ", cp_bytes));
    if (reinterpret_cast<std::uintptr_t>(dst) % cp_bytes != 0 || !r.in_shared(dst, cp_bytes))
        detail::kernel_fail(::pickscore::detail::concat("cp.async: destination ", dst, " is not a ", cp_bytes,
                                                        "-byte aligned address in the block's shared memory"));
    if (reinterpret_cast<std::uintptr_t>(src) % cp_bytes != 0)
        detail::kernel_fail(::pickscore::detail::concat("cp.async: source ", src, " is not ", cp_bytes, "-byte aligned"));
    detail::AsyncCopy c{dst, {}, cp_bytes};
    if (src_bytes) std::memcpy(c.data.data(), src, src_bytes);
    if (config().cp_async_land_at_issue) std::memcpy(dst, c.data.data(), cp_bytes);
    r.thread().async_open.push_back(c);
}

// cp.async.commit_group: the copies issued since the last commit form a group.
inline void cp_async_commit() {
    detail::EmuThread& t = detail::runner().thread();
    t.async_groups.push_back(std::move(t.async_open));
    t.async_open.clear();
}

// cp.async.wait_group n: lands every committed group but the n most recent.
inline void cp_async_wait(int n) {
    detail::EmuThread& t = detail::runner().thread();
    while (t.async_groups.size() > std::size_t(n)) {
        for (const detail::AsyncCopy& c : t.async_groups.front()) std::memcpy(c.dst, c.data.data(), c.bytes);
        t.async_groups.erase(t.async_groups.begin());
    }
}

}  // namespace pickscore::cuda::emu
