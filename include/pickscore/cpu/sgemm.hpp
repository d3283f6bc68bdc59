// pickscore/cpu/sgemm.hpp — the fast f32 GEMM of the CPU backend: blocked, packed, vectorised and
// multi-threaded.
//
//     C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C      (row-major, leading dimensions in
//                                                               elements; beta == 0: C is not read)
//
// The structure is the GotoBLAS/BLIS one, in row-major terms:
//
//   for jc over N in steps of NC                      (a column panel of C)
//     for pc over K in steps of KC
//       pack op(B)[pc:pc+KC, jc:jc+NC] into slivers of NR columns, k-major   (lives in L3/L2)
//       for ic over M in steps of MC
//         pack op(A)[ic:ic+MC, pc:pc+KC] into slivers of MR rows, k-major   (lives in L2)
//         for jr over the B slivers                    (one B sliver, KC x NR, stays in L1)
//           for ir over the A slivers                  (A slivers stream from L2)
//             micro-kernel: an MR x NR tile of C held in registers, KC rank-1 updates
//
// Packing makes every operand contiguous and aligned whatever the transposes, leading dimensions
// and alignment of the inputs; slivers past the edge of the matrix are padded with zeros, so the
// micro-kernel always computes a full tile and only its store is clipped.
//
// Kernels: AVX-512F (12 x 32 tile, 24 zmm accumulators), AVX2 + FMA (6 x 16 tile, 12 ymm
// accumulators) and portable C++ (4 x 8). The SIMD ones are ordinary functions compiled for their
// instruction set with __attribute__((target(...))), so no -m flags are needed, the header stays
// portable, and the best kernel the CPU supports is picked at run time (detected_simd()).
//
// Threads: C is cut into a grid of tm x tn tiles, one per thread (parallel_for), each tile packing
// its own operands, so threads never wait for each other inside a call. The grid is the one that
// minimises the busiest thread's arithmetic plus packing (for ViT shapes: N split in two for
// M = 257, either way for M = 2056).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string_view>

#include "../core/error.hpp"
#include "../core/threads.hpp"
#include "../ops/common.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PICKSCORE_SGEMM_X86 1
#include <immintrin.h>
#endif

namespace pickscore::cpu {

template <class T>
void gemm_reference(ops::Trans ta, ops::Trans tb, std::int64_t M, std::int64_t N, std::int64_t K, double alpha,
                    const T* A, std::int64_t lda, const T* B, std::int64_t ldb, double beta, T* C, std::int64_t ldc);

// The instruction sets sgemm has kernels for.
enum class SimdLevel { scalar, avx2, avx512 };

inline std::string_view simd_name(SimdLevel level) {
    switch (level) {
        case SimdLevel::scalar: return "scalar";
        case SimdLevel::avx2: return "avx2";
        case SimdLevel::avx512: return "avx512";
    }
    return "unknown";
}

// Whether this CPU (and its operating system) can run the kernel of `level`.
inline bool simd_supported(SimdLevel level) {
    if (level == SimdLevel::scalar) return true;
#ifdef PICKSCORE_SGEMM_X86
    static const bool avx2 = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }();
    static const bool avx512 = [] {
        __builtin_cpu_init();
        return avx2 && __builtin_cpu_supports("avx512f");
    }();
    return level == SimdLevel::avx2 ? avx2 : avx512;
#else
    return false;
#endif
}

// The best kernel this CPU supports; what sgemm uses.
inline SimdLevel detected_simd() {
    static const SimdLevel level = simd_supported(SimdLevel::avx512) ? SimdLevel::avx512
                                   : simd_supported(SimdLevel::avx2) ? SimdLevel::avx2
                                                                     : SimdLevel::scalar;
    return level;
}

namespace sgemm_detail {

using ops::Trans;
using i64 = std::int64_t;

inline i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }
inline i64 round_up(i64 a, i64 b) { return ceil_div(a, b) * b; }

// One GEMM call's arguments.
struct Problem {
    Trans ta, tb;
    i64 M, N, K;
    float alpha;
    const float* A;
    i64 lda;
    const float* B;
    i64 ldb;
    float beta;
    float* C;
    i64 ldc;
};

