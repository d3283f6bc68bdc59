// NcclCommunicator (train/nccl.hpp) on real GPUs, ranks as threads of this process, one GPU each:
// sums (f32, f64, bf16; blocking, and started without waiting as the trainer's overlapped gradient
// buckets are), broadcasts, the host sum, the barrier and the gather of ranges, compared
// with what HostCommunicator (train/comm.hpp) computes from the same inputs. The ranks agree on the
// NCCL id through an id file, as separate processes would.
//
// Exit status (tests/cuda/CMakeLists.txt): 77 (CTest: skipped) without a CUDA device; with one GPU
// the one-rank checks run and, when they pass, the program still exits 77 because the several-rank
// checks need two GPUs (NCCL does not put two ranks of a communicator on one device).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <cuda_runtime_api.h>

#include <pickscore/core/dtype.hpp>
#include <pickscore/cuda/context.hpp>
#include <pickscore/train/comm.hpp>
#include <pickscore/train/nccl.hpp>

using namespace pickscore;
using namespace pickscore::train;
namespace fs = std::filesystem;

namespace {

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

// Runs fn(rank) on `world` threads and rethrows the first failure.
template <class F>
void run_ranks(int world, F fn) {
    std::vector<std::thread> threads;
    std::exception_ptr error;
    std::mutex m;
    for (int r = 0; r < world; ++r)
        threads.emplace_back([&, r] {
            try {
                fn(r);
            } catch (...) {
                std::lock_guard<std::mutex> lk(m);
                if (!error) error = std::current_exception();
            }
        });
    for (auto& t : threads) t.join();
    if (error) std::rethrow_exception(error);
}

// The inputs of rank r: small multiples of 0.5 (|x| <= 1.5 (r + 1)), so that every partial sum over up
// to 8 ranks, in any order, is exact in bf16, f32 and f64 — the NCCL and host results must then be equal.
template <class T>
std::vector<T> input(int rank, std::size_t n, int salt) {
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = cast<T>(double(int((i + std::size_t(salt)) % 7) - 3) * 0.5 * double(rank + 1));
    return v;
}

template <class T>
struct DeviceBuffer {
    T* p = nullptr;
    std::size_t n = 0;
    explicit DeviceBuffer(const std::vector<T>& host) : n(host.size()) {
        cuda::check(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)), "cudaMalloc");
        // On the context's stream, where the collectives go (it does not wait for the legacy stream).
        cuda::check(cudaMemcpyAsync(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice, cuda::current().stream()),
                    "cudaMemcpyAsync");
        cuda::synchronize();
    }
    ~DeviceBuffer() { (void)cudaFree(p); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    std::vector<T> read() const {
        std::vector<T> h(n);
        cuda::check(cudaMemcpyAsync(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost, cuda::current().stream()),
                    "cudaMemcpyAsync");
        cuda::synchronize();
        return h;
    }
};

template <class T>
bool same(const std::vector<T>& a, const std::vector<T>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (cast<double>(a[i]) != cast<double>(b[i])) return false;
    return true;
}

// The results of one rank: what the sequence of collectives below leaves in each buffer.
struct Results {
    std::vector<float> sum_f32, big_f32, bcast_f32, gather_f32, async_f32;
    std::vector<double> sum_f64, host;
    std::vector<bf16> sum_bf16, gather_bf16;
};

constexpr std::size_t n_small = 1003;              // not a multiple of anything NCCL likes
constexpr std::size_t n_big = (std::size_t(1) << 20) + 7;
constexpr int bcast_root_of(int world) { return world - 1; }

