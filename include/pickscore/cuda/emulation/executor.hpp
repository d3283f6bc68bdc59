// pickscore/cuda/emulation/executor.hpp — how an emulated kernel launch runs.
// pickscore-requires: pickscore::cuda_emulation
//
// A launch runs its blocks on the CPU thread pool (parallel_for): blocks really run in parallel,
// so kernels must use atomics where blocks share memory, as on a GPU. Within a block every thread
// is a fiber (fiber.hpp) and all fibers of a block run on one OS thread. A fiber runs until it
// reaches __syncthreads, a warp-collective operation (shuffle, vote, __syncwarp, mma, ldmatrix)
// or its end; then the scheduler picks the next one. Between barriers the order of the fibers is
// shuffled with a seeded generator, different for every block and launch, so a kernel that reads
// shared memory another thread writes without a barrier in between sees stale data — the poison
// bytes (0xFF: NaN in floats, -1 in integers) shared memory holds when a block starts.
//
// Warp-collective operations wait until every lane named in the mask has arrived at an operation
// of the same kind; the last lane to arrive computes everyone's result. Lanes that never arrive
// (they exited, wait at a __syncthreads, or wait for a different operation) make the block
// deadlock, which is reported as an error naming the lanes — so are masks that name lanes the
// block does not have, and threads that exit while their warp waits for them.
//
// Errors inside a kernel (a thrown exception, a deadlock, a bad mask, too much shared memory)
// end the launch with cudaErrorLaunchFailure and a message (emu::last_error_detail()); the
// launch helper (kernels/common.cuh) turns it into pickscore::Error.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../core/error.hpp"
#include "../../core/threads.hpp"
#include "fiber.hpp"
#include "types.hpp"

namespace pickscore::cuda::emu {

// Knobs of the emulated device. Change them before launching (tests do; they are not
// synchronised with running launches).
struct Config {
    std::uint64_t seed = 0x9e3779b97f4a7c15ull;  // schedule seed: every block of every launch derives its own
    bool shuffle = true;                          // vary the fiber order between barriers
    bool poison = true;                           // fill shared memory and new allocations with 0xFF bytes
    // cp.async lands its data at the wait_group that covers it (the latest legal moment), which
    // shows a missing wait. With this set it also lands as soon as it is issued (the earliest),
    // which shows a buffer refilled while other threads still read it (a missing barrier before
    // the refill). Tests of cp.async kernels run both ways.
    bool cp_async_land_at_issue = false;
#if defined(PICKSCORE_EMU_ASAN)
    std::size_t stack_bytes = 256 * 1024;  // per emulated thread (AddressSanitizer's redzones need more)
#else
    std::size_t stack_bytes = 64 * 1024;  // per emulated thread
#endif
    std::size_t shared_default = 48 * 1024;       // static + dynamic shared memory without the opt-in attribute
    std::size_t shared_static_max = 48 * 1024;    // static shared memory (a compile-time error on nvcc)
    std::size_t shared_optin = 227 * 1024;        // cudaDevAttrMaxSharedMemoryPerBlockOptin of an H100
    unsigned max_threads_per_block = 1024;
    std::size_t device_memory = std::size_t(16) << 30;  // what cudaMalloc may hand out in all
    int multiprocessors = 132;                          // reported by cudaGetDeviceProperties
    // cuBLASLt epilogues (cublasLtEpilogue_t bits) for which the emulated heuristic finds no
    // algorithm, so tests can exercise the callers' fallback paths.
    std::uint32_t blaslt_unsupported_epilogues = 0;
};

inline Config& config() {
    static Config c;
    return c;
}

namespace detail {

// ---- per-host-thread error state of the emulated runtime ----------------------------------------

inline int& last_error_code() {
    thread_local int e = 0;
    return e;
}
inline std::string& last_error_text() {
    thread_local std::string s;
    return s;
}

// Kinds of warp-collective operation: each has a tag whose address identifies it.
template <class Op>
struct CollectiveTag {
    static constexpr char id = 0;
};

enum class ThreadState : std::uint8_t { ready, at_barrier, at_warp, done };

struct AsyncCopy {
    void* dst;
    std::array<std::byte, 16> data;
    unsigned bytes;
};

struct EmuThread;
class BlockRunner;

struct EmuThread {
    FiberContext ctx;
    BlockRunner* runner = nullptr;
    uint3 tid{0, 0, 0};
    unsigned linear = 0, lane = 0, warp = 0;
    ThreadState state = ThreadState::ready;
    // Warp collective in progress: this lane's input and output (on its own stack).
    const void* coll_in = nullptr;
    void* coll_out = nullptr;
    const char* waiting_in = nullptr;
    // __syncthreads_count/and/or
    int barrier_value = 0;
    // cp.async: copies issued since the last commit, and committed groups (oldest first)
    std::vector<AsyncCopy> async_open;
    std::vector<std::vector<AsyncCopy>> async_groups;
};

struct WarpGroup {
    unsigned mask = 0, arrived = 0;
    const void* kind = nullptr;
    const char* name = nullptr;
};

struct WarpState {
    std::array<WarpGroup, 32> groups{};
    int ngroups = 0;
    unsigned exists = 0, exited = 0;
};

// What every block of a launch shares.
struct LaunchInfo {
    dim3 grid, block;
    std::size_t dynamic_shared = 0;
    std::size_t shared_limit = 0;  // static + dynamic
    void (*entry)(const void*) = nullptr;
    const void* closure = nullptr;
    std::uint64_t seed = 0;
    std::atomic<bool>* failed = nullptr;
};

[[noreturn]] inline void kernel_fail(const std::string& what);

// Runs blocks on one OS thread; one per OS thread, reused by every launch.
class BlockRunner {
public:
    BlockRunner() = default;
    BlockRunner(const BlockRunner&) = delete;
    BlockRunner& operator=(const BlockRunner&) = delete;

