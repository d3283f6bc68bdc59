// pickscore/cuda/context.hpp — where CUDA work goes: a Context owns a stream, a stream-ordered
// caching allocator, and the cuBLASLt/cuBLAS/cuDNN handles; each host thread has a current
// context, so ops take no context argument.
// pickscore-requires: pickscore::cuda_emulation (or pickscore::cuda: the CUDA runtime API, real or emulated)
//
//   cuda::Context ctx;                    // a stream of its own
//   {
//       cuda::ContextGuard use(ctx);      // ops on this thread now go to ctx's stream
//       Tensor<float, Cuda> x(Shape{4, 8});   // allocated from ctx's allocator
//       ...
//       ctx.synchronize();                // waits for the stream; reports asynchronous errors
//   }                                     // back to the previous context
//
// Without a guard, cuda::current() is the process's default context (created on first use).
//
// The allocator never calls cudaMalloc for a request it can serve from its cache: freed blocks
// go back to a free list of their size class and are handed out again. That is safe without any
// synchronisation because it is stream-ordered: every use of a block is work on the context's
// stream, and the stream runs work in issue order, so a block's next user runs after its last
// one. (Do not use a tensor on another stream without synchronising; then it is yours to order.)
// Size classes: multiples of 512 bytes up to 1 MiB, then eight classes per power of two.
// trim() returns the cache to the driver; stats() counts what happened, for tests.
//
// The member functions that need cuBLAS/cuDNN are compiled once, in the pickscore::cuda library
// (kernels/runtime.cuh); the allocator is inline here.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "runtime.hpp"

// The library handle types, as their headers declare them (so this header needs none of them).
struct cublasLtContext;
struct cublasContext;
struct cudnnContext;

namespace pickscore::cuda {

struct AllocatorStats {
    std::size_t requests = 0;            // allocate() calls for a non-zero size
    std::size_t reused = 0;              // ... served from the cache
    std::size_t device_allocations = 0;  // cudaMalloc calls made
    std::size_t device_frees = 0;        // cudaFree calls made
    std::size_t bytes_in_use = 0;        // handed out, not yet returned (size-class bytes)
    std::size_t peak_bytes_in_use = 0;
    std::size_t bytes_cached = 0;  // returned and kept for reuse
};

class Allocator {
public:
    explicit Allocator(cudaStream_t stream) : stream_(stream) {}
    ~Allocator() {
        std::lock_guard<std::mutex> lk(m_);
        release_cache_locked();
    }
    Allocator(const Allocator&) = delete;
    Allocator& operator=(const Allocator&) = delete;

    // The size class a request of `bytes` is served from.
    static std::size_t size_class(std::size_t bytes) {
        constexpr std::size_t small = 512, small_limit = std::size_t(1) << 20;
        if (bytes <= small_limit) return (bytes + small - 1) / small * small;
        const std::size_t step = std::bit_floor(bytes - 1) / 8;
        return (bytes + step - 1) / step * step;
    }

    // A block of at least `bytes` bytes (256-byte aligned), usable by work on stream(); null for 0.
    void* allocate(std::size_t bytes) {
        if (bytes == 0) return nullptr;
        const std::size_t cls = size_class(bytes);
        {
            std::lock_guard<std::mutex> lk(m_);
            ++stats_.requests;
            auto it = free_.find(cls);
            if (it != free_.end() && !it->second.empty()) {
                void* p = it->second.back();
                it->second.pop_back();
                ++stats_.reused;
                stats_.bytes_cached -= cls;
                take_locked(cls);
                return p;
            }
        }
        void* p = nullptr;
        cudaError_t e = cudaMalloc(&p, cls);
        if (e == cudaErrorMemoryAllocation) {  // give the cache back and try once more
            (void)cudaGetLastError();
            trim();
            e = cudaMalloc(&p, cls);
        }
        if (e != cudaSuccess) {
            const AllocatorStats s = stats();
            check(e, pickscore::detail::concat("cudaMalloc of ", cls, " bytes (", s.bytes_in_use, " bytes in use, ", s.bytes_cached,
                                    " cached)")
                         .c_str());
        }
        std::lock_guard<std::mutex> lk(m_);
        ++stats_.device_allocations;
        take_locked(cls);
        return p;
    }

