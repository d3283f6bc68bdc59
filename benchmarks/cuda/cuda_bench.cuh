// benchmarks/cuda/cuda_bench.cuh — what the GPU kernel benchmarks share (Google Benchmark, nvcc).
//
// How a benchmark here times (docs: benchmarking.md, "The GPU"):
//   - inputs are filled on the device with uniform random values (never zeros), and where one set
//     of inputs and outputs is smaller than 3x the L2 cache, several sets are allocated and the
//     calls rotate through them, so no call finds its inputs in L2 from the previous call;
//   - a warm-up (3 calls) runs first: module load, cuBLASLt heuristics, allocator growth;
//   - one benchmark iteration = a batch of `inner` back-to-back calls between two CUDA events on
//     the stream that pickscore's ops use (inner is chosen so a batch lasts >= ~200 us, so launch
//     gaps are amortised as they are when the host runs ahead of the GPU); the iteration's manual
//     time is the batch time / inner, i.e. the time of one call;
//   - Repetitions (PICKSCORE_BENCH_REPETITIONS, default 5) with aggregates only: read the median;
//     each repetition runs at least PICKSCORE_BENCH_MIN_TIME seconds (default 0.1) of GPU time.
//     Run with --benchmark_enable_random_interleaving=true so baseline and candidate repetitions
//     alternate (tools/gpu_check.sh does).
//
// What a benchmark reports (tools/gpu_check_summary.py reads the JSON output):
//   counters  "flops" = floating-point operations per second, "bytes" = bytes per second, each
//             counting the fewest operations / bytes the call must do or move (every input read
//             once, every output written once); absent where it does not apply;
//   label     "vs <name>" names the baseline benchmark (in the same program) this one is compared
//             with; the summary prints the ratio of the two rates.
// The two ceilings, measured in every program that calls register_ceilings():
//   BM_ceiling/copy       cudaMemcpyAsync device to device, 2 GiB, bytes read + written
//   BM_ceiling/gemm_bf16  raw cuBLASLt bf16 GEMM 8192 x 8192 x 8192 (fp32 accumulation), 2·M·N·K
// Every CUDA and cuBLASLt status is checked; a failure ends that benchmark with SkipWithError
// (guarded(); the summary shows it as an error), never the program.
#pragma once

#include <benchmark/benchmark.h>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <pickscore/core/dtype.hpp>
#include <pickscore/core/error.hpp>
#include <pickscore/core/tensor.hpp>
#include <pickscore/cuda/context.hpp>
#include <pickscore/cuda/runtime.hpp>
#include <pickscore/cuda/storage.hpp>

namespace pickscore::bench {

namespace cu = pickscore::cuda;

// ---- settings from the environment ---------------------------------------------------------------

inline double env_double(const char* name, double fallback) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return fallback;
    char* end = nullptr;
    const double d = std::strtod(v, &end);
    return (end != v && d > 0) ? d : fallback;
}

inline int repetitions() { return int(env_double("PICKSCORE_BENCH_REPETITIONS", 5)); }
inline double min_time() { return env_double("PICKSCORE_BENCH_MIN_TIME", 0.1); }

// ---- checks ------------------------------------------------------------------------------------

inline void check_blas(cublasStatus_t s, const char* call) {
    if (s != CUBLAS_STATUS_SUCCESS)
        fail(call, " failed: ", cublasLtGetStatusName(s), " (", cublasLtGetStatusString(s), ")");
}

// ---- random inputs on the device ---------------------------------------------------------------

namespace detail {
__device__ __forceinline__ std::uint64_t splitmix64(std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

template <class T>
__global__ void fill_uniform_kernel(T* x, std::int64_t n, float lo, float hi, std::uint64_t seed) {
    const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
    for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        // 24 random bits -> [0, 1)
        const float u = float(splitmix64(seed ^ (std::uint64_t(i) * 0xd1342543de82ef95ull)) >> 40) * 0x1.0p-24f;
        const float v = lo + (hi - lo) * u;
        if constexpr (std::is_same_v<T, float>) x[i] = v;
        else x[i] = __float2bfloat16(v);
    }
}

template <class T>
struct kernel_type {
    using type = T;
};
template <>
struct kernel_type<bf16> {
    using type = __nv_bfloat16;
};
}  // namespace detail