    static BlockRunner*& current() {
        thread_local BlockRunner* r = nullptr;
        return r;
    }
    static BlockRunner& for_this_thread() {
        thread_local BlockRunner runner;
        return runner;
    }

    void run(const LaunchInfo& info, uint3 block_idx, std::uint64_t block_linear) {
        require(current() == nullptr, "CUDA emulation: a kernel launched another kernel (dynamic parallelism is not emulated)");
        info_ = &info;
        block_idx_ = block_idx;
        nthreads_ = info.block.x * info.block.y * info.block.z;
        prepare_threads();
        prepare_shared();
        rng_ = mix(info.seed, block_linear) | 1;
        error_ = nullptr;
        barrier_count_ = 0;
        current() = this;
        struct Reset {
            BlockRunner* r;
            ~Reset() {
                BlockRunner::current() = nullptr;
                r->running_ = nullptr;
            }
        } reset{this};
        schedule();
    }

    // ---- what kernels see (through device.hpp) ----
    EmuThread& thread() { return *running_; }
    const uint3& block_idx() const { return block_idx_; }
    const dim3& block_dim() const { return info_->block; }
    const dim3& grid_dim() const { return info_->grid; }
    unsigned nthreads() const { return nthreads_; }
    EmuThread& lane_thread(unsigned warp, unsigned lane) { return *threads_[warp * 32 + lane]; }

    std::byte* dynamic_shared() { return shared_; }

    void* static_shared(const void* key, std::size_t bytes, std::size_t align) {
        for (const auto& s : statics_)
            if (s.key == key) return shared_ + s.offset;
        align = std::max<std::size_t>(align, 16);
        const std::size_t offset = (shared_used_ + align - 1) / align * align;
        const std::size_t static_bytes = offset + bytes - static_begin_;
        if (static_bytes > config().shared_static_max)
            kernel_fail(::pickscore::detail::concat("static shared memory of ", static_bytes, " bytes exceeds the static limit of ",
                                       config().shared_static_max, " bytes (use dynamic shared memory)"));
        if (offset + bytes > info_->shared_limit)
            kernel_fail(::pickscore::detail::concat("shared memory of ", offset + bytes, " bytes (", info_->dynamic_shared,
                                       " dynamic + ", static_bytes, " static) exceeds the limit of ",
                                       info_->shared_limit, " bytes for this kernel",
                                       info_->shared_limit <= config().shared_default
                                           ? " (raise cudaFuncAttributeMaxDynamicSharedMemorySize to opt in)"
                                           : ""));
        if (config().poison) std::memset(shared_ + offset, 0xFF, bytes);
        statics_.push_back({key, offset});
        shared_used_ = offset + bytes;
        return shared_ + offset;
    }

    // Whether [p, p + bytes) lies in this block's shared memory.
    bool in_shared(const void* p, std::size_t bytes) const {
        const auto* b = static_cast<const std::byte*>(p);
        return b >= shared_ && b + bytes <= shared_ + shared_used_;
    }