    // Returns a block (with the size it was allocated with) to the cache. Work already issued
    // on stream() may still use it: the next user is ordered after that work.
    void deallocate(void* p, std::size_t bytes) noexcept {
        if (p == nullptr) return;
        const std::size_t cls = size_class(bytes);
        std::lock_guard<std::mutex> lk(m_);
        stats_.bytes_in_use -= cls;
        if (detached_) {
            (void)cudaFree(p);
            ++stats_.device_frees;
            return;
        }
        try {
            free_[cls].push_back(p);
            stats_.bytes_cached += cls;
        } catch (...) {  // no memory for the free list: give the block back instead
            (void)cudaFree(p);
            ++stats_.device_frees;
        }
    }

    // Waits for the stream, then frees every cached block.
    void trim() {
        cudaStream_t s;
        {
            std::lock_guard<std::mutex> lk(m_);
            s = detached_ ? nullptr : stream_;
        }
        if (s != nullptr) (void)cudaStreamSynchronize(s);
        std::lock_guard<std::mutex> lk(m_);
        release_cache_locked();
    }

    AllocatorStats stats() const {
        std::lock_guard<std::mutex> lk(m_);
        return stats_;
    }
    cudaStream_t stream() const { return stream_; }

    // The stream is going away (its Context is destroyed): free the cache; blocks still in use
    // are freed with cudaFree when they come back.
    void detach() {
        if (stream_ != nullptr) (void)cudaStreamSynchronize(stream_);
        std::lock_guard<std::mutex> lk(m_);
        release_cache_locked();
        detached_ = true;
        stream_ = nullptr;
    }

private:
    void take_locked(std::size_t cls) {
        stats_.bytes_in_use += cls;
        if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
    }
    void release_cache_locked() {
        for (auto& [cls, blocks] : free_) {
            for (void* p : blocks) {
                (void)cudaFree(p);
                ++stats_.device_frees;
            }
            stats_.bytes_cached -= cls * blocks.size();
            blocks.clear();
        }
        free_.clear();
    }

    mutable std::mutex m_;
    cudaStream_t stream_;
    bool detached_ = false;
    std::unordered_map<std::size_t, std::vector<void*>> free_;
    AllocatorStats stats_;
};

struct ContextOptions {
    std::size_t blas_workspace_bytes = std::size_t(32) << 20;  // cuBLASLt workspace (32 MiB suits Hopper)
    bool allow_tf32 = false;  // f32 GEMMs on TF32 tensor cores (off: exact f32, CUBLAS_COMPUTE_32F)
};

namespace detail {
struct BlasCache;  // cuBLASLt algorithm choices (kernels/runtime.cuh)
}

class Context {
public:
    Context();
    explicit Context(const ContextOptions& options);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    cudaStream_t stream() const { return stream_; }
    Allocator& allocator() { return *allocator_; }
    const std::shared_ptr<Allocator>& allocator_ptr() const { return allocator_; }
    const ContextOptions& options() const { return options_; }

    // Library handles bound to stream(), created on first use.
    cublasLtContext* blaslt();
    cublasContext* blas();
    cudnnContext* dnn();
    // The cuBLAS(Lt) workspace (allocated on first use).
    void* blas_workspace();
    std::size_t blas_workspace_bytes() const { return options_.blas_workspace_bytes; }
    detail::BlasCache& blas_cache() { return *blas_cache_; }

    // Waits until the stream has done everything issued to it; throws on asynchronous errors.
    void synchronize();

private:
    ContextOptions options_;
    cudaStream_t stream_ = nullptr;
    std::shared_ptr<Allocator> allocator_;
    std::mutex handles_m_;
    cublasLtContext* blaslt_ = nullptr;
    cublasContext* blas_ = nullptr;
    cudnnContext* dnn_ = nullptr;
    void* workspace_ = nullptr;
    std::unique_ptr<detail::BlasCache> blas_cache_;
};

// The calling thread's current context: the innermost ContextGuard's, else default_context().
Context& current();
// The process-wide context used where no guard says otherwise (created on first use, and
// deliberately never destroyed: the CUDA runtime may be gone by the time statics are).
Context& default_context();

// Makes `ctx` the calling thread's current context for the guard's lifetime.
class ContextGuard {
public:
    explicit ContextGuard(Context& ctx);
    ~ContextGuard();
    ContextGuard(const ContextGuard&) = delete;
    ContextGuard& operator=(const ContextGuard&) = delete;

private:
    Context* previous_;
};

// Waits for the current context's stream.
inline void synchronize() { current().synchronize(); }

}  // namespace pickscore::cuda