// The collectives, on host vectors (HostCommunicator) or device buffers (NcclCommunicator).
template <bool Device>
Results exercise(Communicator& c) {
    const int r = c.rank(), W = c.world();
    Results out;
    auto run = [&](auto host_in, DType dt, auto&& op) {
        using T = typename decltype(host_in)::value_type;
        if constexpr (Device) {
            DeviceBuffer<T> b(host_in);
            op(static_cast<void*>(b.p), dt);
            return b.read();
        } else {
            op(static_cast<void*>(host_in.data()), dt);
            return host_in;
        }
    };
    out.sum_f32 = run(input<float>(r, n_small, 0), DType::f32,
                      [&](void* p, DType dt) { c.all_reduce_sum(p, std::int64_t(n_small), dt); });
    out.big_f32 = run(input<float>(r, n_big, 3), DType::f32,
                      [&](void* p, DType dt) { c.all_reduce_sum(p, std::int64_t(n_big), dt); });
    out.sum_f64 = run(input<double>(r, n_small, 1), DType::f64,
                      [&](void* p, DType dt) { c.all_reduce_sum(p, std::int64_t(n_small), dt); });
    out.sum_bf16 = run(input<bf16>(r, n_small, 2), DType::bf16,
                       [&](void* p, DType dt) { c.all_reduce_sum(p, std::int64_t(n_small), dt); });
    out.bcast_f32 = run(input<float>(r, n_small, 4), DType::f32,
                        [&](void* p, DType dt) { c.broadcast(p, std::int64_t(n_small), dt, bcast_root_of(W)); });
    // Overlap (train/overlap.hpp): three pieces of one buffer started without waiting, out of
    // order, then wait_async; the read that follows runs on the current stream.
    out.async_f32 = run(input<float>(r, n_big, 5), DType::f32, [&](void* p, DType dt) {
        float* f = static_cast<float*>(p);
        const std::int64_t a = 1000, b = 500000, n = std::int64_t(n_big);
        c.all_reduce_sum_async(f + b, n - b, dt);
        c.all_reduce_sum_async(f + a, b - a, dt);
        c.all_reduce_sum_async(f, a, dt);
        c.wait_async();
    });
    CHECK(c.async_started() == 3);
    c.barrier();
    out.host = {double(r) + 0.25, -1.0 * r, 1e-3};
    c.all_reduce_sum_host(out.host.data(), std::int64_t(out.host.size()));
    // Rank q's range holds its values; the rest holds rank-specific garbage until the gather.
    const auto offsets = shard_offsets(std::int64_t(n_small), W, 16);
    auto owned = [&](auto tag) {
        using T = decltype(tag);
        std::vector<T> v(n_small, cast<T>(-100.0 - r));
        for (std::int64_t i = offsets[std::size_t(r)]; i < offsets[std::size_t(r) + 1]; ++i)
            v[std::size_t(i)] = cast<T>(double(i % 13) + 0.5 * r);
        return v;
    };
    out.gather_f32 = run(owned(float{}), DType::f32,
                         [&](void* p, DType dt) { c.all_gather_ranges(p, offsets, dt); });
    out.gather_bf16 = run(owned(bf16{}), DType::bf16,
                          [&](void* p, DType dt) { c.all_gather_ranges(p, offsets, dt); });
    return out;
}

void compare(const Results& nccl, const Results& host) {
    CHECK(same(nccl.sum_f32, host.sum_f32));
    CHECK(same(nccl.big_f32, host.big_f32));
    CHECK(same(nccl.sum_f64, host.sum_f64));
    CHECK(same(nccl.sum_bf16, host.sum_bf16));
    CHECK(same(nccl.bcast_f32, host.bcast_f32));
    CHECK(same(nccl.async_f32, host.async_f32));
    // The host sums are in double; these values sum exactly in any order.
    CHECK(same(nccl.host, host.host));
    CHECK(same(nccl.gather_f32, host.gather_f32));
    CHECK(same(nccl.gather_bf16, host.gather_bf16));
}