    // __syncthreads and friends: waits until every thread that has not exited arrives.
    int barrier(int value) {
        EmuThread& t = thread();
        t.barrier_value = value;
        t.state = ThreadState::at_barrier;
        t.waiting_in = "__syncthreads";
        yield(t);
        return barrier_count_;
    }

    // Arrival of the running lane at a warp-collective operation. Returns true for the last lane
    // to arrive (which then computes every lane's result and calls release); the others are
    // suspended until then and get false.
    bool warp_arrive(unsigned mask, const void* kind, const char* name) {
        EmuThread& t = thread();
        WarpState& w = warps_[t.warp];
        const unsigned bit = 1u << t.lane;
        if (!(mask & bit))
            kernel_fail(::pickscore::detail::concat(name, ": lane ", t.lane, " of warp ", t.warp, " calls it with mask 0x",
                                       hex(mask), ", which does not name the lane itself"));
        if (mask & ~w.exists)
            kernel_fail(::pickscore::detail::concat(name, ": mask 0x", hex(mask), " names lanes that warp ", t.warp,
                                       " does not have (the block has ", nthreads_, " threads)"));
        if (mask & w.exited)
            kernel_fail(::pickscore::detail::concat(name, ": mask 0x", hex(mask), " names lanes of warp ", t.warp,
                                       " that have already exited (0x", hex(mask & w.exited), ")"));
        WarpGroup* g = nullptr;
        // Groups with overlapping masks may be pending together (lanes that finished one collective
        // go on to the next while others are still in the first); a lane is in at most one.
        for (int i = 0; i < w.ngroups; ++i)
            if (w.groups[std::size_t(i)].mask == mask) g = &w.groups[std::size_t(i)];
        if (g == nullptr) {
            g = &w.groups[std::size_t(w.ngroups++)];
            *g = WarpGroup{mask, 0, kind, name};
        } else if (g->kind != kind) {
            kernel_fail(::pickscore::detail::concat(name, ": lane ", t.lane, " of warp ", t.warp, " arrives while lanes 0x",
                                       hex(g->arrived), " of mask 0x", hex(mask), " wait in ", g->name,
                                       " (divergent warp-collective operations)"));
        }
        g->arrived |= bit;
        if (g->arrived == mask) return true;
        t.state = ThreadState::at_warp;
        t.waiting_in = name;
        yield(t);
        return false;
    }

    // Ends the collective of the running lane's warp with this mask: the other lanes may go on.
    void warp_release(unsigned mask) {
        EmuThread& t = thread();
        WarpState& w = warps_[t.warp];
        for (unsigned l = 0; l < 32; ++l)
            if ((mask >> l) & 1u && l != t.lane) {
                EmuThread& o = lane_thread(t.warp, l);
                o.state = ThreadState::ready;
                o.waiting_in = nullptr;
            }
        for (int i = 0; i < w.ngroups; ++i)
            if (w.groups[std::size_t(i)].mask == mask) {
                w.groups[std::size_t(i)] = w.groups[std::size_t(--w.ngroups)];
                break;
            }
    }

    unsigned warp_alive_mask() {
        const WarpState& w = warps_[thread().warp];
        return w.exists & ~w.exited;
    }

private:
    struct StaticEntry {
        const void* key;
        std::size_t offset;
    };

    static std::string hex(unsigned v) {
        std::ostringstream os;
        os << std::hex << v;
        return os.str();
    }
    static std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
        std::uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebull;
        return x ^ (x >> 31);
    }

    void prepare_threads() {
        const std::size_t stack = config().stack_bytes;
        if (stack != stack_bytes_) {  // a new stack size: drop the pool
            threads_.clear();
            stacks_.clear();
            pool_.clear();
            stack_bytes_ = stack;
        }
        while (pool_.size() < nthreads_) {
            pool_.push_back(std::make_unique<EmuThread>());
            stacks_.emplace_back(stack);
        }
        threads_.assign(nthreads_, nullptr);
        const dim3 bd = info_->block;
        for (unsigned i = 0; i < nthreads_; ++i) {
            EmuThread& t = *pool_[i];
            t.runner = this;
            t.linear = i;
            t.tid = uint3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
            t.lane = i % 32;
            t.warp = i / 32;
            t.state = ThreadState::ready;
            t.coll_in = nullptr;
            t.coll_out = nullptr;
            t.waiting_in = nullptr;
            t.async_open.clear();
            t.async_groups.clear();
            make_fiber(t.ctx, stacks_[i], &fiber_main, &t, i);
            threads_[i] = &t;
        }
        const unsigned nwarps = (nthreads_ + 31) / 32;
        warps_.assign(nwarps, WarpState{});
        for (unsigned w = 0; w < nwarps; ++w) {
            const unsigned lanes = std::min(32u, nthreads_ - w * 32);
            warps_[w].exists = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
        }
    }

