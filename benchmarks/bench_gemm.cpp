// pickscore's CPU sgemm against OpenBLAS, in the same run, at the Linear layer's layout of the
// ViT-H/14 shapes: y[M, N] = x[M, K] · W[N, K]ᵀ, M = 257 · batch.
//
//   bench_gemm [--threads N] [--openblas_core NAME] [google benchmark flags]
//
// OpenBLAS is only a fair baseline with its best kernel (docs: benchmarking.md). On these virtual
// machines it detects an SSE3 core by itself, so unless OPENBLAS_CORETYPE is already set this
// program chooses the core before OpenBLAS starts: SKYLAKEX where the CPU has AVX-512F, otherwise
// HASWELL, and on AMD both HASWELL and ZEN are timed (in child processes) and the faster one wins.
// It then sets OPENBLAS_CORETYPE and OPENBLAS_NUM_THREADS (= pickscore's threads, default 2) and
// re-executes itself, so that OpenBLAS reads them as it loads.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <pickscore/core/random.hpp>
#include <pickscore/core/threads.hpp>
#include <pickscore/cpu/sgemm.hpp>

namespace {

using pickscore::ops::Trans;

struct Options {
    int threads = 2;
    std::string core;     // --openblas_core
    bool calibrate = false;  // internal: time OpenBLAS once and print GFLOP/s
};

std::vector<float> random_floats(std::int64_t n, std::uint64_t seed) {
    pickscore::Rng rng(seed);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = float(rng.uniform(-1.0, 1.0));
    return v;
}

void openblas_linear(std::int64_t M, std::int64_t N, std::int64_t K, const float* x, const float* W, float* y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(M), blasint(N), blasint(K), 1.0f, x, blasint(K), W,
                blasint(K), 0.0f, y, blasint(N));
}

void pickscore_linear(std::int64_t M, std::int64_t N, std::int64_t K, const float* x, const float* W, float* y) {
    pickscore::cpu::sgemm(Trans::N, Trans::T, M, N, K, 1.0f, x, K, W, K, 0.0f, y, N);
}

// One benchmark: `which` (0 = pickscore, 1 = OpenBLAS) computing y = x · Wᵀ.
void bm_linear(benchmark::State& state, int which, std::int64_t M, std::int64_t N, std::int64_t K) {
    const std::vector<float> x = random_floats(M * K, 1), W = random_floats(N * K, 2);
    std::vector<float> y(static_cast<std::size_t>(M * N));
    auto run = which == 0 ? pickscore_linear : openblas_linear;
    run(M, N, K, x.data(), W.data(), y.data());  // warm-up: page faults, packing buffers, thread pools
    for (auto _ : state) {
        run(M, N, K, x.data(), W.data(), y.data());
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.counters["FLOPS"] = benchmark::Counter(2.0 * double(M) * double(N) * double(K),
                                                 benchmark::Counter::kIsIterationInvariantRate);
    if (which == 0) {
        // The largest difference from OpenBLAS, relative to the largest |y| (both are f32).
        std::vector<float> ref(y.size());
        openblas_linear(M, N, K, x.data(), W.data(), ref.data());
        double diff = 0, scale = 0;
        for (std::size_t i = 0; i < y.size(); ++i) {
            diff = std::max(diff, double(std::fabs(y[i] - ref[i])));
            scale = std::max(scale, double(std::fabs(ref[i])));
        }
        state.counters["rel_diff"] = diff / std::max(scale, 1e-30);
        if (!(diff <= 1e-4 * scale)) state.SkipWithError("pickscore and OpenBLAS disagree");
    }
}

// --calibrate: the best of a few OpenBLAS runs at the qkv shape, in GFLOP/s, on stdout.
int calibrate() {
    const std::int64_t M = 257, N = 3840, K = 1280;
    const std::vector<float> x = random_floats(M * K, 1), W = random_floats(N * K, 2);
    std::vector<float> y(static_cast<std::size_t>(M * N));
    double best = 0;
    for (int i = 0; i < 6; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        openblas_linear(M, N, K, x.data(), W.data(), y.data());
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (i > 0) best = std::max(best, 2.0 * M * N * K / s * 1e-9);
    }
    std::printf("%s %.3f\n", openblas_get_corename(), best);
    return 0;
}

// The core clock in GHz, from a chain of dependent adds (one per cycle on every x86 core since the
// Pentium 4): the best of several short runs, timed in thread CPU time. 0 where not x86.
double measure_clock_ghz() {
#if defined(__x86_64__)
    double best = 0;
    for (int run = 0; run < 20; ++run) {
        const long iterations = 2'000'000;  // x 10 adds
        timespec t0{}, t1{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        long x = 0;
        for (long i = 0; i < iterations; ++i)
            asm volatile(
                "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                : "+r"(x));
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
        const double s = double(t1.tv_sec - t0.tv_sec) + 1e-9 * double(t1.tv_nsec - t0.tv_nsec);
        if (s > 0) best = std::max(best, 10.0 * double(iterations) / s * 1e-9);
    }
    return best;
#else
    return 0;
#endif
}

std::string self_path() {
    std::vector<char> buf(4096);
    const ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
    return n > 0 ? std::string(buf.data(), std::size_t(n)) : std::string();
}

// The OpenBLAS cores worth trying on this CPU, best guess first.
std::vector<std::string> candidate_cores() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return {"SKYLAKEX"};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        if (__builtin_cpu_is("amd")) return {"HASWELL", "ZEN"};
        return {"HASWELL"};
    }
    return {};
}

// Times OpenBLAS with `core` in a child process; 0 if that failed.
double time_core(const std::string& exe, const std::string& core, int threads) {
    const std::string cmd = "OPENBLAS_CORETYPE=" + core + " OPENBLAS_NUM_THREADS=" + std::to_string(threads) + " '" +
                            exe + "' --calibrate --threads " + std::to_string(threads);
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return 0;
    char name[128] = {};
    double gflops = 0;
    const int got = std::fscanf(p, "%127s %lf", name, &gflops);
    pclose(p);
    if (got != 2) return 0;
    std::fprintf(stderr, "bench_gemm: OpenBLAS with OPENBLAS_CORETYPE=%s runs as core %s: %.1f GFLOP/s\n",
                 core.c_str(), name, gflops);
    return gflops;
}

// Picks OPENBLAS_CORETYPE (unless it is set already), sets OPENBLAS_NUM_THREADS, and re-executes
// this program once with them. Returns when OPENBLAS_CORETYPE was set already, after the re-exec,
// or when re-executing failed.
void choose_openblas_core_and_reexec(const Options& opt, char** argv) {
    if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("PICKSCORE_BENCH_REEXECUTED")) return;
    std::string core = opt.core;
    if (core.empty()) {
        const std::vector<std::string> cores = candidate_cores();
        const std::string exe = self_path();
        double best = -1;
        for (const std::string& c : cores) {
            const double g = cores.size() > 1 ? time_core(exe, c, opt.threads) : 0;
            if (g > best) best = g, core = c;
        }
    }
    if (!core.empty()) setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
    setenv("OPENBLAS_NUM_THREADS", std::to_string(opt.threads).c_str(), 1);
    setenv("PICKSCORE_BENCH_REEXECUTED", "1", 1);
    execv("/proc/self/exe", argv);
    std::perror("bench_gemm: re-executing /proc/self/exe failed; OpenBLAS keeps its own choices");
}