// A 64-byte aligned scratch buffer that only grows; one per thread and operand (packing buffers).
class ScratchBuffer {
public:
    ScratchBuffer() = default;
    ScratchBuffer(const ScratchBuffer&) = delete;
    ScratchBuffer& operator=(const ScratchBuffer&) = delete;
    ~ScratchBuffer() { std::free(data_); }

    float* get(i64 floats) {
        const std::size_t bytes = std::size_t(round_up(std::max<i64>(floats, 16), 16)) * sizeof(float);
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

inline float* scratch_a(i64 floats) {
    thread_local ScratchBuffer buffer;
    return buffer.get(floats);
}
inline float* scratch_b(i64 floats) {
    thread_local ScratchBuffer buffer;
    return buffer.get(floats);
}

// ---- packing, portable ----------------------------------------------------------------------
//
// Both operands are packed by the same two routines, seen as `rows` lines of `kc` values:
//   pack_lines_strided:  line r, value k at src[r * ld + k]   (op(A) with A not transposed,
//                                                            op(B) with B transposed)
//   pack_lines_contig:   line r, value k at src[k * ld + r]   (op(A) with A transposed,
//                                                            op(B) with B not transposed)
// into one sliver dst[k * R + r] (R = MR or NR), lines rows..R-1 zero.

template <int R>
inline void pack_lines_strided_ref(const float* src, i64 ld, int rows, i64 kc, float* dst) {
    for (int r = 0; r < rows; ++r) {
        const float* s = src + r * ld;
        for (i64 k = 0; k < kc; ++k) dst[k * R + r] = s[k];
    }
    for (int r = rows; r < R; ++r)
        for (i64 k = 0; k < kc; ++k) dst[k * R + r] = 0.0f;
}

template <int R>
inline void pack_lines_contig_ref(const float* src, i64 ld, int rows, i64 kc, float* dst) {
    for (i64 k = 0; k < kc; ++k) {
        const float* s = src + k * ld;
        float* d = dst + k * R;
        for (int r = 0; r < rows; ++r) d[r] = s[r];
        for (int r = rows; r < R; ++r) d[r] = 0.0f;
    }
}

// Packs op(A)[i0:i0+m, k0:k0+kc] into ceil(m / MR) slivers of MR x kc.
template <int MR, class Lines>
inline void pack_a_with(const Problem& p, i64 i0, i64 m, i64 k0, i64 kc, float* dst, Lines lines) {
    for (i64 s = 0; s < m; s += MR) {
        const int rows = int(std::min<i64>(MR, m - s));
        if (p.ta == Trans::N)
            lines.strided(p.A + (i0 + s) * p.lda + k0, p.lda, rows, kc, dst + s * kc);
        else
            lines.contig(p.A + k0 * p.lda + (i0 + s), p.lda, rows, kc, dst + s * kc);
    }
}

// Packs op(B)[k0:k0+kc, j0:j0+n] into ceil(n / NR) slivers of kc x NR.
template <int NR, class Lines>
inline void pack_b_with(const Problem& p, i64 j0, i64 n, i64 k0, i64 kc, float* dst, Lines lines) {
    for (i64 s = 0; s < n; s += NR) {
        const int cols = int(std::min<i64>(NR, n - s));
        if (p.tb == Trans::T)
            lines.strided(p.B + (j0 + s) * p.ldb + k0, p.ldb, cols, kc, dst + s * kc);
        else
            lines.contig(p.B + k0 * p.ldb + (j0 + s), p.ldb, cols, kc, dst + s * kc);
    }
}

template <int R>
struct LinesRef {
    void strided(const float* src, i64 ld, int rows, i64 kc, float* dst) const {
        pack_lines_strided_ref<R>(src, ld, rows, kc, dst);
    }
    void contig(const float* src, i64 ld, int rows, i64 kc, float* dst) const {
        pack_lines_contig_ref<R>(src, ld, rows, kc, dst);
    }
};

// Writes an MR x NR tile of products `t` (row stride NR) to C, clipped to m x n:
// C = alpha · t + beta · C, C not read when beta == 0.
template <int NR>
inline void store_tile_ref(const float* t, float* c, i64 ldc, int m, int n, float alpha, float beta) {
    for (int i = 0; i < m; ++i) {
        float* ci = c + i * ldc;
        const float* ti = t + i * NR;
        if (beta == 0.0f)
            for (int j = 0; j < n; ++j) ci[j] = alpha * ti[j];
        else
            for (int j = 0; j < n; ++j) ci[j] = alpha * ti[j] + beta * ci[j];
    }
}

// ---- the portable kernel ----------------------------------------------------------------------

// The micro-kernel contract in plain loops: C[0:m, 0:n] = alpha · a · b + beta · C for a packed
// A sliver a (kc x MR) and B sliver b (kc x NR).
template <int MR, int NR>
void kernel_ref(i64 kc, const float* a, const float* b, float* c, i64 ldc, int m, int n, float alpha, float beta) {
    float t[MR * NR] = {};
    for (i64 k = 0; k < kc; ++k, a += MR, b += NR)
        for (int i = 0; i < MR; ++i)
            for (int j = 0; j < NR; ++j) t[i * NR + j] += a[i] * b[j];
    store_tile_ref<NR>(t, c, ldc, m, n, alpha, beta);
}

struct ScalarArch {
    static constexpr int MR = 4, NR = 8;
    static constexpr i64 MC = 128, KC = 256, NC = 2048;

    static void pack_a(const Problem& p, i64 i0, i64 m, i64 k0, i64 kc, float* dst) {
        pack_a_with<MR>(p, i0, m, k0, kc, dst, LinesRef<MR>{});
    }
    static void pack_b(const Problem& p, i64 j0, i64 n, i64 k0, i64 kc, float* dst) {
        pack_b_with<NR>(p, j0, n, k0, kc, dst, LinesRef<NR>{});
    }
    static void kernel(i64 kc, const float* a, const float* b, float* c, i64 ldc, int m, int n, float alpha,
                       float beta) {
        kernel_ref<MR, NR>(kc, a, b, c, ldc, m, n, alpha, beta);
    }
};

#ifdef PICKSCORE_SGEMM_X86

// ---- packing, AVX2 -------------------------------------------------------------------------

// Transposes 8 rows of 8 floats in place.
__attribute__((target("avx2,fma"))) inline void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3,
                                                           __m256& r4, __m256& r5, __m256& r6, __m256& r7) {
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r0 = _mm256_permute2f128_ps(u0, u4, 0x20);
    r1 = _mm256_permute2f128_ps(u1, u5, 0x20);
    r2 = _mm256_permute2f128_ps(u2, u6, 0x20);
    r3 = _mm256_permute2f128_ps(u3, u7, 0x20);
    r4 = _mm256_permute2f128_ps(u0, u4, 0x31);
    r5 = _mm256_permute2f128_ps(u1, u5, 0x31);
    r6 = _mm256_permute2f128_ps(u2, u6, 0x31);
    r7 = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Stores the first `lanes` (8, 6 or 4) floats of v at d.
__attribute__((target("avx2,fma"))) inline void store_lanes(float* d, __m256 v, int lanes) {
    if (lanes == 8) {
        _mm256_storeu_ps(d, v);
    } else {
        _mm_storeu_ps(d, _mm256_castps256_ps128(v));
        if (lanes == 6) _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), _mm256_extractf128_ps(v, 1));
    }
}

