// pickscore/train/comm.hpp — collective communication for data-parallel training: the interface,
// a single-process stand-in, and a host implementation (ranks as threads of one process).
//
//   auto group = std::make_shared<train::HostGroup>(2);         // two ranks in this process
//   std::thread t([&] { train::HostCommunicator c(group, 1); ...; c.all_reduce_sum(g, n, DType::f32); });
//   train::HostCommunicator c0(group, 0); ...
//
// Communicator: sums over ranks (in place), broadcast, barrier, and the gather of per-rank ranges
// that optimizer-state sharding needs. Buffers live in the communicator's memory: host memory for
// HostCommunicator and LocalCommunicator, device memory for the NCCL one (train/nccl.hpp); the
// *_host variants take host memory everywhere (metrics, flags). Every rank must make the same
// calls in the same order (as with NCCL and MPI). all_reduce_sum_async / wait_async let the sum
// of a gradient bucket run while the backward goes on (train/overlap.hpp).
//
// HostCommunicator's sums are deterministic and identical on every rank: rank r sums its 1/W of the
// elements over the ranks' buffers in rank order (in the element type; double for the host
// variants) and writes the result to every buffer.
//
// Who am I: distributed_env() reads rank and world size from PICKSCORE_RANK / PICKSCORE_WORLD_SIZE,
// else RANK / WORLD_SIZE (torchrun), else OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE (mpirun), else
// PMI_RANK / PMI_SIZE; the local rank (which GPU) from PICKSCORE_LOCAL_RANK, LOCAL_RANK,
// OMPI_COMM_WORLD_LOCAL_RANK, else rank.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"

namespace pickscore::train {

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int world() const = 0;
    // Whether the buffers of all_reduce_sum / broadcast / all_gather_ranges are host memory.
    virtual bool host_memory() const = 0;

    // data[0, count) ← Σ over ranks, in place. dtype: f32, f64 or bf16.
    virtual void all_reduce_sum(void* data, std::int64_t count, DType dtype) = 0;
    // data ← root's data.
    virtual void broadcast(void* data, std::int64_t count, DType dtype, int root) = 0;
    virtual void barrier() = 0;
    // Host doubles, summed over ranks in place.
    virtual void all_reduce_sum_host(double* data, std::int64_t count) = 0;

    // Overlap: starts data[0, count) ← Σ over ranks and returns without waiting for it, so the
    // caller can go on computing (the trainer starts each gradient bucket as soon as the backward
    // has finished it). wait_async() completes every sum started so far. Until then the buffer
    // must not be read or written, and the only other call allowed is another *_async; every rank
    // starts the same sums in the same order. The default is the blocking all_reduce_sum.
    //   HostCommunicator: a thread per rank does the sums, in order; wait_async blocks for them.
    //   NcclCommunicator: the sums run on a stream of their own, each after the work queued so far
    //   on the current stream; wait_async makes the current stream wait for them (no host wait).
    void all_reduce_sum_async(void* data, std::int64_t count, DType dtype) {
        ++async_started_;
        start_all_reduce_sum(data, count, dtype);
    }
    virtual void wait_async() {}
    // Sums started with all_reduce_sum_async since the communicator was made (what a test reads
    // to see that the overlap happened).
    std::int64_t async_started() const { return async_started_; }

    // Every rank's range data[offsets[r], offsets[r+1]) (elements) is copied to the other ranks.
    // offsets has world + 1 non-decreasing entries. The default broadcasts each range.
    virtual void all_gather_ranges(void* data, std::span<const std::int64_t> offsets, DType dtype) {
        require(std::int64_t(offsets.size()) == world() + 1, "all_gather_ranges: ", offsets.size(),
                " offsets for world size ", world());
        const std::size_t esize = dtype_size(dtype);
        for (int r = 0; r < world(); ++r) {
            const std::int64_t n = offsets[std::size_t(r) + 1] - offsets[std::size_t(r)];
            if (n > 0)
                broadcast(static_cast<std::byte*>(data) + std::size_t(offsets[std::size_t(r)]) * esize, n, dtype, r);
        }
    }

protected:
    // all_reduce_sum_async's work; the default blocks.
    virtual void start_all_reduce_sum(void* data, std::int64_t count, DType dtype) {
        all_reduce_sum(data, count, dtype);
    }

private:
    std::int64_t async_started_ = 0;
};

// [lo, hi) of rank r when n elements are split over `world` ranks in pieces that start at
// multiples of `align` elements (the last piece takes the rest; a piece may be empty).
inline std::vector<std::int64_t> shard_offsets(std::int64_t n, int world, std::int64_t align = 16) {
    require(world >= 1 && n >= 0 && align >= 1, "shard_offsets: n ", n, ", world ", world, ", align ", align);
    const std::int64_t per = (n + world - 1) / world;
    const std::int64_t chunk = (per + align - 1) / align * align;
    std::vector<std::int64_t> o(std::size_t(world) + 1);
    for (int r = 0; r <= world; ++r) o[std::size_t(r)] = std::min(n, std::int64_t(r) * chunk);
    o[std::size_t(world)] = n;
    return o;
}