    void prepare_shared() {
        const std::size_t need = config().shared_optin + 256;
        if (shared_capacity_ < need) {
            shared_storage_.reset(new std::byte[need + 128]);
            shared_capacity_ = need;
        }
        shared_ = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(shared_storage_.get()) + 127) &
                                               ~std::uintptr_t(127));
        statics_.clear();
        // Dynamic shared memory first, static allocations after it (128-byte aligned).
        shared_used_ = info_->dynamic_shared;
        static_begin_ = (shared_used_ + 127) / 128 * 128;
        shared_used_ = static_begin_;
        if (config().poison) std::memset(shared_, 0xFF, info_->dynamic_shared);
    }

    static void fiber_main(void* arg) {
        EmuThread& t = *static_cast<EmuThread*>(arg);
        BlockRunner& r = *t.runner;
        fiber_started(r.scheduler_);
        try {
            r.info_->entry(r.info_->closure);
        } catch (...) {
            if (!r.error_) r.error_ = std::current_exception();
        }
        r.thread_exited(t);
        switch_fiber(t.ctx, r.scheduler_, /*final=*/true);
        __builtin_trap();  // a finished fiber is never resumed
    }

    void thread_exited(EmuThread& t) {
        t.state = ThreadState::done;
        t.async_open.clear();
        t.async_groups.clear();
        WarpState& w = warps_[t.warp];
        w.exited |= 1u << t.lane;
        ++ndone_;
        if (error_) return;
        for (int i = 0; i < w.ngroups; ++i) {
            const WarpGroup& g = w.groups[std::size_t(i)];
            if ((g.mask >> t.lane) & 1u) {
                try {
                    kernel_fail(::pickscore::detail::concat("lane ", t.lane, " of warp ", t.warp, " exited while lanes 0x",
                                               hex(g.arrived), " wait for it in ", g.name, " (mask 0x", hex(g.mask),
                                               ")"));
                } catch (...) {
                    error_ = std::current_exception();
                }
                return;
            }
        }
    }

    void yield(EmuThread& t) { switch_fiber(t.ctx, scheduler_); }

    std::uint64_t next_random() {
        rng_ ^= rng_ >> 12;
        rng_ ^= rng_ << 25;
        rng_ ^= rng_ >> 27;
        return rng_ * 0x2545f4914f6cdd1dull;
    }

    void schedule() {
        ndone_ = 0;
        std::vector<EmuThread*>& order = order_;
        for (;;) {
            order.clear();
            for (EmuThread* t : threads_)
                if (t->state == ThreadState::ready) order.push_back(t);
            if (!order.empty()) {
                if (config().shuffle)
                    for (std::size_t i = order.size() - 1; i > 0; --i)  // Fisher-Yates
                        std::swap(order[i], order[std::size_t(next_random() % (i + 1))]);
                for (EmuThread* t : order) {
                    if (t->state != ThreadState::ready) continue;
                    running_ = t;
                    switch_fiber(scheduler_, t->ctx);
                    running_ = nullptr;
                    if (error_) std::rethrow_exception(error_);
                }
                continue;
            }
            if (ndone_ == nthreads_) return;
            unsigned at_barrier = 0;
            int count = 0;
            for (EmuThread* t : threads_)
                if (t->state == ThreadState::at_barrier) {
                    ++at_barrier;
                    count += t->barrier_value != 0;
                }
            if (at_barrier + ndone_ == nthreads_) {
                barrier_count_ = count;
                for (EmuThread* t : threads_)
                    if (t->state == ThreadState::at_barrier) {
                        t->state = ThreadState::ready;
                        t->waiting_in = nullptr;
                    }
                continue;
            }
            kernel_fail(describe_deadlock());
        }
    }

    std::string describe_deadlock() const {
        std::ostringstream os;
        os << "deadlock in block (" << block_idx_.x << "," << block_idx_.y << "," << block_idx_.z << "):";
        unsigned at_barrier = 0;
        for (const EmuThread* t : threads_) at_barrier += t->state == ThreadState::at_barrier;
        if (at_barrier) os << " " << at_barrier << " threads wait at __syncthreads;";
        if (ndone_) os << " " << ndone_ << " threads have exited;";
        for (std::size_t w = 0; w < warps_.size(); ++w)
            for (int i = 0; i < warps_[w].ngroups; ++i) {
                const WarpGroup& g = warps_[w].groups[std::size_t(i)];
                os << " warp " << w << " lanes 0x" << hex(g.arrived) << " wait in " << g.name << " for lanes 0x"
                   << hex(g.mask & ~g.arrived) << ";";
            }
        return os.str();
    }

    const LaunchInfo* info_ = nullptr;
    uint3 block_idx_{0, 0, 0};
    unsigned nthreads_ = 0;
    unsigned ndone_ = 0;
    int barrier_count_ = 0;
    std::vector<std::unique_ptr<EmuThread>> pool_;
    std::vector<FiberStack> stacks_;
    std::size_t stack_bytes_ = 0;
    std::vector<EmuThread*> threads_;
    std::vector<EmuThread*> order_;
    std::vector<WarpState> warps_;
    EmuThread* running_ = nullptr;
    FiberContext scheduler_;
    std::exception_ptr error_;
    std::uint64_t rng_ = 1;  // xorshift64* state
    std::unique_ptr<std::byte[]> shared_storage_;
    std::size_t shared_capacity_ = 0;
    std::byte* shared_ = nullptr;
    std::size_t shared_used_ = 0;
    std::size_t static_begin_ = 0;
    std::vector<StaticEntry> statics_;
};