// pack_lines_strided for R in {6, 12, 16, 32}: 8 x 8 blocks transposed in registers.
template <int R>
__attribute__((target("avx2,fma"))) inline void pack_lines_strided_avx2(const float* src, i64 ld, int rows, i64 kc,
                                                                        float* dst) {
    static_assert(R % 8 == 0 || R % 8 == 6 || R % 8 == 4, "pack_lines_strided_avx2: unsupported sliver width");
    const i64 kc8 = kc & ~i64(7);
    // k outermost, so that all the source lines are read as parallel streams and each line of the
    // sliver is written whole, once.
    for (i64 k = 0; k < kc8; k += 8) {
        for (int g = 0; g < R; g += 8) {
            const int lanes = std::min(8, R - g);          // lines of the sliver this group fills
            const int valid = std::clamp(rows - g, 0, 8);  // lines of the group that exist in the source
            const float* s = src + g * ld + k;
            __m256 v[8];
            for (int r = 0; r < 8; ++r) v[r] = r < valid ? _mm256_loadu_ps(s + r * ld) : _mm256_setzero_ps();
            transpose8(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
            for (int q = 0; q < 8; ++q) store_lanes(dst + (k + q) * R + g, v[q], lanes);
        }
    }
    for (i64 k = kc8; k < kc; ++k)
        for (int r = 0; r < R; ++r) dst[k * R + r] = r < rows ? src[r * ld + k] : 0.0f;
}

// pack_lines_contig for any R: whole lines copied with vector loads when the sliver is full.
template <int R>
__attribute__((target("avx2,fma"))) inline void pack_lines_contig_avx2(const float* src, i64 ld, int rows, i64 kc,
                                                                       float* dst) {
    if (rows == R && R % 8 == 0) {
        for (i64 k = 0; k < kc; ++k)
            for (int r = 0; r < R; r += 8) _mm256_storeu_ps(dst + k * R + r, _mm256_loadu_ps(src + k * ld + r));
    } else {
        pack_lines_contig_ref<R>(src, ld, rows, kc, dst);
    }
}

template <int R>
struct LinesAvx2 {
    __attribute__((target("avx2,fma"))) void strided(const float* src, i64 ld, int rows, i64 kc, float* dst) const {
        pack_lines_strided_avx2<R>(src, ld, rows, kc, dst);
    }
    __attribute__((target("avx2,fma"))) void contig(const float* src, i64 ld, int rows, i64 kc, float* dst) const {
        pack_lines_contig_avx2<R>(src, ld, rows, kc, dst);
    }
};

// ---- the AVX2 + FMA kernel: 6 x 16 ----------------------------------------------------------

// One rank-1 update of row i: two FMAs with the broadcast a[i].
#define PICKSCORE_SGEMM_AVX2_ROW(i)                                \
    {                                                              \
        const __m256 ai = _mm256_broadcast_ss(a + (i));            \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);                \
    }