// One process, one rank: every collective is the identity.
class LocalCommunicator final : public Communicator {
public:
    int rank() const override { return 0; }
    int world() const override { return 1; }
    bool host_memory() const override { return true; }
    void all_reduce_sum(void*, std::int64_t, DType) override {}
    void broadcast(void*, std::int64_t, DType, int root) override {
        require(root == 0, "broadcast: root ", root, " in a world of 1");
    }
    void barrier() override {}
    void all_reduce_sum_host(double*, std::int64_t) override {}
    void all_gather_ranges(void*, std::span<const std::int64_t>, DType) override {}
};

// The shared state of W host ranks: a reusable barrier and the buffers posted for a collective.
class HostGroup {
public:
    explicit HostGroup(int world) : world_(world), ptrs_(std::size_t(world), nullptr) {
        require(world >= 1, "HostGroup: world size must be at least 1, got ", world);
    }
    int world() const { return world_; }

    // Blocks until all W ranks have arrived. If a rank failed (mark_failed()), throws in every waiter.
    void arrive_and_wait() {
        std::unique_lock<std::mutex> lk(m_);
        check_aborted();
        const std::uint64_t gen = generation_;
        if (++arrived_ == world_) {
            arrived_ = 0;
            ++generation_;
            cv_.notify_all();
            return;
        }
        cv_.wait(lk, [&] { return generation_ != gen || aborted_; });
        check_aborted();
    }
    // A rank that failed calls this so the others do not wait for it forever.
    void mark_failed() {
        std::lock_guard<std::mutex> lk(m_);
        aborted_ = true;
        cv_.notify_all();
    }
    void post(int rank, void* p) { ptrs_[std::size_t(rank)] = p; }
    void* posted(int rank) const { return ptrs_[std::size_t(rank)]; }

private:
    void check_aborted() const {
        if (aborted_) fail<Error>("HostCommunicator: another rank failed; the collective cannot complete");
    }
    int world_;
    std::mutex m_;
    std::condition_variable cv_;
    int arrived_ = 0;
    std::uint64_t generation_ = 0;
    bool aborted_ = false;
    std::vector<void*> ptrs_;
};

// The sums of all_reduce_sum_async run on a thread of the communicator's own, in the order they
// were started (every rank's thread meets the others' in the group); the blocking calls first wait
// for them (so the group sees every rank's collectives in the same order).
class HostCommunicator final : public Communicator {
public:
    HostCommunicator(std::shared_ptr<HostGroup> group, int rank) : g_(std::move(group)), rank_(rank) {
        require(g_ != nullptr, "HostCommunicator: no group");
        require(rank >= 0 && rank < g_->world(), "HostCommunicator: rank ", rank, " outside world ", g_->world());
    }
    HostCommunicator(const HostCommunicator&) = delete;
    HostCommunicator& operator=(const HostCommunicator&) = delete;
    // Sums still queued when the communicator goes (an error unwound the caller past wait_async)
    // cannot complete: the group is marked failed so that no other rank waits for them forever.
    ~HostCommunicator() override {
        if (!worker_.joinable()) return;
        {
            std::lock_guard<std::mutex> lk(qm_);
            if (!queue_.empty() || busy_) g_->mark_failed();
            stop_ = true;
        }
        qcv_.notify_all();
        worker_.join();
    }
    int rank() const override { return rank_; }
    int world() const override { return g_->world(); }
    bool host_memory() const override { return true; }
    HostGroup& group() { return *g_; }

    void all_reduce_sum(void* data, std::int64_t count, DType dtype) override {
        wait_async();
        sum_now(data, count, dtype);
    }
    void all_reduce_sum_host(double* data, std::int64_t count) override {
        wait_async();
        reduce<double, double>(data, count);
    }

    // Blocks until this rank's started sums are done; rethrows the first error one of them hit.
    void wait_async() override {
        if (!worker_.joinable()) return;
        std::unique_lock<std::mutex> lk(qm_);
        qcv_.wait(lk, [&] { return queue_.empty() && !busy_; });
        if (error_) {
            std::exception_ptr e = error_;
            error_ = nullptr;
            std::rethrow_exception(e);
        }
    }

    void broadcast(void* data, std::int64_t count, DType dtype, int root) override {
        require(root >= 0 && root < world(), "broadcast: root ", root, " outside world ", world());
        wait_async();
        exchange(data, [&] {
            if (rank_ != root) {
                const void* src = g_->posted(root);
                std::memcpy(data, src, std::size_t(count) * dtype_size(dtype));
            }
        });
    }
    void barrier() override {
        wait_async();
        g_->arrive_and_wait();
    }