// t = uniform random values in [lo, hi) (f32 or bf16), queued on the current stream.
template <class T>
void fill_uniform(TensorView<T, Cuda> t, float lo, float hi, std::uint64_t seed) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "fill_uniform: f32 or bf16");
    const std::int64_t n = t.numel();
    if (n == 0) return;
    using K = typename detail::kernel_type<T>::type;
    const unsigned blocks = unsigned(std::min<std::int64_t>((n + 255) / 256, 132 * 16));
    detail::fill_uniform_kernel<K><<<blocks, 256, 0, cu::current().stream()>>>(reinterpret_cast<K*>(t.data()), n, lo,
                                                                                hi, seed);
    cu::check(cudaGetLastError(), "fill_uniform_kernel launch");
}

// ---- the device ----------------------------------------------------------------------------------

inline const cudaDeviceProp& device_properties() {
    static const cudaDeviceProp prop = [] {
        cudaDeviceProp p{};
        int dev = 0;
        cu::check(cudaGetDevice(&dev), "cudaGetDevice");
        cu::check(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
        return p;
    }();
    return prop;
}

inline std::int64_t l2_bytes() {
    const std::int64_t l2 = device_properties().l2CacheSize;
    return l2 > 0 ? l2 : (std::int64_t(50) << 20);
}

// How many input/output sets to rotate through so that a call never finds the previous call's
// data in L2: enough sets to cover 3x the L2 size, at most 64.
inline int rotation_sets(double bytes_per_set) {
    const double want = 3.0 * double(l2_bytes());
    if (bytes_per_set >= want) return 1;
    return int(std::clamp(std::ceil(want / std::max(bytes_per_set, 1.0)), 1.0, 64.0));
}

// Benchmark context (printed at the top and stored in the JSON): device, SMs, L2, versions.
inline void add_device_context() {
    const cudaDeviceProp& p = device_properties();
    int driver = 0, runtime = 0;
    (void)cudaDriverGetVersion(&driver);
    (void)cudaRuntimeGetVersion(&runtime);
    benchmark::AddCustomContext("cuda_device", p.name);
    benchmark::AddCustomContext("cuda_sm", std::to_string(p.major) + std::to_string(p.minor));
    benchmark::AddCustomContext("cuda_multiprocessors", std::to_string(p.multiProcessorCount));
    benchmark::AddCustomContext("cuda_l2_bytes", std::to_string(p.l2CacheSize));
    benchmark::AddCustomContext("cuda_memory_bytes", std::to_string(p.totalGlobalMem));
    benchmark::AddCustomContext("cuda_driver", std::to_string(driver));
    benchmark::AddCustomContext("cuda_runtime", std::to_string(runtime));
    benchmark::AddCustomContext("cublaslt_version", std::to_string(cublasLtGetVersion()));
}

// ---- timing ------------------------------------------------------------------------------------

class Events {
public:
    Events() {
        cu::check(cudaEventCreate(&start_), "cudaEventCreate");
        cu::check(cudaEventCreate(&stop_), "cudaEventCreate");
    }
    ~Events() {
        (void)cudaEventDestroy(start_);
        (void)cudaEventDestroy(stop_);
    }
    Events(const Events&) = delete;
    Events& operator=(const Events&) = delete;
    void start(cudaStream_t s) { cu::check(cudaEventRecord(start_, s), "cudaEventRecord"); }
    // Records the stop event, waits for it, and returns the seconds between the two events.
    double stop(cudaStream_t s) {
        cu::check(cudaEventRecord(stop_, s), "cudaEventRecord");
        cu::check(cudaEventSynchronize(stop_), "cudaEventSynchronize");
        cu::check(cudaGetLastError(), "a kernel of the timed batch");
        float ms = 0;
        cu::check(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
        return double(ms) * 1e-3;
    }

private:
    cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// The work of one call, for the rate counters (0 = not reported).
struct Work {
    double flops = 0;
    double bytes = 0;
};

// Runs body(); a pickscore::Error, CUDA or cuBLASLt failure ends the benchmark with SkipWithError
// (shown as an error in the output and the summary) instead of ending the program.
template <class Body>
void guarded(benchmark::State& state, Body&& body) {
    try {
        body();
    } catch (const std::exception& e) {
        state.SkipWithError(e.what());
    }
}

// Times call(i) (i = 0, 1, 2, ...: the call's index, for rotating through input sets) as described
// at the top of this file, and sets the counters and the label (baseline: the name of the benchmark
// this one is compared with, or empty). Call it inside guarded().
template <class Call>
void run_timed(benchmark::State& state, const Work& work, const std::string& baseline, Call&& call) {
    const cudaStream_t stream = cu::current().stream();
    Events ev;
    std::int64_t index = 0;
    for (int i = 0; i < 3; ++i) call(index++);  // warm-up
    ev.start(stream);
    call(index++);
    const double one = std::max(ev.stop(stream), 1e-7);
    const int inner = int(std::clamp(std::ceil(200e-6 / one), 1.0, 1000.0));
    for (auto _ : state) {
        ev.start(stream);
        for (int i = 0; i < inner; ++i) call(index++);
        state.SetIterationTime(ev.stop(stream) / inner);
    }
    if (work.flops > 0)
        state.counters["flops"] = benchmark::Counter(work.flops, benchmark::Counter::kIsIterationInvariantRate);
    if (work.bytes > 0)
        state.counters["bytes"] = benchmark::Counter(work.bytes, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["batch"] = inner;
    if (!baseline.empty()) state.SetLabel("vs " + baseline);
}

// Registration with the common settings (manual time, repetitions, aggregates only).
template <class Fn, class... Args>
benchmark::internal::Benchmark* add(const std::string& name, Fn&& fn, Args&&... args) {
    return benchmark::RegisterBenchmark(name.c_str(), std::forward<Fn>(fn), std::forward<Args>(args)...)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(min_time())
        ->Repetitions(repetitions())
        ->ReportAggregatesOnly(true);
}

// ---- raw cuBLASLt: the Linear layout y[M,N] = x[M,K] · W[N,K]ᵀ (+ bias[N]) --------------------
//
// In cuBLAS's column-major terms (as pickscore's blas::matmul maps it): D[N,M] = op(A)·B with
// A = W stored K x N (ld K) and op = T, B = x stored K x M (ld K), D = y stored N x M (ld N).
// Descriptors and the heuristic's first algorithm are set up once; run() only launches, with the
// context's stream and workspace (the same as pickscore's calls use).
class RawLinear {
public:
    RawLinear(std::int64_t M, std::int64_t N, std::int64_t K, bool bias, cudaDataType_t type = CUDA_R_16BF)
        : bias_(bias) {
        cu::Context& ctx = cu::current();
        handle_ = ctx.blaslt();
        check_blas(cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
        const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        check_blas(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "TRANSA");
        check_blas(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "TRANSB");
        if (bias) {
            const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
            check_blas(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)), "EPILOGUE");
        }
        check_blas(cublasLtMatrixLayoutCreate(&a_, type, std::uint64_t(K), std::uint64_t(N), K), "layout A");
        check_blas(cublasLtMatrixLayoutCreate(&b_, type, std::uint64_t(K), std::uint64_t(M), K), "layout B");
        check_blas(cublasLtMatrixLayoutCreate(&c_, type, std::uint64_t(N), std::uint64_t(M), N), "layout C");
        cublasLtMatmulPreference_t pref = nullptr;
        check_blas(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
        workspace_ = ctx.blas_workspace();
        workspace_bytes_ = ctx.blas_workspace_bytes();
        const std::uint64_t ws = workspace_bytes_;
        const cublasStatus_t s1 =
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
        cublasLtMatmulHeuristicResult_t result{};
        int returned = 0;
        const cublasStatus_t s2 = s1 != CUBLAS_STATUS_SUCCESS
                                      ? s1
                                      : cublasLtMatmulAlgoGetHeuristic(handle_, op_, a_, b_, c_, c_, pref, 1, &result,
                                                                       &returned);
        (void)cublasLtMatmulPreferenceDestroy(pref);
        check_blas(s2, "cublasLtMatmulAlgoGetHeuristic");
        require(returned > 0, "cuBLASLt offers no algorithm for M=", M, " N=", N, " K=", K);
        algo_ = result.algo;
    }
    ~RawLinear() {
        if (c_) (void)cublasLtMatrixLayoutDestroy(c_);
        if (b_) (void)cublasLtMatrixLayoutDestroy(b_);
        if (a_) (void)cublasLtMatrixLayoutDestroy(a_);
        if (op_) (void)cublasLtMatmulDescDestroy(op_);
    }
    RawLinear(const RawLinear&) = delete;
    RawLinear& operator=(const RawLinear&) = delete;

    void run(const void* x, const void* W, const void* bias, void* y) {
        if (bias_)
            check_blas(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
                       "BIAS_POINTER");
        const float alpha = 1.0f, beta = 0.0f;
        check_blas(cublasLtMatmul(handle_, op_, &alpha, W, a_, x, b_, &beta, y, c_, y, c_, &algo_, workspace_,
                                  workspace_bytes_, cu::current().stream()),
                   "cublasLtMatmul");
    }

private:
    bool bias_;
    cublasLtHandle_t handle_ = nullptr;
    cublasLtMatmulDesc_t op_ = nullptr;
    cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, c_ = nullptr;
    cublasLtMatmulAlgo_t algo_{};
    void* workspace_ = nullptr;
    std::size_t workspace_bytes_ = 0;
};

// ---- the two ceilings ----------------------------------------------------------------------------

inline void bm_ceiling_copy(benchmark::State& state) {
    guarded(state, [&] {
        const std::int64_t n = std::int64_t(1) << 29;  // 2 GiB of f32
        Tensor<float, Cuda> src(Shape{n}), dst(Shape{n});
        fill_uniform<float>(src, -1.0f, 1.0f, 1);
        fill_uniform<float>(dst, -1.0f, 1.0f, 2);
        const std::size_t bytes = std::size_t(n) * sizeof(float);
        run_timed(state, Work{0, 2.0 * double(bytes)}, "", [&](std::int64_t) {
            cu::check(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, cu::current().stream()),
                      "cudaMemcpyAsync");
        });
    });
}

inline void bm_ceiling_gemm(benchmark::State& state) {
    guarded(state, [&] {
        const std::int64_t n = 8192;
        Tensor<bf16, Cuda> x(Shape{n, n}), W(Shape{n, n}), y(Shape{n, n});
        fill_uniform<bf16>(x, -1.0f, 1.0f, 3);
        fill_uniform<bf16>(W, -1.0f, 1.0f, 4);
        fill_uniform<bf16>(y, -1.0f, 1.0f, 5);
        RawLinear gemm(n, n, n, false);
        run_timed(state, Work{2.0 * double(n) * double(n) * double(n), 0}, "",
                  [&](std::int64_t) { gemm.run(x.data(), W.data(), nullptr, y.data()); });
    });
}

inline void register_ceilings() {
    add("BM_ceiling/copy", bm_ceiling_copy);
    add("BM_ceiling/gemm_bf16", bm_ceiling_gemm);
}

// main() of a benchmark program: no device -> exit 77 (skipped), as the GPU tests do; but
// --benchmark_list_tests lists the benchmarks without a device.
template <class Register>
int main_with(int argc, char** argv, Register&& register_benchmarks) {
    bool listing = false;
    for (int i = 1; i < argc; ++i)
        listing = listing || std::string(argv[i]).rfind("--benchmark_list_tests", 0) == 0;
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        (void)cudaGetLastError();
        if (!listing) {
            std::printf("no CUDA device: skipped\n");
            return 77;
        }
        devices = 0;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
    try {
        if (devices > 0) add_device_context();
        register_benchmarks();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "setting up the benchmarks failed: %s\n", e.what());
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

}  // namespace pickscore::bench