#define PICKSCORE_SGEMM_AVX2_STEP                                  \
    {                                                              \
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8); \
        PICKSCORE_SGEMM_AVX2_ROW(0)                                \
        PICKSCORE_SGEMM_AVX2_ROW(1)                                \
        PICKSCORE_SGEMM_AVX2_ROW(2)                                \
        PICKSCORE_SGEMM_AVX2_ROW(3)                                \
        PICKSCORE_SGEMM_AVX2_ROW(4)                                \
        PICKSCORE_SGEMM_AVX2_ROW(5)                                \
        a += 6;                                                    \
        b += 16;                                                   \
    }
// C row i = alpha · acc + beta · C (full row of 16).
#define PICKSCORE_SGEMM_AVX2_STORE(i)                                                    \
    {                                                                                    \
        float* ci = c + (i) * ldc;                                                       \
        __m256 r0 = _mm256_mul_ps(va, c##i##0), r1 = _mm256_mul_ps(va, c##i##1);         \
        if (read_c) {                                                                    \
            r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);                           \
            r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);                       \
        }                                                                                \
        _mm256_storeu_ps(ci, r0);                                                        \
        _mm256_storeu_ps(ci + 8, r1);                                                    \
    }
#define PICKSCORE_SGEMM_AVX2_SPILL(i)                 \
    {                                                 \
        _mm256_store_ps(t + (i) * 16, c##i##0);       \
        _mm256_store_ps(t + (i) * 16 + 8, c##i##1);   \
    }

struct Avx2Arch {
    static constexpr int MR = 6, NR = 16;
    // B sliver 256 x 16 floats = 16 KiB (half a 32 KiB L1d); A block up to 264 x 256 floats =
    // 264 KiB (half of Zen 3's 512 KiB L2, one block for M = 257); B panel up to 256 x 4096 floats
    // = 4 MiB per thread in L3. On Zen 3, KC 256..512 and MC 132..264 measured within noise.
    static constexpr i64 MC = 264, KC = 256, NC = 4096;

    __attribute__((target("avx2,fma"))) static void pack_a(const Problem& p, i64 i0, i64 m, i64 k0, i64 kc,
                                                           float* dst) {
        pack_a_with<MR>(p, i0, m, k0, kc, dst, LinesAvx2<MR>{});
    }
    __attribute__((target("avx2,fma"))) static void pack_b(const Problem& p, i64 j0, i64 n, i64 k0, i64 kc,
                                                           float* dst) {
        pack_b_with<NR>(p, j0, n, k0, kc, dst, LinesAvx2<NR>{});
    }

    // C[0:m, 0:n] = alpha · a · b + beta · C, a: kc x 6 (k-major), b: kc x 16 (k-major, 32-byte aligned).
    __attribute__((target("avx2,fma"))) static void kernel(i64 kc, const float* a, const float* b, float* c, i64 ldc,
                                                           int m, int n, float alpha, float beta) {
        __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
        __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
        // The tile of C is needed only at the end: start fetching it now (each row may span two lines).
        for (int i = 0; i < m; ++i) {
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
        }
        // Two rank-1 updates per trip and a prefetch of the A sliver 16 steps ahead (it streams
        // from L2). Measured on Zen 3 against a plain loop: a few per cent faster.
        i64 k = 0;
        for (; k + 2 <= kc; k += 2) {
            _mm_prefetch(reinterpret_cast<const char*>(a + 16 * MR), _MM_HINT_T0);
            PICKSCORE_SGEMM_AVX2_STEP
            PICKSCORE_SGEMM_AVX2_STEP
        }
        if (k < kc) PICKSCORE_SGEMM_AVX2_STEP
        const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
        const bool read_c = beta != 0.0f;
        if (m == MR && n == NR) {
            PICKSCORE_SGEMM_AVX2_STORE(0)
            PICKSCORE_SGEMM_AVX2_STORE(1)
            PICKSCORE_SGEMM_AVX2_STORE(2)
            PICKSCORE_SGEMM_AVX2_STORE(3)
            PICKSCORE_SGEMM_AVX2_STORE(4)
            PICKSCORE_SGEMM_AVX2_STORE(5)
        } else {
            alignas(32) float t[MR * NR];
            PICKSCORE_SGEMM_AVX2_SPILL(0)
            PICKSCORE_SGEMM_AVX2_SPILL(1)
            PICKSCORE_SGEMM_AVX2_SPILL(2)
            PICKSCORE_SGEMM_AVX2_SPILL(3)
            PICKSCORE_SGEMM_AVX2_SPILL(4)
            PICKSCORE_SGEMM_AVX2_SPILL(5)
            store_tile_ref<NR>(t, c, ldc, m, n, alpha, beta);
        }
    }
};

#undef PICKSCORE_SGEMM_AVX2_ROW
#undef PICKSCORE_SGEMM_AVX2_STEP
#undef PICKSCORE_SGEMM_AVX2_STORE
#undef PICKSCORE_SGEMM_AVX2_SPILL

// ---- the AVX-512F kernel: 12 x 32 -------------------------------------------------------------

#define PICKSCORE_SGEMM_AVX512_ROW(i)                              \
    {                                                              \
        const __m512 ai = _mm512_set1_ps(a[i]);                    \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);                \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);                \
    }