// The results of `world` ranks: through NCCL (one GPU each, the id agreed through a file) and
// through HostCommunicator.
void check_world(int world) {
    const fs::path id_file = fs::temp_directory_path() /
                             ("pickscore_test_nccl_" + std::to_string(::getpid()) + "_" + std::to_string(world));
    std::vector<Results> nccl(static_cast<std::size_t>(world)), host(static_cast<std::size_t>(world));
    run_ranks(world, [&](int r) {
        cuda::check(cudaSetDevice(r), "cudaSetDevice");
        cuda::Context ctx;
        cuda::ContextGuard use(ctx);
        NcclBootstrap b;
        b.id_file = id_file;
        b.job = "test";
        b.timeout_seconds = 60;
        DistributedEnv env;
        env.rank = r;
        env.world = world;
        env.local_rank = r;
        auto comm = NcclCommunicator::create(env, b);
        REQUIRE(comm->rank() == r);
        REQUIRE(comm->world() == world);
        REQUIRE(!comm->host_memory());
        nccl[std::size_t(r)] = exercise<true>(*comm);
    });
    CHECK(!fs::exists(id_file));  // rank 0 removed it once all had joined
    auto group = std::make_shared<HostGroup>(world);
    run_ranks(world, [&](int r) {
        HostCommunicator c(group, r);
        host[std::size_t(r)] = exercise<false>(c);
    });
    for (int r = 0; r < world; ++r) {
        CAPTURE(r);
        compare(nccl[std::size_t(r)], host[std::size_t(r)]);
    }
    // The sums themselves (not only agreement): element 5 of the f32 sum is Σ_r (5 % 7 - 3) 0.5 (r + 1).
    CHECK(cast<double>(nccl[0].sum_f32[5]) == 1.0 * 0.5 * double(world * (world + 1) / 2));
    CHECK(nccl[0].bcast_f32 == input<float>(bcast_root_of(world), n_small, 4));
}

}  // namespace

TEST_CASE("NCCL status errors name the call and NCCL's description") {
    try {
        nccl_check(ncclInvalidUsage, "ncclSomething");
        FAIL("nccl_check did not throw");
    } catch (const Error& e) {
        const std::string m = e.what();
        CHECK(m.find("ncclSomething") != std::string::npos);
        CHECK(m.find("ncclInvalidUsage") != std::string::npos);
        CHECK(m.find(ncclGetErrorString(ncclInvalidUsage)) != std::string::npos);
    }
    CHECK_NOTHROW(nccl_check(ncclSuccess, "ncclFine"));
}

TEST_CASE("one rank on one GPU: NCCL and the host communicator agree") {
    check_world(1);
}

TEST_CASE("the id travels as hex; a rank's communicator refuses another current device") {
    if (device_count() < 2) return;  // main() reports the several-rank checks as skipped
    const std::string hex = nccl_unique_id_hex();
    REQUIRE(hex.size() == 2 * nccl_id_size);
    run_ranks(2, [&](int r) {
        cuda::check(cudaSetDevice(r), "cudaSetDevice");
        cuda::Context ctx;
        cuda::ContextGuard use(ctx);
        NcclBootstrap b;
        b.id_hex = hex;
        DistributedEnv env;
        env.rank = r;
        env.world = 2;
        auto comm = NcclCommunicator::create(env, b);
        comm->barrier();
        double x = 1.0 + r;
        comm->all_reduce_sum_host(&x, 1);
        CHECK(x == 3.0);
        if (r == 1) {  // a local check, made before any NCCL call, so rank 0 is not left waiting
            cuda::check(cudaSetDevice(0), "cudaSetDevice");
            CHECK_THROWS_AS(comm->barrier(), Error);
            cuda::check(cudaSetDevice(1), "cudaSetDevice");
        }
        comm->barrier();
    });
}

TEST_CASE("several ranks, one GPU each: NCCL and the host communicator agree") {
    const int n = device_count();
    if (n < 2) return;
    check_world(n < 8 ? n : 8);
    if (n > 2) check_world(2);
}

int main(int argc, char** argv) {
    const int devices = device_count();
    if (devices == 0) {
        std::printf("no CUDA device: skipped\n");
        return 77;
    }
    int version = 0;
    (void)ncclGetVersion(&version);
    std::printf("%d CUDA device(s); NCCL %d\n", devices, version);
    doctest::Context context(argc, argv);
    const int rc = context.run();
    if (rc != 0 || context.shouldExit()) return rc;
    if (devices < 2) {
        std::printf("the several-rank checks need 2 GPUs, this machine has 1: skipped (the one-rank checks passed)\n");
        return 77;
    }
    return 0;
}
