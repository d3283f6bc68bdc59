// The fast f32 GEMM (cpu/sgemm.hpp): every kernel this CPU supports, on 1 to 3 threads, against the
// double-precision reference, on shapes that hit every edge of the blocking (tiles, slices of K,
// blocks of M and N, thread tiles), all transposes, alpha/beta variants, beta == 0 over NaN,
// leading dimensions wider than the matrices, unaligned pointers, K == 0 and alpha == 0.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <pickscore/core/random.hpp>
#include <pickscore/core/threads.hpp>
#include <pickscore/cpu/gemm.hpp>

using namespace pickscore;
using ops::Trans;
using cpu::SimdLevel;

namespace {

constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();

std::vector<SimdLevel> supported_levels() {
    std::vector<SimdLevel> levels;
    for (SimdLevel l : {SimdLevel::scalar, SimdLevel::avx2, SimdLevel::avx512})
        if (cpu::simd_supported(l)) levels.push_back(l);
        else MESSAGE("sgemm: this CPU cannot run the " << cpu::simd_name(l) << " kernel; not tested here");
    return levels;
}

// A rows x cols matrix stored with leading dimension ld >= cols, `offset` floats into its buffer
// (offset 1 makes the matrix start unaligned). Padding (and the leading offset) holds `pad`.
struct Matrix {
    std::int64_t rows, cols, ld, offset;
    std::vector<float> buf;
    Matrix(std::int64_t r, std::int64_t c, std::int64_t extra_ld, std::int64_t off, float pad)
        : rows(r), cols(c), ld(c + extra_ld), offset(off), buf(std::size_t(off + r * (c + extra_ld) + 1), pad) {}
    float* data() { return buf.data() + offset; }
    float& at(std::int64_t i, std::int64_t j) { return buf[std::size_t(offset + i * ld + j)]; }
    void randomize(Rng& rng) {
        for (std::int64_t i = 0; i < rows; ++i)
            for (std::int64_t j = 0; j < cols; ++j) at(i, j) = float(rng.normal());
    }
};

// A GEMM under test: a name and C = alpha · op(A) · op(B) + beta · C.
struct Candidate {
    std::string name;
    std::function<void(Trans, Trans, std::int64_t, std::int64_t, std::int64_t, float, const float*, std::int64_t,
                       const float*, std::int64_t, float, float*, std::int64_t)>
        run;
};

#ifdef PICKSCORE_SGEMM_X86
// The AVX-512 blocking (12 x 32 tiles, its KC and MC) and its AVX2 packing with the portable
// kernel of the same tile, so that CPUs without AVX-512 test everything of that path but the
// micro-kernel's intrinsics.
struct Avx512BlockingPortableKernel : cpu::sgemm_detail::Avx512Arch {
    static void kernel(std::int64_t kc, const float* a, const float* b, float* c, std::int64_t ldc, int m, int n,
                       float alpha, float beta) {
        cpu::sgemm_detail::kernel_ref<MR, NR>(kc, a, b, c, ldc, m, n, alpha, beta);
    }
};
#endif

std::vector<Candidate> candidates() {
    std::vector<Candidate> list;
    for (SimdLevel level : supported_levels())
        list.push_back({std::string(cpu::simd_name(level)),
                        [level](Trans ta, Trans tb, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                                const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
                                std::int64_t ldc) {
                            cpu::sgemm_with(level, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
                        }});
#ifdef PICKSCORE_SGEMM_X86
    if (cpu::simd_supported(SimdLevel::avx2))
        list.push_back({"avx512 blocking, portable kernel",
                        [](Trans ta, Trans tb, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                           const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
                           std::int64_t ldc) {
                            const cpu::sgemm_detail::Problem p{ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
                            cpu::sgemm_detail::sgemm_threaded<Avx512BlockingPortableKernel>(p);
                        }});
#endif
    return list;
}

struct AlphaBeta {
    float alpha, beta;
};

std::string describe(const std::string& name, int threads, std::int64_t M, std::int64_t N, std::int64_t K, Trans ta, Trans tb,
                     AlphaBeta ab, std::int64_t extra_ld, std::int64_t offset) {
    std::ostringstream os;
    os << name << " threads=" << threads << " M=" << M << " N=" << N << " K=" << K
       << " ta=" << (ta == Trans::T ? "T" : "N") << " tb=" << (tb == Trans::T ? "T" : "N") << " alpha=" << ab.alpha
       << " beta=" << ab.beta << " extra_ld=" << extra_ld << " offset=" << offset;
    return os.str();
}

}  // namespace

TEST_CASE("every sgemm kernel agrees with the double reference on awkward shapes") {
    const std::vector<Candidate> gemms = candidates();
    REQUIRE(!gemms.empty());
    const int threads_before = num_threads();
    // {M, N, K}: single elements, 257 tokens x head dim 80, exact tiles and one more or less than a
    // tile of each kernel (6x16, 12x32, 4x8), slices of K just around KC (192, 256), blocks of M
    // around MC (240, 264), N around NC (4096), and a few shapes large enough to use several threads.
    const std::int64_t shapes[][3] = {
        {1, 1, 1},      {1, 17, 5},     {7, 1, 3},     {257, 80, 13},  {13, 257, 80}, {6, 16, 256},
        {5, 15, 255},   {7, 17, 257},   {12, 32, 192}, {11, 31, 191},  {13, 33, 193}, {4, 8, 9},
        {265, 40, 20},  {264, 48, 17},  {241, 33, 9},  {96, 4100, 3},  {100, 1280, 96}, {2056, 64, 40},
        {33, 70, 1000}, {263, 47, 300}, {3, 517, 129},
    };
    const AlphaBeta variants[] = {{1.0f, 0.0f}, {1.5f, -0.5f}, {-0.75f, 1.0f}};
    Rng rng(11);
    int case_no = 0;
    for (const auto& s : shapes) {
        const std::int64_t M = s[0], N = s[1], K = s[2];
        for (Trans ta : {Trans::N, Trans::T})
            for (Trans tb : {Trans::N, Trans::T})
                for (const AlphaBeta ab : variants) {
                    ++case_no;
                    // Every other case pads the leading dimensions and starts the matrices unaligned;
                    // the padding holds NaN, so reading it would show in the result.
                    const std::int64_t extra_ld = case_no % 2 ? 3 : 0, offset = case_no % 2 ? 1 : 0;
                    Matrix A(ta == Trans::N ? M : K, ta == Trans::N ? K : M, extra_ld, offset, nan_f);
                    Matrix B(tb == Trans::N ? K : N, tb == Trans::N ? N : K, extra_ld, offset, nan_f);
                    Matrix C0(M, N, extra_ld, offset, nan_f);
                    A.randomize(rng);
                    B.randomize(rng);
                    // With beta == 0 the old C must not be read at all: fill it with NaN.
                    if (ab.beta != 0.0f) C0.randomize(rng);

                    // The reference in double, and the same product of absolute values, which bounds
                    // the rounding error of any order of summation.
                    const std::int64_t ldr = N;
                    std::vector<double> Ad(std::size_t(A.rows * A.cols)), Bd(std::size_t(B.rows * B.cols));
                    std::vector<double> Aabs(Ad.size()), Babs(Bd.size());
                    std::vector<double> ref(std::size_t(M * N)), bound(std::size_t(M * N));
                    for (std::int64_t i = 0; i < A.rows; ++i)
                        for (std::int64_t j = 0; j < A.cols; ++j) {
                            Ad[std::size_t(i * A.cols + j)] = A.at(i, j);
                            Aabs[std::size_t(i * A.cols + j)] = std::fabs(A.at(i, j));
                        }
                    for (std::int64_t i = 0; i < B.rows; ++i)
                        for (std::int64_t j = 0; j < B.cols; ++j) {
                            Bd[std::size_t(i * B.cols + j)] = B.at(i, j);
                            Babs[std::size_t(i * B.cols + j)] = std::fabs(B.at(i, j));
                        }
                    for (std::int64_t i = 0; i < M; ++i)
                        for (std::int64_t j = 0; j < N; ++j) {
                            const double c = ab.beta != 0.0f ? double(C0.at(i, j)) : 0.0;
                            ref[std::size_t(i * N + j)] = c;
                            bound[std::size_t(i * N + j)] = std::fabs(c);
                        }
                    cpu::gemm_reference<double>(ta, tb, M, N, K, ab.alpha, Ad.data(), A.cols, Bd.data(), B.cols,
                                                ab.beta, ref.data(), ldr);
                    cpu::gemm_reference<double>(ta, tb, M, N, K, std::fabs(ab.alpha), Aabs.data(), A.cols,
                                                Babs.data(), B.cols, std::fabs(ab.beta), bound.data(), ldr);
                    // f32 with FMA: every partial sum is rounded once per term of K (unit roundoff
                    // u = 2^-24), plus a few roundings for alpha, beta and the slices of K, so
                    // |error| <= (K + small) · u · (|alpha| Σ|a||b| + |beta| |c|). Twice that, plus 8 u,
                    // leaves room for any summation order but not for a wrong or missing term
                    // (one term is ~1/K of the sum, far above K·u of it).
                    const double u = std::ldexp(1.0, -24);
                    const double factor = (2.0 * double(K) + 8.0) * u;

                    for (const Candidate& gemm : gemms)
                        for (int threads : {1, 2, 3}) {
                            set_num_threads(threads);
                            Matrix C = C0;
                            gemm.run(ta, tb, M, N, K, ab.alpha, A.data(), A.ld, B.data(), B.ld, ab.beta, C.data(),
                                     C.ld);
                            double worst = 0;  // the largest error as a fraction of its bound
                            bool finite = true, padding_kept = true;
                            for (std::int64_t i = 0; i < M; ++i) {
                                for (std::int64_t j = 0; j < N; ++j) {
                                    const double got = C.at(i, j), want = ref[std::size_t(i * N + j)];
                                    finite = finite && std::isfinite(got);
                                    const double tol = factor * bound[std::size_t(i * N + j)] + 1e-30;
                                    worst = std::max(worst, std::fabs(got - want) / tol);
                                }
                                for (std::int64_t j = N; j < C.ld; ++j) padding_kept = padding_kept && std::isnan(C.at(i, j));
                            }
                            const std::string what = describe(gemm.name, threads, M, N, K, ta, tb, ab, extra_ld, offset);
                            CHECK_MESSAGE(finite, what);
                            CHECK_MESSAGE(worst <= 1.0, what << " error/bound=" << worst);
                            CHECK_MESSAGE(padding_kept, what << ": wrote into the padding of C");
                        }
                }
    }
    set_num_threads(threads_before);
}

TEST_CASE("sgemm with K == 0 or alpha == 0 scales C by beta and reads neither A nor B") {
    for (SimdLevel level : supported_levels()) {
        const std::int64_t M = 5, N = 7;
        std::vector<float> C(M * N, nan_f);
        const float A[1] = {nan_f}, B[1] = {nan_f};
        // K == 0, beta == 0: C becomes zero even though it held NaN.
        cpu::sgemm_with(level, Trans::N, Trans::N, M, N, 0, 1.0f, A, 0, B, N, 0.0f, C.data(), N);
        for (float c : C) CHECK(c == 0.0f);
        for (std::int64_t i = 0; i < M * N; ++i) C[std::size_t(i)] = float(i);
        // K == 0, beta == 2: C doubles.
        cpu::sgemm_with(level, Trans::N, Trans::T, M, N, 0, 1.0f, A, 0, B, 0, 2.0f, C.data(), N);
        for (std::int64_t i = 0; i < M * N; ++i) CHECK(C[std::size_t(i)] == float(2 * i));
        // alpha == 0: A and B (NaN here) are not read; C = beta · C.
        std::vector<float> An(M * 3, nan_f), Bn(3 * N, nan_f);
        cpu::sgemm_with(level, Trans::N, Trans::N, M, N, 3, 0.0f, An.data(), 3, Bn.data(), N, -1.0f, C.data(), N);
        for (std::int64_t i = 0; i < M * N; ++i) CHECK(C[std::size_t(i)] == float(-2 * i));
        // M == 0 or N == 0: nothing happens.
        cpu::sgemm_with(level, Trans::N, Trans::N, 0, N, 3, 1.0f, An.data(), 3, Bn.data(), N, 0.0f, C.data(), N);
        cpu::sgemm_with(level, Trans::N, Trans::N, M, 0, 3, 1.0f, An.data(), 3, Bn.data(), 0, 0.0f, C.data(), 1);
        for (std::int64_t i = 0; i < M * N; ++i) CHECK(C[std::size_t(i)] == float(-2 * i));
    }
}

TEST_CASE("sgemm picks a supported kernel and refuses one the CPU lacks") {
    CHECK(cpu::simd_supported(cpu::detected_simd()));
    CHECK(cpu::simd_supported(SimdLevel::scalar));
    CHECK(cpu::simd_name(SimdLevel::avx2) == "avx2");
    CHECK(cpu::simd_name(SimdLevel::avx512) == "avx512");
    CHECK(cpu::simd_name(SimdLevel::scalar) == "scalar");
    // The detected level is the best one: nothing above it is supported.
    if (cpu::detected_simd() != SimdLevel::avx512) CHECK_FALSE(cpu::simd_supported(SimdLevel::avx512));
    if (cpu::detected_simd() == SimdLevel::scalar) CHECK_FALSE(cpu::simd_supported(SimdLevel::avx2));
    float A[1] = {1}, B[1] = {1}, C[1] = {0};
    for (SimdLevel l : {SimdLevel::avx2, SimdLevel::avx512})
        if (!cpu::simd_supported(l)) {
            try {
                cpu::sgemm_with(l, Trans::N, Trans::N, 1, 1, 1, 1.0f, A, 1, B, 1, 0.0f, C, 1);
                FAIL("no error for an unsupported kernel");
            } catch (const Error& e) {
                CHECK(std::string(e.what()).find(std::string(cpu::simd_name(l))) != std::string::npos);
            }
        }
    // Bad leading dimensions are refused, naming the argument.
    CHECK_THROWS_AS(cpu::sgemm(Trans::N, Trans::N, 1, 2, 1, 1.0f, A, 1, B, 1, 0.0f, C, 1), Error);
    // sgemm itself (the detected kernel) computes 1 x 1 x 1.
    A[0] = 3;
    B[0] = -2;
    cpu::sgemm(Trans::N, Trans::N, 1, 1, 1, 1.0f, A, 1, B, 1, 0.0f, C, 1);
    CHECK(C[0] == -6.0f);
}