#define PICKSCORE_SGEMM_AVX512_STEP                                \
    {                                                              \
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16); \
        PICKSCORE_SGEMM_AVX512_ROW(0)                              \
        PICKSCORE_SGEMM_AVX512_ROW(1)                              \
        PICKSCORE_SGEMM_AVX512_ROW(2)                              \
        PICKSCORE_SGEMM_AVX512_ROW(3)                              \
        PICKSCORE_SGEMM_AVX512_ROW(4)                              \
        PICKSCORE_SGEMM_AVX512_ROW(5)                              \
        PICKSCORE_SGEMM_AVX512_ROW(6)                              \
        PICKSCORE_SGEMM_AVX512_ROW(7)                              \
        PICKSCORE_SGEMM_AVX512_ROW(8)                              \
        PICKSCORE_SGEMM_AVX512_ROW(9)                              \
        PICKSCORE_SGEMM_AVX512_ROW(10)                             \
        PICKSCORE_SGEMM_AVX512_ROW(11)                             \
        a += 12;                                                   \
        b += 32;                                                   \
    }
#define PICKSCORE_SGEMM_AVX512_STORE(i)                                                  \
    {                                                                                    \
        float* ci = c + (i) * ldc;                                                       \
        __m512 r0 = _mm512_mul_ps(va, c##i##0), r1 = _mm512_mul_ps(va, c##i##1);         \
        if (read_c) {                                                                    \
            r0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), r0);                           \
            r1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), r1);                      \
        }                                                                                \
        _mm512_storeu_ps(ci, r0);                                                        \
        _mm512_storeu_ps(ci + 16, r1);                                                   \
    }