// Removes this program's own flags from argv (the rest goes to Google Benchmark).
Options parse_options(int& argc, char** argv) {
    Options opt;
    int out = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&](const std::string& flag) -> const char* {
            if (a == flag && i + 1 < argc) return argv[++i];
            if (a.rfind(flag + "=", 0) == 0) return argv[i] + flag.size() + 1;
            return nullptr;
        };
        if (const char* v = value("--threads")) {
            opt.threads = std::max(1, std::atoi(v));
        } else if (const char* c = value("--openblas_core")) {
            opt.core = c;
        } else if (a == "--calibrate") {
            opt.calibrate = true;
        } else {
            argv[out++] = argv[i];
        }
    }
    argc = out;
    argv[argc] = nullptr;
    return opt;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<char*> original(argv, argv + argc);
    original.push_back(nullptr);
    Options opt = parse_options(argc, argv);
    if (opt.calibrate) return calibrate();
    choose_openblas_core_and_reexec(opt, original.data());

    pickscore::set_num_threads(opt.threads);
    openblas_set_num_threads(opt.threads);
    benchmark::AddCustomContext("threads", std::to_string(opt.threads));
    benchmark::AddCustomContext("pickscore_simd", std::string(pickscore::cpu::simd_name(pickscore::cpu::detected_simd())));
    benchmark::AddCustomContext("openblas_core", openblas_get_corename());
    benchmark::AddCustomContext("openblas_config", openblas_get_config());
    char clock[32];
    std::snprintf(clock, sizeof clock, "%.2f", measure_clock_ghz());
    benchmark::AddCustomContext("core_clock_ghz", clock);
    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    benchmark::AddCustomContext("OPENBLAS_CORETYPE", coretype ? coretype : "(unset)");
    std::fprintf(stderr, "bench_gemm: OpenBLAS core %s (%s), %d threads; pickscore kernel %s\n",
                 openblas_get_corename(), openblas_get_config(), opt.threads,
                 std::string(pickscore::cpu::simd_name(pickscore::cpu::detected_simd())).c_str());

    // The four ViT-H/14 layers first (qkv, out-proj, fc1, fc2), then the other (N, K) pairs.
    const std::int64_t pairs[][2] = {{3840, 1280}, {1280, 1280}, {5120, 1280}, {1280, 5120}, {3840, 3840},
                                     {5120, 3840}, {1280, 3840}, {3840, 5120}, {5120, 5120}};
    for (int batch : {1, 8})
        for (const auto& nk : pairs) {
            const std::int64_t M = 257 * batch, N = nk[0], K = nk[1];
            for (int which : {0, 1}) {
                const std::string name = std::string(which == 0 ? "pickscore" : "openblas") + "/M=" +
                                         std::to_string(M) + "/N=" + std::to_string(N) + "/K=" + std::to_string(K);
                benchmark::RegisterBenchmark(name.c_str(), bm_linear, which, M, N, K)
                    ->UseRealTime()
                    ->Unit(benchmark::kMillisecond);
            }
        }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