// An error inside a running kernel.
class KernelError : public Error {
public:
    using Error::Error;
};

[[noreturn]] inline void kernel_fail(const std::string& what) { throw KernelError(what); }

// The block runner of the calling (emulated GPU) thread; device code outside a launch fails.
inline BlockRunner& runner() {
    BlockRunner* r = BlockRunner::current();
    if (r == nullptr) fail("CUDA emulation: device code (threadIdx, __syncthreads, ...) called outside a kernel launch");
    return *r;
}

// A warp-collective operation: every lane in `mask` passes its input; once all have arrived the
// last one runs compute(mask, inputs, outputs) for everybody. Tag identifies the kind of
// operation (lanes of one mask must all call the same kind).
template <class Tag, class In, class Out, class Compute>
Out collective(unsigned mask, const char* name, const In& in, Compute&& compute) {
    BlockRunner& r = runner();
    EmuThread& t = r.thread();
    Out out{};
    t.coll_in = &in;
    t.coll_out = &out;
    if (r.warp_arrive(mask, &CollectiveTag<Tag>::id, name)) {
        std::array<const In*, 32> ins{};
        std::array<Out*, 32> outs{};
        for (unsigned l = 0; l < 32; ++l)
            if ((mask >> l) & 1u) {
                EmuThread& o = r.lane_thread(t.warp, l);
                ins[l] = static_cast<const In*>(o.coll_in);
                outs[l] = static_cast<Out*>(o.coll_out);
            }
        compute(mask, ins, outs);
        r.warp_release(mask);
    }
    return out;
}

// ---- kernel function attributes (cudaFuncSetAttribute) -----------------------------------------

struct FuncAttributes {
    std::size_t max_dynamic_shared = 0;  // 0: not raised
};

inline std::mutex& func_attr_mutex() {
    static std::mutex m;
    return m;
}
inline std::unordered_map<std::uintptr_t, FuncAttributes>& func_attributes() {
    static std::unordered_map<std::uintptr_t, FuncAttributes> map;
    return map;
}

inline std::uint64_t next_launch_id() {
    static std::atomic<std::uint64_t> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed);
}

// Sets the emulated runtime's last error; returns it.
inline int set_error(int code, std::string text) {
    last_error_code() = code;
    last_error_text() = std::move(text);
    return code;
}