    void all_gather_ranges(void* data, std::span<const std::int64_t> offsets, DType dtype) override {
        require(std::int64_t(offsets.size()) == world() + 1, "all_gather_ranges: ", offsets.size(),
                " offsets for world size ", world());
        wait_async();
        const std::size_t es = dtype_size(dtype);
        exchange(data, [&] {
            for (int r = 0; r < world(); ++r) {
                if (r == rank_) continue;
                const std::int64_t lo = offsets[std::size_t(r)], hi = offsets[std::size_t(r) + 1];
                if (hi > lo)
                    std::memcpy(static_cast<std::byte*>(data) + std::size_t(lo) * es,
                                static_cast<const std::byte*>(g_->posted(r)) + std::size_t(lo) * es,
                                std::size_t(hi - lo) * es);
            }
        });
    }

protected:
    void start_all_reduce_sum(void* data, std::int64_t count, DType dtype) override {
        check_dtype(dtype);
        {
            std::lock_guard<std::mutex> lk(qm_);
            queue_.push_back({data, count, dtype});
            if (!worker_.joinable()) worker_ = std::thread([this] { work(); });
        }
        qcv_.notify_all();
    }

private:
    struct Pending {
        void* data;
        std::int64_t count;
        DType dtype;
    };

    static void check_dtype(DType dtype) {
        require(dtype == DType::f32 || dtype == DType::f64 || dtype == DType::bf16,
                "HostCommunicator::all_reduce_sum: unsupported dtype ", dtype_name(dtype));
    }
    void sum_now(void* data, std::int64_t count, DType dtype) {
        check_dtype(dtype);
        switch (dtype) {
            case DType::f32: reduce<float, float>(static_cast<float*>(data), count); break;
            case DType::f64: reduce<double, double>(static_cast<double*>(data), count); break;
            default: reduce<bf16, float>(static_cast<bf16*>(data), count); break;
        }
    }

    // The thread of all_reduce_sum_async: takes the sums in order; after an error it drops the rest
    // (the group is failed: they could not complete) and wait_async reports the error.
    void work() {
        std::unique_lock<std::mutex> lk(qm_);
        for (;;) {
            qcv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) return;  // stop_
            const Pending p = queue_.front();
            queue_.pop_front();
            busy_ = true;
            const bool failed = error_ != nullptr;
            lk.unlock();
            if (!failed) {
                try {
                    sum_now(p.data, p.count, p.dtype);
                } catch (...) {
                    lk.lock();
                    error_ = std::current_exception();
                    lk.unlock();
                }
            }
            lk.lock();
            busy_ = false;
            qcv_.notify_all();
        }
    }

    // Posts the buffer, waits for all, runs fn (reading other ranks' buffers), waits again (so no
    // buffer is reused while another rank still reads it).
    template <class F>
    void exchange(void* data, F&& fn) {
        g_->post(rank_, data);
        g_->arrive_and_wait();
        try {
            fn();
        } catch (...) {
            g_->mark_failed();
            throw;
        }
        g_->arrive_and_wait();
    }

    template <class E, class A>
    void reduce(E* data, std::int64_t count) {
        const int W = world();
        const std::int64_t lo = count * rank_ / W, hi = count * (rank_ + 1) / W;
        exchange(data, [&] {
            for (std::int64_t i = lo; i < hi; ++i) {
                A sum = A(0);
                for (int r = 0; r < W; ++r) sum += cast<A>(static_cast<const E*>(g_->posted(r))[i]);
                const E v = cast<E>(sum);
                for (int r = 0; r < W; ++r) static_cast<E*>(g_->posted(r))[i] = v;
            }
        });
    }

    std::shared_ptr<HostGroup> g_;
    int rank_;
    std::mutex qm_;
    std::condition_variable qcv_;
    std::deque<Pending> queue_;
    bool busy_ = false, stop_ = false;
    std::exception_ptr error_;
    std::thread worker_;
};

// ---- where this process stands in a launch ---------------------------------------------------------

struct DistributedEnv {
    int rank = 0, world = 1, local_rank = 0;
    std::string source;  // the variables it came from ("" when not launched in parallel)
};

inline DistributedEnv distributed_env() {
    auto get = [](const char* name) -> const char* {
        const char* v = std::getenv(name);
        return v && *v ? v : nullptr;
    };
    auto to_int = [](const char* name, const char* v) {
        char* end = nullptr;
        const long x = std::strtol(v, &end, 10);
        require(end && *end == '\0' && x >= 0 && x < (1 << 20), "environment variable ", name, "='", v,
                "' is not a valid number");
        return int(x);
    };
    DistributedEnv e;
    const char* pairs[][2] = {{"PICKSCORE_RANK", "PICKSCORE_WORLD_SIZE"},
                              {"RANK", "WORLD_SIZE"},
                              {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                              {"PMI_RANK", "PMI_SIZE"}};
    for (const auto& p : pairs) {
        const char* r = get(p[0]);
        const char* w = get(p[1]);
        if (r && w) {
            e.rank = to_int(p[0], r);
            e.world = to_int(p[1], w);
            e.source = std::string(p[0]) + "/" + p[1];
            require(e.world >= 1 && e.rank < e.world, p[0], "=", e.rank, " is not below ", p[1], "=", e.world);
            break;
        }
    }
    e.local_rank = e.rank;
    for (const char* name : {"PICKSCORE_LOCAL_RANK", "LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"})
        if (const char* v = get(name)) {
            e.local_rank = to_int(name, v);
            break;
        }
    return e;
}

}  // namespace pickscore::train
