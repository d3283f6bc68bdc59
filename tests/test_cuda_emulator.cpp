// The CUDA execution model as the kernels see it: barriers, shuffles, votes, atomics, the tensor-core
// fragment layouts (mma.sync, ldmatrix), cp.async and the launch limits. Under
// PICKSCORE_CUDA_EMULATION this tests the host emulation; compiled by nvcc
// (tests/cuda/test_cuda_emulator.cu) the same checks run on a GPU, which is how the emulated
// fragment layouts are held to the hardware's. Cases that only the emulator can show (a missing
// barrier or cp.async wait reads poison) are emulation-only.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <kernels/common.cuh>
#include <kernels/ptx.cuh>
#include <pickscore/core/random.hpp>
#include <pickscore/cuda/storage.hpp>

using namespace pickscore;
namespace cu = pickscore::cuda;

namespace {

template <class T>
Tensor<T, Cuda> upload(const std::vector<T>& v) {
    Tensor<T, Cpu> h(Shape{std::int64_t(v.size())});
    std::memcpy(static_cast<void*>(h.data()), v.data(), v.size() * sizeof(T));
    return cu::to_device(h.view());
}

template <class T>
std::vector<T> download(const TensorView<T, Cuda>& d) {
    Tensor<T, Cpu> h = cu::to_host(d);
    return std::vector<T>(h.begin(), h.end());
}

// Runs `body` expecting a pickscore::Error whose message contains every one of `parts`.
template <class F>
void check_error(F&& body, std::initializer_list<const char*> parts) {
    std::string msg;
    try {
        body();
    } catch (const Error& e) {
        msg = e.what();
    }
    REQUIRE_MESSAGE(!msg.empty(), "expected an error");
    for (const char* p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "'", p, "' missing from: ", msg);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

}  // namespace

// ---- barriers -------------------------------------------------------------------------------------------

// Tree reduction of one block; WithBarrier = false leaves out the barrier between filling the
// shared array and the first reduction step — the classic race.
template <bool WithBarrier>
__global__ void block_sum_kernel(const float* x, float* out, int n) {
    PICKSCORE_SHARED(float[256], buf);
    const unsigned t = threadIdx.x;
    const unsigned i = blockIdx.x * blockDim.x + t;
    buf[t] = int(i) < n ? x[i] : 0.0f;
    if (WithBarrier) __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) buf[t] += buf[t + s];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = buf[0];
}

TEST_CASE("a block reduction is right with its barrier, and the emulator catches the missing one") {
    const int n = 1000, blocks = 4;
    std::vector<float> x(n);
    for (int i = 0; i < n; ++i) x[std::size_t(i)] = float(i % 17) - 3.0f;  // small integers: sums are exact
    auto dx = upload(x);
    Tensor<float, Cuda> out(Shape{blocks});
    cu::launch(block_sum_kernel<true>, dim3(blocks), dim3(256), 0, dx.data(), out.data(), n);
    const auto got = download(out.view());
    for (int b = 0; b < blocks; ++b) {
        float want = 0;
        for (int i = b * 256; i < std::min(n, (b + 1) * 256); ++i) want += x[std::size_t(i)];
        CHECK(got[std::size_t(b)] == want);
    }
#if defined(PICKSCORE_CUDA_EMULATION)
    // Threads run in a shuffled order between barriers and shared memory starts as NaN bytes, so
    // the first reduction step reads values that nobody has written yet.
    cu::launch(block_sum_kernel<false>, dim3(blocks), dim3(256), 0, dx.data(), out.data(), n);
    const auto racy = download(out.view());
    for (int b = 0; b < blocks; ++b) CHECK_MESSAGE(std::isnan(racy[std::size_t(b)]), "block ", b, " gave ", racy[std::size_t(b)]);
    // Even in a fixed order the missing barrier shows (thread 0 runs first and reads buf[128]).
    cu::emu::config().shuffle = false;
    cu::launch(block_sum_kernel<false>, dim3(1), dim3(256), 0, dx.data(), out.data(), n);
    cu::emu::config().shuffle = true;
    CHECK(std::isnan(download(out.view())[0]));
#endif
}