#define PICKSCORE_SGEMM_AVX512_SPILL(i)               \
    {                                                 \
        _mm512_store_ps(t + (i) * 32, c##i##0);       \
        _mm512_store_ps(t + (i) * 32 + 16, c##i##1);  \
    }

struct Avx512Arch {
    static constexpr int MR = 12, NR = 32;
    // B sliver 192 x 32 floats = 24 KiB (fits Skylake-SP's 32 KiB L1d; Ice Lake and Sapphire
    // Rapids have 48 KiB); A block up to 240 x 192 floats = 180 KiB (L2 is 1-2 MiB). Chosen by
    // the same reasoning as AVX2, not tuned on AVX-512 hardware.
    static constexpr i64 MC = 240, KC = 192, NC = 4096;

    // Packing is AVX2 code (8 x 8 transposes), so the blocking and packing of this kernel can be
    // tested on CPUs without AVX-512 (tests/test_sgemm.cpp swaps in a portable 12 x 32 kernel).
    __attribute__((target("avx2,fma"))) static void pack_a(const Problem& p, i64 i0, i64 m, i64 k0, i64 kc,
                                                           float* dst) {
        pack_a_with<MR>(p, i0, m, k0, kc, dst, LinesAvx2<MR>{});
    }
    __attribute__((target("avx2,fma"))) static void pack_b(const Problem& p, i64 j0, i64 n, i64 k0, i64 kc,
                                                           float* dst) {
        pack_b_with<NR>(p, j0, n, k0, kc, dst, LinesAvx2<NR>{});
    }

    // C[0:m, 0:n] = alpha · a · b + beta · C, a: kc x 12 (k-major), b: kc x 32 (k-major, 64-byte aligned).
    __attribute__((target("avx512f,avx2,fma"))) static void kernel(i64 kc, const float* a, const float* b, float* c,
                                                                   i64 ldc, int m, int n, float alpha, float beta) {
        __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
        __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
        __m512 c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;
        __m512 c90 = c00, c91 = c00, c100 = c00, c101 = c00, c110 = c00, c111 = c00;
        for (int i = 0; i < m; ++i) {
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR / 2), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
        }
        for (i64 k = 0; k < kc; ++k) {
            _mm_prefetch(reinterpret_cast<const char*>(a + 8 * MR), _MM_HINT_T0);
            PICKSCORE_SGEMM_AVX512_STEP
        }
        const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
        const bool read_c = beta != 0.0f;
        if (m == MR && n == NR) {
            PICKSCORE_SGEMM_AVX512_STORE(0)
            PICKSCORE_SGEMM_AVX512_STORE(1)
            PICKSCORE_SGEMM_AVX512_STORE(2)
            PICKSCORE_SGEMM_AVX512_STORE(3)
            PICKSCORE_SGEMM_AVX512_STORE(4)
            PICKSCORE_SGEMM_AVX512_STORE(5)
            PICKSCORE_SGEMM_AVX512_STORE(6)
            PICKSCORE_SGEMM_AVX512_STORE(7)
            PICKSCORE_SGEMM_AVX512_STORE(8)
            PICKSCORE_SGEMM_AVX512_STORE(9)
            PICKSCORE_SGEMM_AVX512_STORE(10)
            PICKSCORE_SGEMM_AVX512_STORE(11)
        } else {
            alignas(64) float t[MR * NR];
            PICKSCORE_SGEMM_AVX512_SPILL(0)
            PICKSCORE_SGEMM_AVX512_SPILL(1)
            PICKSCORE_SGEMM_AVX512_SPILL(2)
            PICKSCORE_SGEMM_AVX512_SPILL(3)
            PICKSCORE_SGEMM_AVX512_SPILL(4)
            PICKSCORE_SGEMM_AVX512_SPILL(5)
            PICKSCORE_SGEMM_AVX512_SPILL(6)
            PICKSCORE_SGEMM_AVX512_SPILL(7)
            PICKSCORE_SGEMM_AVX512_SPILL(8)
            PICKSCORE_SGEMM_AVX512_SPILL(9)
            PICKSCORE_SGEMM_AVX512_SPILL(10)
            PICKSCORE_SGEMM_AVX512_SPILL(11)
            store_tile_ref<NR>(t, c, ldc, m, n, alpha, beta);
        }
    }
};

#undef PICKSCORE_SGEMM_AVX512_ROW
#undef PICKSCORE_SGEMM_AVX512_STEP
#undef PICKSCORE_SGEMM_AVX512_STORE
#undef PICKSCORE_SGEMM_AVX512_SPILL

#endif  // PICKSCORE_SGEMM_X86

// ---- the blocked driver ---------------------------------------------------------------------

// Splits `n` into ceil(n / max_step) nearly equal steps, each a multiple of `unit` (the last may be
// shorter): 257 rows with MC = 264 stay one block, 300 with 256 become 150 + 150.
inline i64 balanced_step(i64 n, i64 max_step, i64 unit) {
    const i64 blocks = ceil_div(n, max_step);
    return std::min(max_step, round_up(ceil_div(n, blocks), unit));
}

// C[i0:i1, j0:j1] of the problem, on the calling thread.
template <class Arch>
void sgemm_tile(const Problem& p, i64 i0, i64 i1, i64 j0, i64 j1) {
    constexpr int MR = Arch::MR, NR = Arch::NR;
    const i64 mc_step = balanced_step(i1 - i0, Arch::MC, MR);
    const i64 kc_step = balanced_step(p.K, Arch::KC, 8);
    const i64 nc_step = balanced_step(j1 - j0, Arch::NC, NR);
    float* const a_pack = scratch_a(round_up(mc_step, MR) * kc_step);
    float* const b_pack = scratch_b(round_up(nc_step, NR) * kc_step);
    for (i64 jc = j0; jc < j1; jc += nc_step) {
        const i64 nc = std::min(nc_step, j1 - jc);
        for (i64 pc = 0; pc < p.K; pc += kc_step) {
            const i64 kc = std::min(kc_step, p.K - pc);
            // The first slice of K applies beta; the later ones accumulate onto it.
            const float beta = pc == 0 ? p.beta : 1.0f;
            Arch::pack_b(p, jc, nc, pc, kc, b_pack);
            for (i64 ic = i0; ic < i1; ic += mc_step) {
                const i64 mc = std::min(mc_step, i1 - ic);
                Arch::pack_a(p, ic, mc, pc, kc, a_pack);
                for (i64 jr = 0; jr < nc; jr += NR) {
                    const int n = int(std::min<i64>(NR, nc - jr));
                    const float* b = b_pack + jr * kc;
                    for (i64 ir = 0; ir < mc; ir += MR) {
                        const int m = int(std::min<i64>(MR, mc - ir));
                        Arch::kernel(kc, a_pack + ir * kc, b, p.C + (ic + ir) * p.ldc + jc + jr, p.ldc, m, n,
                                     p.alpha, beta);
                    }
                }
            }
        }
    }
}

// Cuts C into a tm x tn grid, one tile per thread, and runs the tiles with parallel_for.
template <class Arch>
void sgemm_threaded(const Problem& p) {
    constexpr int MR = Arch::MR, NR = Arch::NR;
    // Below about this many multiply-adds per thread, waking another thread costs more than it saves.
    constexpr double min_work_per_thread = 1 << 20;
    const double work = double(p.M) * double(p.N) * double(p.K);
    const int threads = int(std::clamp<double>(work / min_work_per_thread, 1.0, double(num_threads())));
    const i64 mb = ceil_div(p.M, MR), nb = ceil_div(p.N, NR);
    // The busiest thread's cost, in multiply-adds: its tile's arithmetic (padded to whole slivers)
    // plus packing both operands, which costs about as much per value as 16 multiply-adds.
    int best_tm = 1, best_tn = 1;
    double best_cost = 0;
    for (int t = 1; t <= threads; ++t)
        for (int tm = 1; tm <= t; ++tm) {
            if (t % tm != 0) continue;
            const int tn = t / tm;
            if (tm > mb || tn > nb) continue;
            const double rows = double(ceil_div(mb, tm) * MR), cols = double(ceil_div(nb, tn) * NR);
            const double cost = double(p.K) * (rows * cols + 16.0 * (rows + cols));
            if (best_cost == 0 || cost < best_cost) best_tm = tm, best_tn = tn, best_cost = cost;
        }
    const int tm = best_tm, tn = best_tn;
    auto run_tile = [&](std::int64_t t) {
        const i64 ti = t / tn, tj = t % tn;
        const i64 i0 = std::min(p.M, mb * ti / tm * MR), i1 = std::min(p.M, mb * (ti + 1) / tm * MR);
        const i64 j0 = std::min(p.N, nb * tj / tn * NR), j1 = std::min(p.N, nb * (tj + 1) / tn * NR);
        if (i0 < i1 && j0 < j1) sgemm_tile<Arch>(p, i0, i1, j0, j1);
    };
    if (tm * tn == 1)
        run_tile(0);
    else
        parallel_for(tm * tn, run_tile);
}

// C = beta · C, not reading C when beta == 0 (the whole product when K == 0 or alpha == 0).
inline void scale_c(const Problem& p) {
    for (i64 i = 0; i < p.M; ++i) {
        float* c = p.C + i * p.ldc;
        if (p.beta == 0.0f)
            std::fill(c, c + p.N, 0.0f);
        else if (p.beta != 1.0f)
            for (i64 j = 0; j < p.N; ++j) c[j] *= p.beta;
    }
}

}  // namespace sgemm_detail

