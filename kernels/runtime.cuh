// kernels/runtime.cuh — the out-of-line parts of pickscore/cuda/context.hpp: Context (stream,
// library handles, workspace), the current-context machinery, and the cuBLASLt algorithm cache.
// Compiled once, in the pickscore::cuda translation unit (kernels/pickscore_cuda.cu).
#pragma once

#if !defined(PICKSCORE_CUDA_IMPLEMENTATION)
#error "this file holds out-of-line definitions: include kernels/implementation.cuh, in one translation unit"
#endif

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include <pickscore/cuda/context.hpp>
#include <pickscore/cuda/libraries.hpp>
#include <pickscore/cuda/runtime.hpp>

namespace pickscore::cuda {

namespace detail {

// Everything a cuBLASLt algorithm choice depends on.
struct BlasKey {
    int type = 0, compute = 0, transa = 0, transb = 0;
    std::int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0, batch = 1, sa = 0, sb = 0, sc = 0;
    std::uint32_t epilogue = 0;
    std::int64_t ldaux = 0;
    std::uint32_t align[5] = {};  // A, B, C (= D), bias, aux: the largest power of two (<= 256) dividing the address
    bool operator==(const BlasKey&) const = default;
};

struct BlasKeyHash {
    std::size_t operator()(const BlasKey& k) const {
        std::size_t h = 0;
        auto mix = [&h](std::uint64_t v) { h ^= std::hash<std::uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
        for (std::int64_t v : {std::int64_t(k.type), std::int64_t(k.compute), std::int64_t(k.transa), std::int64_t(k.transb),
                               k.m, k.n, k.k, k.lda, k.ldb, k.ldc, k.batch, k.sa, k.sb, k.sc, std::int64_t(k.epilogue),
                               k.ldaux})
            mix(std::uint64_t(v));
        for (std::uint32_t a : k.align) mix(a);
        return h;
    }
};

struct BlasChoice {
    bool supported = false;
    cublasLtMatmulAlgo_t algo{};
};

struct BlasCache {
    std::mutex m;
    std::unordered_map<BlasKey, BlasChoice, BlasKeyHash> choices;
};

inline Context*& current_slot() {
    thread_local Context* ctx = nullptr;
    return ctx;
}

}  // namespace detail

Context::Context() : Context(ContextOptions{}) {}

Context::Context(const ContextOptions& options) : options_(options) {
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    allocator_ = std::make_shared<Allocator>(stream_);
    blas_cache_ = std::make_unique<detail::BlasCache>();
}

Context::~Context() {
    // Errors cannot be reported from a destructor; the stream is drained first so that nothing
    // still running uses what is released here.
    (void)cudaStreamSynchronize(stream_);
    if (blaslt_ != nullptr) (void)cublasLtDestroy(blaslt_);
    if (blas_ != nullptr) (void)cublasDestroy(blas_);
    if (dnn_ != nullptr) (void)cudnnDestroy(dnn_);
    if (workspace_ != nullptr) allocator_->deallocate(workspace_, options_.blas_workspace_bytes);
    allocator_->detach();
    (void)cudaStreamDestroy(stream_);
    (void)cudaGetLastError();
}

void* Context::blas_workspace() {
    std::lock_guard<std::mutex> lk(handles_m_);
    if (workspace_ == nullptr && options_.blas_workspace_bytes > 0)
        workspace_ = allocator_->allocate(options_.blas_workspace_bytes);
    return workspace_;
}

cublasLtContext* Context::blaslt() {
    std::lock_guard<std::mutex> lk(handles_m_);
    if (blaslt_ == nullptr) check(cublasLtCreate(&blaslt_), "cublasLtCreate");
    return blaslt_;
}

cublasContext* Context::blas() {
    void* workspace = blas_workspace();
    std::lock_guard<std::mutex> lk(handles_m_);
    if (blas_ == nullptr) {
        cublasHandle_t h = nullptr;
        check(cublasCreate(&h), "cublasCreate");
        blas_ = h;
        check(cublasSetStream(h, stream_), "cublasSetStream");
        if (workspace != nullptr) check(cublasSetWorkspace(h, workspace, options_.blas_workspace_bytes), "cublasSetWorkspace");
    }
    return blas_;
}

cudnnContext* Context::dnn() {
    std::lock_guard<std::mutex> lk(handles_m_);
    if (dnn_ == nullptr) {
        cudnnHandle_t h = nullptr;
        check(cudnnCreate(&h), "cudnnCreate");
        dnn_ = h;
        check(cudnnSetStream(h, stream_), "cudnnSetStream");
    }
    return dnn_;
}

void Context::synchronize() { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

Context& default_context() {
    static Context* ctx = new Context();  // never destroyed (see context.hpp)
    return *ctx;
}

Context& current() {
    Context* c = detail::current_slot();
    return c != nullptr ? *c : default_context();
}

ContextGuard::ContextGuard(Context& ctx) : previous_(detail::current_slot()) { detail::current_slot() = &ctx; }
ContextGuard::~ContextGuard() { detail::current_slot() = previous_; }

}  // namespace pickscore::cuda