__global__ void syncthreads_count_kernel(int* out) {
    const int c = __syncthreads_count(threadIdx.x % 3 == 0);
    const int a = __syncthreads_and(threadIdx.x < 1000);
    const int o = __syncthreads_or(threadIdx.x == 5);
    if (threadIdx.x == 0) {
        out[0] = c;
        out[1] = a;
        out[2] = o;
    }
}

TEST_CASE("__syncthreads_count, _and and _or reduce over the block") {
    Tensor<int, Cuda> out(Shape{3});
    cu::launch(syncthreads_count_kernel, dim3(1), dim3(100), 0, out.data());
    const auto v = download(out.view());
    CHECK(v[0] == 34);  // 0, 3, ..., 99
    CHECK(v[1] == 1);
    CHECK(v[2] == 1);
}

__global__ void indices_kernel(int* out) {
    const int linear_block = int(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
    const int linear_thread = int(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
    const int threads = int(blockDim.x * blockDim.y * blockDim.z);
    int* o = out + 4 * (linear_block * threads + linear_thread);
    o[0] = int(threadIdx.x);
    o[1] = int(threadIdx.y);
    o[2] = int(threadIdx.z);
    o[3] = int(blockIdx.x * 100 + blockIdx.y * 10 + blockIdx.z);
}

TEST_CASE("threadIdx and blockIdx enumerate 3-d blocks and grids with x fastest") {
    const dim3 grid(2, 3, 2), block(4, 3, 2);
    const int nb = 12, nt = 24;
    Tensor<int, Cuda> out(Shape{nb * nt * 4});
    cu::launch(indices_kernel, grid, block, 0, out.data());
    const auto v = download(out.view());
    for (int bz = 0; bz < 2; ++bz)
        for (int by = 0; by < 3; ++by)
            for (int bx = 0; bx < 2; ++bx)
                for (int tz = 0; tz < 2; ++tz)
                    for (int ty = 0; ty < 3; ++ty)
                        for (int tx = 0; tx < 4; ++tx) {
                            const int b = bx + 2 * (by + 3 * bz), t = tx + 4 * (ty + 3 * tz);
                            const int* o = &v[std::size_t(4 * (b * nt + t))];
                            CHECK(o[0] == tx);
                            CHECK(o[1] == ty);
                            CHECK(o[2] == tz);
                            CHECK(o[3] == bx * 100 + by * 10 + bz);
                        }
}

// ---- shuffles and votes ----------------------------------------------------------------------------------

constexpr int kShuffleResults = 12;

__global__ void shuffle_kernel(const int* in, int* out) {
    const int t = int(threadIdx.x);
    const int lane = t % 32;
    const int v = in[t];
    int* o = out + t * kShuffleResults;
    o[0] = __shfl_sync(0xffffffffu, v, (lane * 7 + 3) % 32);
    o[1] = __shfl_sync(0xffffffffu, v, 5, 8);  // lane 5 of each group of 8
    o[2] = __shfl_up_sync(0xffffffffu, v, 3);
    o[3] = __shfl_up_sync(0xffffffffu, v, 3, 16);
    o[4] = __shfl_down_sync(0xffffffffu, v, 5);
    o[5] = __shfl_down_sync(0xffffffffu, v, 2, 8);
    o[6] = __shfl_xor_sync(0xffffffffu, v, 9);
    int sum = v;  // butterfly reduction
    for (int m = 16; m > 0; m >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, m);
    o[7] = sum;
    o[8] = int(__ballot_sync(0xffffffffu, v % 3 == 0));
    o[9] = __any_sync(0xffffffffu, v == 40) + 2 * __all_sync(0xffffffffu, v >= 0);
    // The two half-warps shuffle with separate masks at the same time.
    if (lane < 16) o[10] = __shfl_down_sync(0x0000ffffu, v, 1, 16);
    else o[10] = __shfl_sync(0xffff0000u, v, 31);
    o[11] = __reduce_add_sync(0xffffffffu, v);
}

TEST_CASE("warp shuffles and votes follow CUDA's definitions") {
    const int n = 64;  // two warps
    std::vector<int> in(n);
    for (int i = 0; i < n; ++i) in[std::size_t(i)] = (i * 37 + 11) % 101;
    auto din = upload(in);
    Tensor<int, Cuda> out(Shape{n * kShuffleResults});
    cu::launch(shuffle_kernel, dim3(1), dim3(n), 0, din.data(), out.data());
    const auto o = download(out.view());
    for (int t = 0; t < n; ++t) {
        const int w = t / 32 * 32, lane = t % 32;
        auto at = [&](int l) { return in[std::size_t(w + l)]; };
        const int* r = &o[std::size_t(t * kShuffleResults)];
        CAPTURE(t);
        CHECK(r[0] == at((lane * 7 + 3) % 32));
        CHECK(r[1] == at(lane / 8 * 8 + 5));
        CHECK(r[2] == at(lane >= 3 ? lane - 3 : lane));
        CHECK(r[3] == at(lane % 16 >= 3 ? lane - 3 : lane));
        CHECK(r[4] == at(lane + 5 < 32 ? lane + 5 : lane));
        CHECK(r[5] == at(lane % 8 + 2 < 8 ? lane + 2 : lane));
        CHECK(r[6] == at(lane ^ 9));
        int sum = 0;
        unsigned ballot = 0;
        bool any40 = false, all_nonneg = true;
        for (int l = 0; l < 32; ++l) {
            sum += at(l);
            if (at(l) % 3 == 0) ballot |= 1u << l;
            any40 = any40 || at(l) == 40;
            all_nonneg = all_nonneg && at(l) >= 0;
        }
        CHECK(r[7] == sum);
        CHECK(unsigned(r[8]) == ballot);
        CHECK(r[9] == int(any40) + 2 * int(all_nonneg));
        CHECK(r[10] == (lane < 16 ? at(lane + 1 < 16 ? lane + 1 : lane) : at(31)));
        CHECK(r[11] == sum);
    }
}

__global__ void shuffle_float_kernel(const float* in, float* out) {
    const float v = in[threadIdx.x];
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, v, 1) + 1000.0f * __shfl_sync(0xffffffffu, v, 0);
}

TEST_CASE("shuffles move floats bit for bit") {
    std::vector<float> in(32);
    for (int i = 0; i < 32; ++i) in[std::size_t(i)] = 0.1f * float(i) - 1.7f;
    auto din = upload(in);
    Tensor<float, Cuda> out(Shape{32});
    cu::launch(shuffle_float_kernel, dim3(1), dim3(32), 0, din.data(), out.data());
    const auto o = download(out.view());
    for (int i = 0; i < 32; ++i) CHECK(same_bits(o[std::size_t(i)], in[std::size_t(i ^ 1)] + 1000.0f * in[0]));
}

// ---- atomics ------------------------------------------------------------------------------------------------

__global__ void atomics_kernel(int* counter, float* fsum, int* imax, unsigned* cas_counter, unsigned long long* u64) {
    const int gid = int(blockIdx.x * blockDim.x + threadIdx.x);
    atomicAdd(counter, 1);
    atomicAdd(fsum, 0.5f);
    atomicMax(imax, gid);
    unsigned old = atomicAdd(cas_counter, 0u), seen;
    do {  // an increment built from compare-and-swap
        seen = old;
        old = atomicCAS(cas_counter, seen, seen + 1u);
    } while (old != seen);
    atomicAdd(u64, 1ull << 33);
}

TEST_CASE("atomics from many blocks add up exactly") {
    const int blocks = 48, threads = 96, total = blocks * threads;
    Tensor<int, Cuda> counter(Shape{1}), imax(Shape{1});
    Tensor<float, Cuda> fsum(Shape{1});
    Tensor<unsigned, Cuda> cas(Shape{1});
    Tensor<unsigned long long, Cuda> u64(Shape{1});
    cu::zero(counter.view());
    cu::zero(fsum.view());
    cu::zero(cas.view());
    cu::zero(u64.view());
    cu::copy(imax.view(), upload(std::vector<int>{-1}).cview());
    cu::launch(atomics_kernel, dim3(blocks), dim3(threads), 0, counter.data(), fsum.data(), imax.data(), cas.data(),
               u64.data());
    CHECK(download(counter.view())[0] == total);
    CHECK(download(fsum.view())[0] == 0.5f * float(total));  // exact: a multiple of 0.5 below 2^23
    CHECK(download(imax.view())[0] == total - 1);
    CHECK(download(cas.view())[0] == unsigned(total));
    CHECK(download(u64.view())[0] == (unsigned long long)(total) << 33);
}

// ---- tensor cores ------------------------------------------------------------------------------------------

// D = A·B + C for one m16n8k16 tile, fragments assembled from the PTX ISA's layout formulas.
__global__ void mma_fragment_kernel(const __nv_bfloat16* A /*16x16*/, const __nv_bfloat16* B /*16x8 row-major*/,
                                    const float* C /*16x8*/, float* D /*16x8*/) {
    const int lane = int(threadIdx.x), g = lane / 4, t = lane % 4;
    auto pack = [](__nv_bfloat16 lo, __nv_bfloat16 hi) {
        return std::uint32_t(__bfloat16_as_ushort(lo)) | (std::uint32_t(__bfloat16_as_ushort(hi)) << 16);
    };
    std::uint32_t a[4], b[2];
    a[0] = pack(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]);
    a[1] = pack(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]);
    a[2] = pack(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]);
    a[3] = pack(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9]);
    b[0] = pack(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]);
    b[1] = pack(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
    float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
    float d[4];
    cu::ptx::mma_m16n8k16_bf16(d, a, b, c);
    D[g * 8 + 2 * t] = d[0];
    D[g * 8 + 2 * t + 1] = d[1];
    D[(g + 8) * 8 + 2 * t] = d[2];
    D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// The same product with the fragments loaded by ldmatrix from row-major tiles in shared memory
// (A with .x4, B with .x2.trans), and the accumulator updated in place.
__global__ void mma_ldmatrix_kernel(const __nv_bfloat16* A, const __nv_bfloat16* B, const float* C, float* D) {
    PICKSCORE_SHARED(__nv_bfloat16[16][16], sa);
    PICKSCORE_SHARED(__nv_bfloat16[16][8], sb);
    const int lane = int(threadIdx.x), g = lane / 4, t = lane % 4;
    for (int i = lane; i < 256; i += 32) sa[i / 16][i % 16] = A[i];
    for (int i = lane; i < 128; i += 32) sb[i / 8][i % 8] = B[i];
    __syncwarp();
    std::uint32_t a[4], b[2];
    // x4: lanes 0-7 rows 0-7 / cols 0-7, lanes 8-15 rows 8-15 / cols 0-7, lanes 16-23 rows 0-7 / cols 8-15, ...
    cu::ptx::ldmatrix<4>(a, &sa[(lane % 8) + 8 * ((lane / 8) % 2)][8 * (lane / 16)]);
    // x2.trans: lanes 0-7 rows k 0-7, lanes 8-15 rows k 8-15 of the [k][n] tile
    cu::ptx::ldmatrix<2, true>(b, &sb[lane % 16][0]);
    float acc[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
    cu::ptx::mma_m16n8k16_bf16(acc, a, b, acc);
    D[g * 8 + 2 * t] = acc[0];
    D[g * 8 + 2 * t + 1] = acc[1];
    D[(g + 8) * 8 + 2 * t] = acc[2];
    D[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

TEST_CASE("mma.sync m16n8k16 bf16 computes the product in the PTX fragment layout") {
    Rng rng(7);
    std::vector<__nv_bfloat16> A(256), B(128);
    std::vector<float> C(128);
    for (auto& v : A) v = __float2bfloat16(float(rng.normal()));
    for (auto& v : B) v = __float2bfloat16(float(rng.normal()));
    for (auto& v : C) v = float(rng.normal());
    std::vector<double> want(128);
    for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 8; ++j) {
            double s = C[std::size_t(i * 8 + j)];
            for (int k = 0; k < 16; ++k)
                s += double(__bfloat162float(A[std::size_t(i * 16 + k)])) * double(__bfloat162float(B[std::size_t(k * 8 + j)]));
            want[std::size_t(i * 8 + j)] = s;
        }
    auto dA = upload(A);
    auto dB = upload(B);
    auto dC = upload(C);
    Tensor<float, Cuda> D(Shape{128});
    for (int variant = 0; variant < 2; ++variant) {
        if (variant == 0) cu::launch(mma_fragment_kernel, dim3(1), dim3(32), 0, dA.data(), dB.data(), dC.data(), D.data());
        else cu::launch(mma_ldmatrix_kernel, dim3(1), dim3(32), 0, dA.data(), dB.data(), dC.data(), D.data());
        const auto d = download(D.view());
        for (int i = 0; i < 128; ++i) {
            CAPTURE(variant);
            CAPTURE(i);
            // Exact bf16 products summed in f32: 17 terms of magnitude ~1 give errors ~1e-6.
            CHECK(std::abs(double(d[std::size_t(i)]) - want[std::size_t(i)]) < 1e-4);
        }
    }
}

__global__ void ldmatrix_kernel(std::uint32_t* out) {
    PICKSCORE_SHARED(unsigned short[4][8][8], m);  // four 8x8 matrices, element (q, r, c) = q*64 + r*8 + c
    const int lane = int(threadIdx.x);
    for (int i = lane; i < 256; i += 32) m[i / 64][(i / 8) % 8][i % 8] = static_cast<unsigned short>(i);
    __syncwarp();
    const void* row = &m[lane / 8][lane % 8][0];
    std::uint32_t r1[1], r2[2], r4[4], t1[1], t2[2], t4[4];
    cu::ptx::ldmatrix<1>(r1, row);
    cu::ptx::ldmatrix<2>(r2, row);
    cu::ptx::ldmatrix<4>(r4, row);
    cu::ptx::ldmatrix<1, true>(t1, row);
    cu::ptx::ldmatrix<2, true>(t2, row);
    cu::ptx::ldmatrix<4, true>(t4, row);
    std::uint32_t* o = out + lane * 14;
    o[0] = r1[0];
    o[1] = r2[0];
    o[2] = r2[1];
    for (int i = 0; i < 4; ++i) o[3 + i] = r4[i];
    o[7] = t1[0];
    o[8] = t2[0];
    o[9] = t2[1];
    for (int i = 0; i < 4; ++i) o[10 + i] = t4[i];
}

TEST_CASE("ldmatrix x1/x2/x4 and .trans deliver the PTX fragment layout") {
    Tensor<std::uint32_t, Cuda> out(Shape{32 * 14});
    cu::launch(ldmatrix_kernel, dim3(1), dim3(32), 0, out.data());
    const auto o = download(out.view());
    auto elem = [](int q, int r, int c) { return std::uint32_t(q * 64 + r * 8 + c); };
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, t = lane % 4;
        auto normal = [&](int q) { return elem(q, g, 2 * t) | (elem(q, g, 2 * t + 1) << 16); };
        auto trans = [&](int q) { return elem(q, 2 * t, g) | (elem(q, 2 * t + 1, g) << 16); };
        const std::uint32_t* r = &o[std::size_t(lane * 14)];
        CAPTURE(lane);
        CHECK(r[0] == normal(0));
        CHECK(r[1] == normal(0));
        CHECK(r[2] == normal(1));
        for (int q = 0; q < 4; ++q) CHECK(r[3 + q] == normal(q));
        CHECK(r[7] == trans(0));
        CHECK(r[8] == trans(0));
        CHECK(r[9] == trans(1));
        for (int q = 0; q < 4; ++q) CHECK(r[10 + q] == trans(q));
    }
}

// ---- cp.async ------------------------------------------------------------------------------------------------

// Each thread copies 16 bytes (4 floats) into shared memory in two groups, waits as told, and
// writes back what shared memory holds. Wait = 0: both groups; 1: only the first; -1: no wait.
template <int Wait>
__global__ void cp_async_kernel(const float* in, float* out) {
    PICKSCORE_SHARED(float[2][64 * 4], tile);
    const int t = int(threadIdx.x);
    cu::ptx::cp_async_16(&tile[0][4 * t], in + 4 * t);
    cu::ptx::cp_async_commit();
    cu::ptx::cp_async_16_zfill(&tile[1][4 * t], in + 256 + 4 * t, 8);  // two floats, then zeros
    cu::ptx::cp_async_commit();
    if (Wait == 0) cu::ptx::cp_async_wait<0>();
    if (Wait == 1) cu::ptx::cp_async_wait<1>();
    __syncthreads();
    for (int i = 0; i < 4; ++i) {
        out[4 * t + i] = tile[0][4 * t + i];
        out[256 + 4 * t + i] = tile[1][4 * t + i];
    }
}

TEST_CASE("cp.async lands its data by the matching wait_group") {
    std::vector<float> in(512);
    for (int i = 0; i < 512; ++i) in[std::size_t(i)] = float(i) + 0.25f;
    auto din = upload(in);
    Tensor<float, Cuda> out(Shape{512});
    cu::launch(cp_async_kernel<0>, dim3(1), dim3(64), 0, din.data(), out.data());
    auto o = download(out.view());
    for (int i = 0; i < 256; ++i) CHECK(o[std::size_t(i)] == in[std::size_t(i)]);
    for (int i = 256; i < 512; ++i) CHECK(o[std::size_t(i)] == (i % 4 < 2 ? in[std::size_t(i)] : 0.0f));  // zero-filled
    cu::launch(cp_async_kernel<1>, dim3(1), dim3(64), 0, din.data(), out.data());
    o = download(out.view());
    for (int i = 0; i < 256; ++i) CHECK(o[std::size_t(i)] == in[std::size_t(i)]);  // the older group has landed
#if defined(PICKSCORE_CUDA_EMULATION)
    // The emulator lands a group only at a wait that covers it: the newer group, and without any
    // wait both, are still the poison shared memory started with.
    for (int i = 256; i < 512; ++i) CHECK(std::isnan(o[std::size_t(i)]));
    cu::launch(cp_async_kernel<-1>, dim3(1), dim3(64), 0, din.data(), out.data());
    o = download(out.view());
    for (int i = 0; i < 512; ++i) CHECK(std::isnan(o[std::size_t(i)]));
#endif
}

// ---- shared memory and launch limits -----------------------------------------------------------------------

__global__ void dynamic_shared_kernel(float* out, int n, bool write) {
    PICKSCORE_DYNAMIC_SHARED(float, buf);
    for (int i = int(threadIdx.x); i < n; i += int(blockDim.x))
        if (write) buf[i] = float(i);
    __syncthreads();
    for (int i = int(threadIdx.x); i < n; i += int(blockDim.x)) out[i] = buf[i];
}

TEST_CASE("dynamic shared memory: sized at launch, above 48 KiB only after opting in") {
    const int small = 1000, big = 20000;  // 4 KB and 80 KB of floats
    Tensor<float, Cuda> out(Shape{big});
    cu::launch(dynamic_shared_kernel, dim3(1), dim3(128), small * sizeof(float), out.data(), small, true);
    auto o = download(out.view());
    for (int i = 0; i < small; ++i) CHECK(o[std::size_t(i)] == float(i));
    check_error([&] { cu::launch(dynamic_shared_kernel, dim3(1), dim3(128), big * sizeof(float), out.data(), big, true); },
                {"kernel launch", "80000 bytes"});
    cu::set_max_dynamic_shared(dynamic_shared_kernel, 100 * 1024);
    cu::launch(dynamic_shared_kernel, dim3(1), dim3(128), big * sizeof(float), out.data(), big, true);
    o = download(out.view());
    for (int i = 0; i < big; i += 997) CHECK(o[std::size_t(i)] == float(i));
    check_error([&] { cu::set_max_dynamic_shared(dynamic_shared_kernel, 300 * 1024); }, {"cudaFuncSetAttribute"});
#if defined(PICKSCORE_CUDA_EMULATION)
    // Unwritten shared memory reads as NaN.
    cu::launch(dynamic_shared_kernel, dim3(1), dim3(128), small * sizeof(float), out.data(), small, false);
    o = download(out.view());
    for (int i = 0; i < small; ++i) CHECK(std::isnan(o[std::size_t(i)]));
#endif
}

__global__ void noop_kernel(int* out) {
    if (out != nullptr) out[threadIdx.x] = 1;
}

TEST_CASE("launch configuration errors are reported as on the hardware") {
    check_error([] { cu::launch(noop_kernel, dim3(1), dim3(2048), 0, nullptr); },
                {"kernel launch", "block (2048,1,1)", "cudaErrorInvalidConfiguration"});
    check_error([] { cu::launch(noop_kernel, dim3(1), dim3(32, 32, 2), 0, nullptr); }, {"cudaErrorInvalidConfiguration"});
    check_error([] { cu::launch(noop_kernel, dim3(0), dim3(32), 0, nullptr); }, {"cudaErrorInvalidConfiguration"});
    check_error([] { cu::launch(noop_kernel, dim3(1), dim3(32), 64 * 1024, nullptr); },
                {"cudaErrorInvalidValue"});
    // The errors do not linger: the next launch succeeds.
    Tensor<int, Cuda> out(Shape{32});
    cu::launch(noop_kernel, dim3(1), dim3(32), 0, out.data());
    CHECK(download(out.view())[31] == 1);
}

#if defined(PICKSCORE_CUDA_EMULATION)
// ---- what only the emulator reports --------------------------------------------------------------------------

__global__ void too_much_static_shared_kernel(float* out) {
    PICKSCORE_SHARED(float[13 * 1024], big);  // 52 KiB: nvcc would refuse to compile it
    big[threadIdx.x] = 1.0f;
    out[threadIdx.x] = big[threadIdx.x];
}

__global__ void exited_lane_kernel(int* out) {
    if (threadIdx.x == 3) return;
    out[threadIdx.x] = __shfl_sync(0xffffffffu, int(threadIdx.x), 0);
}

__global__ void divergent_collective_kernel(int* out) {
    if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0xffffffffu, int(threadIdx.x), 0);
    else out[threadIdx.x] = int(__ballot_sync(0xffffffffu, 1));
}

__global__ void partial_warp_kernel(int* out) { out[threadIdx.x] = __shfl_sync(0xffffffffu, int(threadIdx.x), 0); }

__global__ void barrier_deadlock_kernel(int* out) {
    out[threadIdx.x] = 0;
    if (threadIdx.x >= 32 && threadIdx.x < 48) __syncwarp();  // waits for lanes 16-31, which wait below
    __syncthreads();
}

__global__ void trap_kernel() {
    if (blockIdx.x == 2 && threadIdx.x == 7) __trap();
}

__global__ void misaligned_ldmatrix_kernel() {
    PICKSCORE_SHARED(unsigned short[16][8], m);
    std::uint32_t r[1];
    cu::ptx::ldmatrix<1>(r, &m[threadIdx.x % 8][1]);  // 2-byte offset: not 16-byte aligned
}

TEST_CASE("the emulator reports kernel bugs with the lanes and limits involved") {
    Tensor<int, Cuda> out(Shape{64});
    Tensor<float, Cuda> fout(Shape{64});
    check_error([&] { cu::launch(too_much_static_shared_kernel, dim3(1), dim3(32), 0, fout.data()); },
                {"static shared memory", "53248 bytes"});
    check_error([&] { cu::launch(exited_lane_kernel, dim3(1), dim3(32), 0, out.data()); }, {"__shfl_sync", "exited"});
    check_error([&] { cu::launch(divergent_collective_kernel, dim3(1), dim3(32), 0, out.data()); }, {"divergent"});
    check_error([&] { cu::launch(partial_warp_kernel, dim3(1), dim3(20), 0, out.data()); },
                {"__shfl_sync", "does not have", "20 threads"});
    check_error([&] { cu::launch(barrier_deadlock_kernel, dim3(1), dim3(64), 0, out.data()); },
                {"deadlock", "__syncwarp", "__syncthreads"});
    check_error([] { cu::launch(trap_kernel, dim3(4), dim3(32), 0); }, {"block (2,0,0)", "__trap"});
    check_error([] { cu::launch(misaligned_ldmatrix_kernel, dim3(1), dim3(32), 0); }, {"ldmatrix", "16-byte aligned"});
    // A kernel error leaves the runtime usable.
    cu::launch(noop_kernel, dim3(1), dim3(32), 0, out.data());
    CHECK(download(out.view())[0] == 1);
}

__global__ void shared_race_kernel(int* out) {
    PICKSCORE_SHARED(int, last);
    last = int(threadIdx.x);  // a plain race: the thread that writes last wins
    __syncthreads();
    if (threadIdx.x == 0) *out = last;
}

TEST_CASE("the schedule varies from launch to launch") {
    Tensor<int, Cuda> out(Shape{1});
    std::vector<int> winners;
    for (int i = 0; i < 8; ++i) {
        cu::launch(shared_race_kernel, dim3(1), dim3(64), 0, out.data());
        winners.push_back(download(out.view())[0]);
    }
    std::sort(winners.begin(), winners.end());
    CHECK(std::unique(winners.begin(), winners.end()) - winners.begin() > 1);
}
#endif
