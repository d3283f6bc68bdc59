// The CUDA backend's host side: the stream-ordered caching allocator, Storage/Tensor<T, Cuda>, the
// explicit copies, contexts, error messages, and the cuBLASLt mapping (blas::matmul and the ops
// of ops/gemm.hpp on CUDA tensors) against the CPU, on awkward shapes and with every epilogue.
// Runs under PICKSCORE_CUDA_EMULATION in every build, and on a GPU when one is present
// (tests/cuda/, linked with pickscore::cuda).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "support/cuda_compare.hpp"
#include <pickscore/core/arena.hpp>
#include <pickscore/core/random.hpp>
#include <pickscore/cuda/blas.hpp>
#include <pickscore/cuda/context.hpp>
#include <pickscore/cuda/libraries.hpp>
#include <pickscore/cuda/storage.hpp>
#include <pickscore/ops/gemm.hpp>

using namespace pickscore;
namespace cu = pickscore::cuda;
using ops::Trans;

namespace {

using test::as_double;
using test::random_host;

template <class F>
std::string error_of(F&& body) {
    try {
        body();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// Unit roundoff of the f32 accumulation, and of the rounding to the element type.
constexpr double kEpsF32 = 0x1.0p-24;
template <class T>
constexpr double kEpsOut = std::is_same_v<T, float> ? 0x1.0p-24 : 0x1.0p-8;

double gelu_tanh(double x) {
    const double k = std::sqrt(2.0 / 3.141592653589793);
    return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}
double gelu_tanh_grad(double x) {
    const double k = std::sqrt(2.0 / 3.141592653589793);
    const double t = std::tanh(k * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
}

}  // namespace

// ---- allocator, storage, contexts -------------------------------------------------------------------------

TEST_CASE("size classes: 512-byte steps up to 1 MiB, then at most 12.5% over the request") {
    using A = cu::Allocator;
    CHECK(A::size_class(1) == 512);
    CHECK(A::size_class(512) == 512);
    CHECK(A::size_class(513) == 1024);
    CHECK(A::size_class(std::size_t(1) << 20) == std::size_t(1) << 20);
    CHECK(A::size_class((std::size_t(1) << 20) + 1) == (std::size_t(1) << 20) + (std::size_t(1) << 17));
    for (std::size_t n = 1; n < (std::size_t(1) << 26); n = n * 3 / 2 + 7) {
        const std::size_t c = A::size_class(n);
        CHECK(c >= n);
        CHECK(double(c) <= double(n) * 1.125 + 512);
        CHECK(A::size_class(c) == c);  // a class is its own class: blocks are reused for it
    }
}

TEST_CASE("the allocator reuses a freed block without calling cudaMalloc") {
    cu::Context ctx;
    cu::ContextGuard use(ctx);
    cu::Allocator& a = ctx.allocator();
    const cu::AllocatorStats s0 = a.stats();
    void* first = nullptr;
    {
        Tensor<float, Cuda> t(Shape{1000});
        first = t.data();
        CHECK(a.stats().device_allocations == s0.device_allocations + 1);
        CHECK(a.stats().bytes_in_use == s0.bytes_in_use + 4096);
    }
    const cu::AllocatorStats s1 = a.stats();
    CHECK(s1.bytes_in_use == s0.bytes_in_use);
    CHECK(s1.bytes_cached == s0.bytes_cached + 4096);
#if defined(PICKSCORE_CUDA_EMULATION)
    const std::size_t mallocs = cu::emu::memory_stats().malloc_calls;
#endif
    {
        Tensor<float, Cuda> t(Shape{1010});  // 4040 bytes: the same size class
        CHECK(static_cast<void*>(t.data()) == first);
        CHECK(a.stats().device_allocations == s1.device_allocations);
        CHECK(a.stats().reused == s1.reused + 1);
        Tensor<bf16, Cuda> other(Shape{5000});  // another class: a new block
        CHECK(a.stats().device_allocations == s1.device_allocations + 1);
        CHECK(a.stats().peak_bytes_in_use >= 4096 + 10240);
    }
#if defined(PICKSCORE_CUDA_EMULATION)
    CHECK(cu::emu::memory_stats().malloc_calls == mallocs + 1);
#endif
    const cu::AllocatorStats s2 = a.stats();
    a.trim();
    const cu::AllocatorStats s3 = a.stats();
    CHECK(s3.bytes_cached == 0);
    CHECK(s3.device_frees == s2.device_frees + 2);
    { Tensor<float, Cuda> t(Shape{1000}); }
    CHECK(a.stats().device_allocations == s3.device_allocations + 1);  // the cache was given back
}

TEST_CASE("tensors may outlive their context; its blocks are then freed on return") {
#if defined(PICKSCORE_CUDA_EMULATION)
    const std::size_t live0 = cu::emu::memory_stats().live_allocations;
#endif
    Tensor<float, Cuda> survivor;
    {
        cu::Context ctx;
        cu::ContextGuard use(ctx);
        survivor = Tensor<float, Cuda>(Shape{64});
        Tensor<float, Cuda> cached(Shape{128});
    }
    CHECK(survivor.data() != nullptr);
    survivor = Tensor<float, Cuda>();
#if defined(PICKSCORE_CUDA_EMULATION)
    CHECK(cu::emu::memory_stats().live_allocations == live0);
#endif
}

TEST_CASE("the current context follows the guards") {
    cu::Context a, b;
    cu::Context& before = cu::current();
    {
        cu::ContextGuard ga(a);
        CHECK(&cu::current() == &a);
        {
            cu::ContextGuard gb(b);
            CHECK(&cu::current() == &b);
            Tensor<float, Cuda> t(Shape{10});  // from b's allocator
            CHECK(b.allocator().stats().bytes_in_use == 512);
            CHECK(a.allocator().stats().bytes_in_use == 0);
        }
        CHECK(&cu::current() == &a);
    }
    CHECK(&cu::current() == &before);
    CHECK(&before == &cu::default_context());
    CHECK(a.stream() != b.stream());
}

TEST_CASE("storage moves, explicit contexts and arenas") {
    cu::Context ctx;
    Tensor<float, Cuda> a(Shape{3, 4}, ctx);
    CHECK(ctx.allocator().stats().bytes_in_use == 512);
    Tensor<float, Cuda> b = std::move(a);
    CHECK(a.data() == nullptr);
    CHECK(b.data() != nullptr);
    CHECK(b.shape() == Shape{3, 4});
    ArenaPlan plan;
    plan.add<float>(Shape{100});
    plan.add<bf16>(Shape{7, 3});
    Arena<Cuda> arena(plan.bytes(), ctx);
    auto x = arena.alloc<float>(Shape{100});
    auto y = arena.alloc<bf16>(Shape{7, 3});
    CHECK(reinterpret_cast<std::uintptr_t>(y.data()) % 64 == 0);
    CHECK(reinterpret_cast<std::byte*>(y.data()) - reinterpret_cast<std::byte*>(x.data()) == 448);
#if defined(PICKSCORE_CUDA_EMULATION)
    CHECK(cu::emu::is_device_memory(x.data(), x.bytes()));
    CHECK(cu::emu::is_device_memory(y.data(), y.bytes()));
#endif
}

TEST_CASE("copies between host and device round-trip exactly") {
    Rng rng(3);
    auto hf = random_host<float>(Shape{5, 257}, rng);
    auto hb = random_host<bf16>(Shape{33}, rng);
    Tensor<std::int32_t, Cpu> hi(Shape{4, 3});
    for (std::int64_t i = 0; i < hi.numel(); ++i) hi[i] = std::int32_t(i * 7 - 20);

    auto df = cu::to_device(hf.view());
    Tensor<float, Cuda> df2(df.shape());
    cu::copy(df2.view(), df.cview());  // device to device
    auto back = cu::to_host(df2.view());
    CHECK(std::equal(back.begin(), back.end(), hf.begin()));
    auto rows = cu::to_host(df.slice(2, 4));  // a view of rows 2..3
    CHECK(rows.shape() == Shape{2, 257});
    CHECK(rows.at(1, 256) == hf.at(3, 256));

    auto db = cu::to_device(hb.view());
    auto bb = cu::to_host(db.view());
    for (std::int64_t i = 0; i < hb.numel(); ++i) CHECK(bb[i].bits == hb[i].bits);
    auto di = cu::to_device(hi.view());
    Tensor<std::int32_t, Cpu> bi(hi.shape());
    cu::copy(bi.view(), di.cview());
    cu::synchronize();
    CHECK(std::equal(bi.begin(), bi.end(), hi.begin()));

    cu::zero(df.view());
    auto z = cu::to_host(df.view());
    CHECK(std::all_of(z.begin(), z.end(), [](float v) { return v == 0.0f; }));

    Tensor<float, Cpu> wrong(Shape{257, 5});
    const std::string msg = error_of([&] { cu::copy(wrong.view(), df.cview()); });
    CHECK(contains(msg, "cuda::copy (device to host)"));
    CHECK(contains(msg, "[257, 5]"));
    CHECK(contains(msg, "[5, 257]"));
}

TEST_CASE("CUDA and library errors name the call and the error") {
    std::string msg;
    try {
        cu::check(cudaErrorInvalidValue, "cudaSomething");
    } catch (const cu::CudaError& e) {
        msg = e.what();
        CHECK(e.code() == int(cudaErrorInvalidValue));
        CHECK(e.library() == "CUDA");
    }
    CHECK(contains(msg, "cudaSomething failed"));
    CHECK(contains(msg, "cudaErrorInvalidValue"));
    CHECK(contains(msg, "invalid argument"));
    CHECK(contains(msg, "test_cuda_runtime.cpp"));  // where the check is
    msg = error_of([] { cu::check(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmul"); });
    CHECK(contains(msg, "cublasLtMatmul failed"));
    CHECK(contains(msg, "CUBLAS_STATUS_NOT_SUPPORTED"));
    msg = error_of([] { cu::check(CUDNN_STATUS_BAD_PARAM, "cudnnSetStream"); });
    CHECK(contains(msg, "cudnnSetStream failed"));
    CHECK(contains(msg, "CUDNN_STATUS_BAD_PARAM"));
    CHECK(error_of([] { cu::check(cudaSuccess, "cudaNothing"); }).empty());
#if defined(PICKSCORE_CUDA_EMULATION)
    // The emulated runtime knows device memory from host memory, and says which is which.
    std::vector<float> host(16);
    msg = error_of([&] { cu::check(cudaMemcpy(host.data(), host.data(), 64, cudaMemcpyHostToDevice), "cudaMemcpy"); });
    CHECK(contains(msg, "destination"));
    CHECK(contains(msg, "is not device memory"));
    CHECK(cudaGetLastError() == cudaSuccess);  // the failed check cleared it
#endif
}

TEST_CASE("the context owns library handles bound to its stream") {
    cu::Context ctx;
    CHECK(ctx.blaslt() != nullptr);
    CHECK(ctx.blaslt() == ctx.blaslt());
    CHECK(ctx.blas() != nullptr);
    CHECK(ctx.dnn() != nullptr);
    CHECK(ctx.blas_workspace() != nullptr);
    CHECK(ctx.allocator().stats().bytes_in_use >= ctx.blas_workspace_bytes());
    ctx.synchronize();
}

// ---- GEMM through cuBLASLt against the CPU ------------------------------------------------------------------

namespace {

struct GemmCase {
    std::int64_t M, N, K;
    Trans ta, tb;
    double alpha, beta;
};

// Awkward shapes: 257 rows, odd widths, single rows and columns, K = 1.
const GemmCase kGemmCases[] = {
    {257, 33, 65, Trans::N, Trans::T, 1.0, 0.0}, {1, 7, 13, Trans::T, Trans::N, 0.5, 2.0},
    {31, 1, 5, Trans::T, Trans::T, 1.0, 1.0},    {16, 16, 16, Trans::N, Trans::N, -1.0, 0.5},
    {77, 80, 1, Trans::N, Trans::T, 1.0, 0.0},   {9, 40, 257, Trans::T, Trans::N, 1.0, 0.0},
};

// Reference C = alpha·op(A)·op(B) + beta·C0 in double, and Σ|terms| per element (the scale of
// the rounding error of any summation order).
void reference_gemm(const GemmCase& c, std::int64_t batch, const std::vector<double>& A, const std::vector<double>& B,
                    const std::vector<double>& C0, std::vector<double>& ref, std::vector<double>& scale) {
    const std::int64_t M = c.M, N = c.N, K = c.K;
    ref.assign(std::size_t(batch * M * N), 0.0);
    scale.assign(ref.size(), 0.0);
    for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t i = 0; i < M; ++i)
            for (std::int64_t j = 0; j < N; ++j) {
                double s = 0, sa = 0;
                for (std::int64_t k = 0; k < K; ++k) {
                    const double a = c.ta == Trans::N ? A[std::size_t(b * M * K + i * K + k)] : A[std::size_t(b * M * K + k * M + i)];
                    const double bb = c.tb == Trans::N ? B[std::size_t(b * K * N + k * N + j)] : B[std::size_t(b * K * N + j * K + k)];
                    s += a * bb;
                    sa += std::abs(a * bb);
                }
                const std::size_t o = std::size_t(b * M * N + i * N + j);
                ref[o] = c.alpha * s + c.beta * C0[o];
                scale[o] = std::abs(c.alpha) * sa + std::abs(c.beta * C0[o]);
            }
}

// f32: within the worst-case rounding bound of a length-K dot product (Higham: γ_K Σ|a||b|),
// doubled for alpha/beta. bf16: at most twice as far from the f64 reference as the CPU backend's
// bf16 result (the same computation by an independent implementation), plus a hair for ties.
template <class T>
void check_against(const char* what, const std::vector<double>& got, const std::vector<double>& ref,
                   const std::vector<double>& scale, std::int64_t K, const std::vector<double>* cpu) {
    REQUIRE(got.size() == ref.size());
    if constexpr (std::is_same_v<T, float>) {
        for (std::size_t i = 0; i < got.size(); ++i) {
            const double tol = 2.0 * double(K + 2) * kEpsF32 * scale[i] + 1e-30;
            if (std::abs(got[i] - ref[i]) > tol) {
                FAIL_CHECK(what, ": element ", i, " is ", got[i], ", expected ", ref[i], " (tolerance ", tol, ")");
                return;
            }
        }
    } else {
        double err = 0, err_cpu = 0, mag = 0;
        for (std::size_t i = 0; i < got.size(); ++i) {
            err = std::max(err, std::abs(got[i] - ref[i]));
            err_cpu = std::max(err_cpu, std::abs((*cpu)[i] - ref[i]));
            mag = std::max(mag, std::abs(ref[i]));
        }
        CHECK_MESSAGE(err <= 2.0 * err_cpu + 1e-6 * mag, what, ": bf16 error ", err, " vs the CPU's ", err_cpu);
    }
}

template <class T>
void gemm_matches_cpu() {
    Rng rng(11);
    for (const GemmCase& c : kGemmCases) {
        for (std::int64_t batch : {std::int64_t(0), std::int64_t(1), std::int64_t(3)}) {  // 0: ops::gemm, else gemm_batched
            const std::int64_t nb = std::max<std::int64_t>(batch, 1);
            const Shape sa = c.ta == Trans::N ? Shape{c.M, c.K} : Shape{c.K, c.M};
            const Shape sb = c.tb == Trans::N ? Shape{c.K, c.N} : Shape{c.N, c.K};
            const Shape sc{c.M, c.N};
            auto A = random_host<T>(batch ? sa.prepend(nb) : sa, rng);
            auto B = random_host<T>(batch ? sb.prepend(nb) : sb, rng);
            auto C = random_host<T>(batch ? sc.prepend(nb) : sc, rng);
            auto dA = cu::to_device(A.view());
            auto dB = cu::to_device(B.view());
            auto dC = cu::to_device(C.view());
            Tensor<T, Cpu> Ccpu = clone(C.view());
            if (batch) {
                ops::gemm_batched<T>(dC, dA, dB, c.ta, c.tb, c.alpha, c.beta);
                ops::gemm_batched<T>(Ccpu, A, B, c.ta, c.tb, c.alpha, c.beta);
            } else {
                ops::gemm<T>(dC, dA, dB, c.ta, c.tb, c.alpha, c.beta);
                ops::gemm<T>(Ccpu, A, B, c.ta, c.tb, c.alpha, c.beta);
            }
            std::vector<double> ref, scale;
            reference_gemm(c, nb, as_double(A.cview()), as_double(B.cview()), as_double(C.cview()), ref, scale);
            const auto got = as_double(cu::to_host(dC.view()).cview());
            const auto cpu = as_double(Ccpu.cview());
            const std::string what = "gemm " + std::to_string(c.M) + "x" + std::to_string(c.N) + "x" +
                                     std::to_string(c.K) + " batch " + std::to_string(batch);
            check_against<T>(what.c_str(), got, ref, scale, c.K, &cpu);
        }
    }
}

}  // namespace

TEST_CASE("ops::gemm and gemm_batched on CUDA tensors match the CPU (f32)") { gemm_matches_cpu<float>(); }
TEST_CASE("ops::gemm and gemm_batched on CUDA tensors match the CPU (bf16)") { gemm_matches_cpu<bf16>(); }

namespace {

template <class T>
void linear_matches_cpu() {
    struct Case {
        Shape x;
        std::int64_t n;
        bool bias;
    };
    const Case cases[] = {{Shape{2, 257, 13}, 7, true}, {Shape{1, 5}, 3, true}, {Shape{1, 77, 80}, 19, false},
                          {Shape{9, 31}, 33, true},     {Shape{4}, 6, true},    {Shape{257, 64}, 40, true}};
    Rng rng(5);
    for (const Case& c : cases) {
        const std::int64_t K = c.x[-1], N = c.n, M = c.x.rows();
        Shape ys;
        for (int i = 0; i + 1 < c.x.rank(); ++i) ys.push_back(c.x[i]);
        ys.push_back(N);
        auto x = random_host<T>(c.x, rng);
        auto W = random_host<T>(Shape{N, K}, rng, 1.0 / std::sqrt(double(K)));
        auto b = c.bias ? random_host<T>(Shape{N}, rng) : Tensor<T, Cpu>();
        auto dy = random_host<T>(ys, rng);
        auto dW0 = random_host<T>(W.shape(), rng);  // gradients accumulate: start from non-zero
        auto db0 = c.bias ? random_host<T>(Shape{N}, rng) : Tensor<T, Cpu>();
        auto gx = cu::to_device(x.view()), gW = cu::to_device(W.view()), gdy = cu::to_device(dy.view());
        auto gb = c.bias ? cu::to_device(b.view()) : Tensor<T, Cuda>();
        Tensor<T, Cuda> gy(ys), gdx(c.x);
        auto gdW = cu::to_device(dW0.view());
        auto gdb = c.bias ? cu::to_device(db0.view()) : Tensor<T, Cuda>();
        ops::linear_forward<T>(gy, gx, gW, gb);
        ops::linear_backward<T>(gdx, gdW, gdb, gdy, gx, gW);
        // CPU backend, same element type
        Tensor<T, Cpu> y(ys), dx(c.x);
        auto dW = clone(dW0.view());
        auto db = c.bias ? clone(db0.view()) : Tensor<T, Cpu>();
        ops::linear_forward<T>(y, x, W, b);
        ops::linear_backward<T>(dx, dW, db, dy, x, W);
        // f64 references
        const auto X = as_double(x.cview()), Wd = as_double(W.cview()), DY = as_double(dy.cview());
        std::vector<double> ry(std::size_t(M * N)), sy(ry.size()), rdx(std::size_t(M * K)), sdx(rdx.size());
        std::vector<double> rdW(std::size_t(N * K)), sdW(rdW.size()), rdb(static_cast<std::size_t>(N)), sdb(rdb.size());
        const auto dW0d = as_double(dW0.cview());
        for (std::int64_t i = 0; i < M; ++i)
            for (std::int64_t j = 0; j < N; ++j) {
                double s = c.bias ? cast<double>(b[j]) : 0.0, sa = std::abs(s);
                for (std::int64_t k = 0; k < K; ++k) {
                    s += X[std::size_t(i * K + k)] * Wd[std::size_t(j * K + k)];
                    sa += std::abs(X[std::size_t(i * K + k)] * Wd[std::size_t(j * K + k)]);
                }
                ry[std::size_t(i * N + j)] = s;
                sy[std::size_t(i * N + j)] = sa;
            }
        for (std::int64_t i = 0; i < M; ++i)
            for (std::int64_t k = 0; k < K; ++k) {
                double s = 0, sa = 0;
                for (std::int64_t j = 0; j < N; ++j) {
                    s += DY[std::size_t(i * N + j)] * Wd[std::size_t(j * K + k)];
                    sa += std::abs(DY[std::size_t(i * N + j)] * Wd[std::size_t(j * K + k)]);
                }
                rdx[std::size_t(i * K + k)] = s;
                sdx[std::size_t(i * K + k)] = sa;
            }
        for (std::int64_t j = 0; j < N; ++j) {
            for (std::int64_t k = 0; k < K; ++k) {
                double s = dW0d[std::size_t(j * K + k)], sa = std::abs(s);
                for (std::int64_t i = 0; i < M; ++i) {
                    s += DY[std::size_t(i * N + j)] * X[std::size_t(i * K + k)];
                    sa += std::abs(DY[std::size_t(i * N + j)] * X[std::size_t(i * K + k)]);
                }
                rdW[std::size_t(j * K + k)] = s;
                sdW[std::size_t(j * K + k)] = sa;
            }
            if (c.bias) {
                double s = cast<double>(db0[j]), sa = std::abs(s);
                for (std::int64_t i = 0; i < M; ++i) {
                    s += DY[std::size_t(i * N + j)];
                    sa += std::abs(DY[std::size_t(i * N + j)]);
                }
                rdb[std::size_t(j)] = s;
                sdb[std::size_t(j)] = sa;
            }
        }
        const std::string tag = "linear " + c.x.str() + " -> " + std::to_string(N);
        const auto cy = as_double(y.cview()), cdx = as_double(dx.cview()), cdW = as_double(dW.cview());
        check_against<T>((tag + " y").c_str(), as_double(cu::to_host(gy.view()).cview()), ry, sy, K + 1, &cy);
        check_against<T>((tag + " dx").c_str(), as_double(cu::to_host(gdx.view()).cview()), rdx, sdx, N, &cdx);
        check_against<T>((tag + " dW").c_str(), as_double(cu::to_host(gdW.view()).cview()), rdW, sdW, M + 1, &cdW);
        if (c.bias) {
            const auto cdb = as_double(db.cview());
            // The bias gradient is summed into a scratch vector, rounded to T, then added to db:
            // one more rounding than the CPU's, so the bf16 bound is applied per element below.
            const auto gdbh = as_double(cu::to_host(gdb.view()).cview());
            if constexpr (std::is_same_v<T, float>) {
                check_against<T>((tag + " db").c_str(), gdbh, rdb, sdb, M + 2, &cdb);
            } else {
                for (std::size_t j = 0; j < rdb.size(); ++j)
                    CHECK_MESSAGE(std::abs(gdbh[j] - rdb[j]) <= 3 * kEpsOut<T> * sdb[j] + 1e-12, tag, " db[", j, "]");
            }
        }
    }
}

}  // namespace

TEST_CASE("ops::linear_forward/backward on CUDA tensors match the CPU (f32)") { linear_matches_cpu<float>(); }
TEST_CASE("ops::linear_forward/backward on CUDA tensors match the CPU (bf16)") { linear_matches_cpu<bf16>(); }

// ---- blas::matmul epilogues -----------------------------------------------------------------------------------

namespace {

using cu::blas::Epilogue;

template <class T>
void epilogue_case(Epilogue ep, std::int64_t M, std::int64_t N, std::int64_t K, Trans ta, Trans tb, bool with_aux,
                   bool forced_fallback) {
    Rng rng(std::uint64_t(M * 1000 + N * 10 + K + int(ep) * 7919));
    const Shape sa = ta == Trans::N ? Shape{M, K} : Shape{K, M};
    const Shape sb = tb == Trans::N ? Shape{K, N} : Shape{N, K};
    auto A = random_host<T>(sa, rng), B = random_host<T>(sb, rng), C = random_host<T>(Shape{M, N}, rng);
    auto bias = random_host<T>(Shape{N}, rng);
    auto aux_in = random_host<T>(Shape{M, N}, rng);
    const bool is_dgelu = ep == Epilogue::dgelu_tanh || ep == Epilogue::dgelu_tanh_bgrad;
    const bool is_gelu = ep == Epilogue::gelu_tanh || ep == Epilogue::bias_gelu_tanh;
    const bool has_bias = ep == Epilogue::bias || ep == Epilogue::bias_gelu_tanh;
    const bool has_grad = ep == Epilogue::dgelu_tanh_bgrad || ep == Epilogue::bgrad_a || ep == Epilogue::bgrad_b;
    const std::int64_t grad_len = ep == Epilogue::bgrad_a ? M : N;
    const float alpha = 0.75f, beta = 0.5f;

    auto dA = cu::to_device(A.view()), dB = cu::to_device(B.view()), dC = cu::to_device(C.view());
    auto dbias = cu::to_device(bias.view());
    auto daux = cu::to_device(aux_in.view());  // read by dgelu, overwritten by gelu
    Tensor<T, Cuda> dgrad(Shape{grad_len});
    cu::blas::Gemm g;
    g.dtype = dtype_of<T>;
    g.ta = ta;
    g.tb = tb;
    g.M = M;
    g.N = N;
    g.K = K;
    g.A = dA.data();
    g.lda = sa[1];
    g.B = dB.data();
    g.ldb = sb[1];
    g.C = dC.data();
    g.ldc = N;
    g.alpha = alpha;
    g.beta = beta;
    g.epilogue = ep;
    if (has_bias) g.bias = dbias.data();
    if (has_grad) g.bias_grad = dgrad.data();
    if (is_dgelu || (is_gelu && with_aux)) {
        g.aux = daux.data();
        g.ldaux = N;
    }
    cu::blas::matmul(g);
#if defined(PICKSCORE_CUDA_EMULATION)
    // The emulated cuBLASLt, like the real one, wants the aux leading dimension divisible by 8.
    const bool lt_possible = !forced_fallback && (g.aux == nullptr || N % 8 == 0);
    CHECK(cu::blas::last_path() == (lt_possible ? cu::blas::Path::lt_epilogue : cu::blas::Path::fallback_epilogue));
#else
    (void)forced_fallback;
#endif
    const auto got = as_double(cu::to_host(dC.view()).cview());
    const auto got_aux = as_double(cu::to_host(daux.view()).cview());
    const auto got_grad = has_grad ? as_double(cu::to_host(dgrad.view()).cview()) : std::vector<double>();

    const auto a = as_double(A.cview()), b = as_double(B.cview()), c0 = as_double(C.cview());
    const auto bi = as_double(bias.cview()), ax = as_double(aux_in.cview());
    auto opA = [&](std::int64_t i, std::int64_t k) { return ta == Trans::N ? a[std::size_t(i * K + k)] : a[std::size_t(k * M + i)]; };
    auto opB = [&](std::int64_t k, std::int64_t j) { return tb == Trans::N ? b[std::size_t(k * N + j)] : b[std::size_t(j * K + k)]; };
    // Tolerances: f32 — the worst-case rounding bound of the K-term sums (γ_K·Σ|terms|, times 4
    // for alpha/beta/bias and the GELU's slope ≤ 1.13) plus a few roundings of the result;
    // bf16 — up to three roundings to bf16 of the terms' scale (the fallback rounds after the
    // GEMM, after the bias and after the activation).
    const double acc_tol = std::is_same_v<T, float> ? 4.0 * double(K + 4) * kEpsF32 : 3.0 * kEpsOut<T>;
    std::vector<double> d(std::size_t(M * N)), dtol(d.size());
    for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < N; ++j) {
            double s = 0, sabs = 0;
            for (std::int64_t k = 0; k < K; ++k) {
                s += opA(i, k) * opB(k, j);
                sabs += std::abs(opA(i, k) * opB(k, j));
            }
            const std::size_t o = std::size_t(i * N + j);
            double t = alpha * s + beta * c0[o];
            double scale = alpha * sabs + beta * std::abs(c0[o]);
            if (has_bias) {
                t += bi[std::size_t(j)];
                scale += std::abs(bi[std::size_t(j)]);
            }
            // On a GPU, cuBLASLt may evaluate tanh with the hardware approximation (tanh.approx.f32,
            // absolute error below 2^-10.9): allowed there, not in the emulation, which uses tanhf.
#if defined(PICKSCORE_CUDA_EMULATION)
            const double tanh_err = 0.0;
#else
            const double tanh_err = 0x1.0p-10;
#endif
            double act_err = 0.0;
            double out = t;
            if (is_gelu) {
                act_err = 0.5 * std::abs(t) * tanh_err;
                out = gelu_tanh(t);
                if (with_aux)
                    CHECK_MESSAGE(std::abs(got_aux[o] - t) <= acc_tol * scale + 4 * kEpsOut<T> * std::abs(t), "aux ", i, ",", j);
            } else if (is_dgelu) {
                // gelu' evaluated in f32 carries an absolute error of a few ulps of its O(1) terms
                // (0.5·(1 + tanh) cancels for negative arguments): that error times |t| is allowed.
                const double gp = gelu_tanh_grad(ax[o]);
                act_err = std::abs(t) * tanh_err * (0.5 + std::abs(ax[o]) * (1.0 + 0.14 * ax[o] * ax[o]));
                out = t * gp;
                scale = scale * std::abs(gp) + 16.0 * (1.0 + std::abs(ax[o])) * std::abs(t) * kEpsF32 / acc_tol;
            }
            d[o] = out;
            const double tol = acc_tol * scale + 4 * kEpsOut<T> * std::abs(out) + act_err + 1e-30;
            dtol[o] = tol;
            if (std::abs(got[o] - out) > tol) {
                FAIL_CHECK("epilogue ", int(ep), " ", M, "x", N, "x", K, ": C[", i, ",", j, "] = ", got[o], ", expected ",
                           out, " (tolerance ", tol, ")");
                return;
            }
        }
    if (!has_grad) return;
    for (std::int64_t v = 0; v < grad_len; ++v) {
        double s = 0, sabs = 0, terms_tol = 0;
        if (ep == Epilogue::dgelu_tanh_bgrad) {  // the sum of the checked outputs: their tolerances add up
            for (std::int64_t i = 0; i < M; ++i) {
                s += d[std::size_t(i * N + v)];
                sabs += std::abs(d[std::size_t(i * N + v)]);
                terms_tol += dtol[std::size_t(i * N + v)];
            }
        } else {
            for (std::int64_t k = 0; k < K; ++k) {
                const double x = ep == Epilogue::bgrad_a ? opA(v, k) : opB(k, v);
                s += x;
                sabs += std::abs(x);
            }
        }
        const double tol =
            terms_tol + (acc_tol + double(M + K + 4) * kEpsF32 * 2) * sabs + 4 * kEpsOut<T> * std::abs(s) + 1e-30;
        CHECK_MESSAGE(std::abs(got_grad[std::size_t(v)] - s) <= tol, "epilogue ", int(ep), " bias_grad[", v, "] = ",
                      got_grad[std::size_t(v)], ", expected ", s);
    }
}

template <class T>
void all_epilogues() {
    struct Shape3 {
        std::int64_t M, N, K;
    };
    const Shape3 shapes[] = {{257, 40, 33}, {5, 13, 7}, {1, 8, 1}};
#if defined(PICKSCORE_CUDA_EMULATION)
    const bool forced_options[] = {false, true};
#else
    const bool forced_options[] = {false};
#endif
    for (bool forced : forced_options) {
        // A fresh context per mode: algorithm choices (and refusals) are cached per context.
        cu::Context ctx;
        cu::ContextGuard use(ctx);
#if defined(PICKSCORE_CUDA_EMULATION)
        cu::emu::config().blaslt_unsupported_epilogues = forced ? ~0u : 0u;  // every epilogue, even DEFAULT
#endif
        for (const Shape3& s : shapes) {
            CAPTURE(forced);
            CAPTURE(s.M);
            CAPTURE(s.N);
            CAPTURE(s.K);
            for (Epilogue ep : {Epilogue::bias, Epilogue::dgelu_tanh, Epilogue::dgelu_tanh_bgrad})
                epilogue_case<T>(ep, s.M, s.N, s.K, Trans::N, Trans::T, false, forced);
            for (Epilogue ep : {Epilogue::gelu_tanh, Epilogue::bias_gelu_tanh})
                for (bool aux : {false, true}) epilogue_case<T>(ep, s.M, s.N, s.K, Trans::N, Trans::T, aux, forced);
            for (Trans ta : {Trans::N, Trans::T})
                for (Trans tb : {Trans::N, Trans::T}) {
                    epilogue_case<T>(Epilogue::bgrad_a, s.M, s.N, s.K, ta, tb, false, forced);
                    epilogue_case<T>(Epilogue::bgrad_b, s.M, s.N, s.K, ta, tb, false, forced);
                }
        }
#if defined(PICKSCORE_CUDA_EMULATION)
        cu::emu::config().blaslt_unsupported_epilogues = 0;
#endif
    }
}

}  // namespace

TEST_CASE("blas::matmul epilogues: bias, GELU (tanh), dGELU and bias gradients (f32)") { all_epilogues<float>(); }
TEST_CASE("blas::matmul epilogues: bias, GELU (tanh), dGELU and bias gradients (bf16)") { all_epilogues<bf16>(); }

TEST_CASE("GEMM argument errors name the op and the shapes") {
    Tensor<float, Cuda> A(Shape{4, 5}), B(Shape{6, 7}), C(Shape{4, 7});
    std::string msg = error_of([&] { ops::gemm<float>(C, A, B); });
    CHECK(contains(msg, "gemm"));
    CHECK(contains(msg, "[4, 5]"));
    CHECK(contains(msg, "[6, 7]"));
    cu::blas::Gemm g;
    g.M = 4;
    g.N = 7;
    g.K = 5;
    g.A = A.data();
    g.lda = 3;  // less than K
    g.B = B.data();
    g.ldb = 7;
    g.C = C.data();
    g.ldc = 7;
    msg = error_of([&] { cu::blas::matmul(g); });
    CHECK(contains(msg, "blas::matmul: lda = 3"));
    g.lda = 5;
    g.epilogue = Epilogue::bias;
    msg = error_of([&] { cu::blas::matmul(g); });
    CHECK(contains(msg, "needs a bias"));
    g.dtype = DType::f64;
    msg = error_of([&] { cu::blas::matmul(g); });
    CHECK(contains(msg, "f64"));
}

TEST_CASE("empty products: K = 0 scales C by beta; M = 0 leaves the parameter gradients alone") {
    Tensor<float, Cpu> h(Shape{3, 4});
    for (std::int64_t i = 0; i < h.numel(); ++i) h[i] = float(i);
    auto C = cu::to_device(h.view());
    Tensor<float, Cuda> A(Shape{3, 0}), B(Shape{0, 4});
    ops::gemm<float>(C, A, B, Trans::N, Trans::N, 1.0, 0.5);
    auto r = cu::to_host(C.view());
    for (std::int64_t i = 0; i < h.numel(); ++i) CHECK(r[i] == 0.5f * h[i]);

    Tensor<float, Cuda> x(Shape{0, 5}), dy(Shape{0, 3}), dx(Shape{0, 5}), W(Shape{3, 5});
    cu::zero(W.view());
    auto dW = cu::to_device(Tensor<float, Cpu>::full(Shape{3, 5}, 2.0f).view());
    auto db = cu::to_device(Tensor<float, Cpu>::full(Shape{3}, 3.0f).view());
    ops::linear_backward<float>(dx, dW, db, dy, x, W);
    auto hdW = cu::to_host(dW.view());
    auto hdb = cu::to_host(db.view());
    CHECK(std::all_of(hdW.begin(), hdW.end(), [](float v) { return v == 2.0f; }));
    CHECK(std::all_of(hdb.begin(), hdb.end(), [](float v) { return v == 3.0f; }));
}