// Checks the launch configuration as the driver does; returns 0 or a cudaError_t value with
// the reason in last_error_text().
inline int check_launch_config(std::uintptr_t func, dim3 grid, dim3 block, std::size_t dynamic_shared,
                               std::size_t& shared_limit) {
    const Config& c = config();
    const std::uint64_t threads = std::uint64_t(block.x) * block.y * block.z;
    if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
        return set_error(9, ::pickscore::detail::concat("grid (", grid.x, ",", grid.y, ",", grid.z, ") or block (", block.x, ",",
                                           block.y, ",", block.z, ") has a zero dimension"));
    if (threads > c.max_threads_per_block || block.x > 1024 || block.y > 1024 || block.z > 64)
        return set_error(9, ::pickscore::detail::concat("block (", block.x, ",", block.y, ",", block.z, ") has ", threads,
                                           " threads; the limit is ", c.max_threads_per_block,
                                           " per block (and 1024 x 1024 x 64 per dimension)"));
    if (grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u)
        return set_error(9, ::pickscore::detail::concat("grid (", grid.x, ",", grid.y, ",", grid.z,
                                           ") exceeds the limits 2^31-1 x 65535 x 65535"));
    std::size_t raised = 0;
    {
        std::lock_guard<std::mutex> lk(func_attr_mutex());
        auto it = func_attributes().find(func);
        if (it != func_attributes().end()) raised = it->second.max_dynamic_shared;
    }
    if (raised == 0) {
        shared_limit = c.shared_default;
        if (dynamic_shared > c.shared_default)
            return set_error(1, ::pickscore::detail::concat("dynamic shared memory of ", dynamic_shared, " bytes exceeds the default limit of ",
                                               c.shared_default,
                                               " bytes; raise it with cudaFuncSetAttribute(kernel, "
                                               "cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)"));
    } else {
        shared_limit = c.shared_optin;
        if (dynamic_shared > raised)
            return set_error(1, ::pickscore::detail::concat("dynamic shared memory of ", dynamic_shared,
                                               " bytes exceeds the kernel's cudaFuncAttributeMaxDynamicSharedMemorySize of ",
                                               raised, " bytes"));
    }
    return 0;
}

// Runs every block of a launch; returns 0 or cudaErrorLaunchFailure (719) with the reason.
inline int run_grid(LaunchInfo& info) {
    const std::int64_t nx = info.grid.x, ny = info.grid.y, nz = info.grid.z;
    const std::int64_t nblocks = nx * ny * nz;
    std::atomic<bool> failed{false};
    info.failed = &failed;
    try {
        parallel_for(nblocks, [&](std::int64_t b) {
            if (failed.load(std::memory_order_relaxed)) return;
            const uint3 idx{unsigned(b % nx), unsigned((b / nx) % ny), unsigned(b / (nx * ny))};
            try {
                BlockRunner::for_this_thread().run(info, idx, std::uint64_t(b));
            } catch (const std::exception& e) {
                failed.store(true);
                throw KernelError(::pickscore::detail::concat("block (", idx.x, ",", idx.y, ",", idx.z, "): ", e.what()));
            } catch (...) {
                failed.store(true);
                throw;
            }
        });
    } catch (const std::exception& e) {
        return set_error(719, e.what());
    } catch (...) {
        return set_error(719, "a kernel threw an exception that is not a std::exception");
    }
    return 0;
}

}  // namespace detail

// Launches kernel<<<grid, block, dynamic_shared>>>(args...) in the emulator and waits for it.
// Returns 0 (cudaSuccess) or the error code, which is also recorded as the runtime's last error
// (cudaGetLastError) together with a message (last_error_detail()).
template <class... Params, class... Args>
int launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t dynamic_shared, Args&&... args) {
    static_assert(sizeof...(Params) == sizeof...(Args), "launch: wrong number of kernel arguments");
    const auto func = reinterpret_cast<std::uintptr_t>(kernel);
    detail::LaunchInfo info;
    info.grid = grid;
    info.block = block;
    info.dynamic_shared = dynamic_shared;
    if (int e = detail::check_launch_config(func, grid, block, dynamic_shared, info.shared_limit)) return e;
    // Kernel parameters are copied once, as into the GPU's parameter space; every thread then
    // receives its own copies.
    struct Closure {
        void (*fn)(Params...);
        std::tuple<std::decay_t<Params>...> args;
    };
    const Closure closure{kernel, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
    info.entry = [](const void* c) {
        const Closure& cl = *static_cast<const Closure*>(c);
        std::apply(cl.fn, cl.args);
    };
    info.closure = &closure;
    info.seed = config().seed ^ (detail::next_launch_id() * 0x2545f4914f6cdd1dull);
    return detail::run_grid(info);
}

// The message that goes with the last error of the calling thread (empty if none).
inline const std::string& last_error_detail() { return detail::last_error_text(); }

}  // namespace pickscore::cuda::emu