// sgemm with the kernel of `level`; throws pickscore::Error if this CPU cannot run it.
inline void sgemm_with(SimdLevel level, ops::Trans ta, ops::Trans tb, std::int64_t M, std::int64_t N,
                       std::int64_t K, float alpha, const float* A, std::int64_t lda, const float* B,
                       std::int64_t ldb, float beta, float* C, std::int64_t ldc) {
    using namespace sgemm_detail;
    require(simd_supported(level), "sgemm: this CPU cannot run the ", simd_name(level), " kernel");
    require(M >= 0 && N >= 0 && K >= 0, "sgemm: negative size M=", M, " N=", N, " K=", K);
    if (M == 0 || N == 0) return;
    require(ldc >= N, "sgemm: ldc=", ldc, " is less than N=", N);
    const Problem p{ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
    if (K == 0 || alpha == 0.0f) {
        scale_c(p);
        return;
    }
    require(lda >= (ta == ops::Trans::N ? K : M), "sgemm: lda=", lda, " is less than the width of A");
    require(ldb >= (tb == ops::Trans::N ? N : K), "sgemm: ldb=", ldb, " is less than the width of B");
    switch (level) {
#ifdef PICKSCORE_SGEMM_X86
        case SimdLevel::avx512: sgemm_threaded<Avx512Arch>(p); return;
        case SimdLevel::avx2: sgemm_threaded<Avx2Arch>(p); return;
#endif
        default: sgemm_threaded<ScalarArch>(p); return;
    }
}

// C[M,N] = alpha · op(A) · op(B) + beta · C with the best kernel this CPU supports.
inline void sgemm(ops::Trans ta, ops::Trans tb, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                  const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
                  std::int64_t ldc) {
    sgemm_with(detected_simd(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace pickscore::cpu
