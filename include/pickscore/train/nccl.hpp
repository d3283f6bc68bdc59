// pickscore/train/nccl.hpp — the Communicator of train/comm.hpp over NCCL: one process (or thread)
// per GPU, buffers in device memory, collectives on the current cuda::Context's stream.
// pickscore-requires: pickscore::nccl
//
//   const train::DistributedEnv env = train::distributed_env();   // rank, world, local rank
//   cuda::check(cudaSetDevice(env.local_rank), "cudaSetDevice");  // before any CUDA work
//   auto comm = train::NcclCommunicator::create(env, train::nccl_bootstrap_from_env());
//   train::Trainer<bf16, Cuda> t(model, loader, *comm, options, ...);
//
// Agreeing on the id (NcclBootstrap, in this order of preference):
//   id_hex   the ncclUniqueId as hex (PICKSCORE_NCCL_ID), the same in every rank. The process that
//            created it (ncclGetUniqueId) hosts NCCL's bootstrap root, so it must stay alive until
//            all ranks have joined: for a launcher written against this library
//            (nccl_unique_id_hex()), not for a shell.
//   id_file  a file all ranks see (PICKSCORE_NCCL_ID_FILE, `pickscore train --nccl-id-file`): rank 0
//            creates the id and writes it (train/nccl_id.hpp: atomic, with world size and job), the
//            others wait for it up to timeout_seconds (PICKSCORE_NCCL_ID_TIMEOUT); rank 0 removes it
//            once every rank has joined.
//   NCCL_COMM_ID=host:port in every rank's environment (NCCL's own mechanism): every rank derives
//            the id from it and rank 0 hosts the bootstrap root at that address.
//
// The collectives run on cuda::current().stream() at the time of the call, so they are ordered
// after the work that produced the buffers (the Trainer's ops go to the same stream) and the
// buffers may come from that context's stream-ordered allocator. all_reduce_sum, broadcast and
// all_gather_ranges return once the work is queued; barrier and all_reduce_sum_host wait for the
// stream. Every rank must make the same calls in the same order. Each communicator belongs to the
// CUDA device that was current when it was made; calling it with another device current is an
// error. Every NCCL status is checked: a failure throws cuda::CudaError (a pickscore::Error) naming
// the call, NCCL's error string and its last-error text.
//
// all_reduce_sum_async (the trainer's gradient buckets, overlapped with the backward) runs on a
// second stream of the communicator's own: each sum waits (an event) for the work queued so far on
// the current stream, and wait_async() makes the current stream wait for all of them, so the host
// never blocks and the optimizer step is ordered after the last bucket. The blocking collectives
// call wait_async() first, so NCCL sees every rank's operations in one order.
//
// Not yet: any test on more than one GPU (see tests/cuda/test_nccl.cpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <source_location>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <nccl.h>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../cuda/context.hpp"
#include "../cuda/runtime.hpp"
#include "comm.hpp"
#include "nccl_id.hpp"

#if defined(PICKSCORE_CUDA_EMULATION)
#error "pickscore/train/nccl.hpp needs the real CUDA runtime (pickscore::cuda), not the host emulation"
#endif

namespace pickscore::train {

static_assert(sizeof(ncclUniqueId) == nccl_id_size, "ncclUniqueId is not NCCL_UNIQUE_ID_BYTES (128) bytes");

namespace detail {
inline const char* nccl_result_name(ncclResult_t r) {
    switch (r) {
        case ncclSuccess: return "ncclSuccess";
        case ncclUnhandledCudaError: return "ncclUnhandledCudaError";
        case ncclSystemError: return "ncclSystemError";
        case ncclInternalError: return "ncclInternalError";
        case ncclInvalidArgument: return "ncclInvalidArgument";
        case ncclInvalidUsage: return "ncclInvalidUsage";
        case ncclRemoteError: return "ncclRemoteError";
        case ncclInProgress: return "ncclInProgress";
        default: return "ncclResult";
    }
}
}  // namespace detail

// Throws cuda::CudaError (library "NCCL") unless r is ncclSuccess; `comm` adds NCCL's last-error text.
inline void nccl_check(ncclResult_t r, const char* call, ncclComm_t comm = nullptr,
                  std::source_location where = std::source_location::current()) {
    if (r == ncclSuccess) return;
    const char* last = ncclGetLastError(comm);
    cuda::detail::throw_error("NCCL", int(r), call, detail::nccl_result_name(r), ncclGetErrorString(r),
                              last ? std::string(last) : std::string(), where);
}

inline ncclDataType_t nccl_type(DType t, const char* op) {
    switch (t) {
        case DType::f32: return ncclFloat32;
        case DType::f64: return ncclFloat64;
        case DType::f16: return ncclFloat16;
        case DType::bf16: return ncclBfloat16;
        case DType::i32: return ncclInt32;
    }
    fail<Error>(op, ": unsupported dtype");
}

// A fresh id (this process then hosts NCCL's bootstrap root until the ranks have joined).
inline ncclUniqueId nccl_unique_id() {
    ncclUniqueId id;
    nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    return id;
}
inline std::string nccl_unique_id_hex() {
    const ncclUniqueId id = nccl_unique_id();
    return hex_encode(std::as_bytes(std::span(id.internal)));
}

// How the ranks agree on the id (see the top of this file).
struct NcclBootstrap {
    std::string id_hex;
    std::filesystem::path id_file;
    double timeout_seconds = 300;
    std::string job = nccl_launch_job();
};

// PICKSCORE_NCCL_ID, PICKSCORE_NCCL_ID_FILE and PICKSCORE_NCCL_ID_TIMEOUT (seconds).
inline NcclBootstrap nccl_bootstrap_from_env() {
    NcclBootstrap b;
    if (const char* v = std::getenv("PICKSCORE_NCCL_ID")) b.id_hex = v;
    if (const char* v = std::getenv("PICKSCORE_NCCL_ID_FILE")) b.id_file = v;
    if (const char* v = std::getenv("PICKSCORE_NCCL_ID_TIMEOUT"); v && *v) {
        char* end = nullptr;
        const double s = std::strtod(v, &end);
        require(end && *end == '\0' && s > 0 && s < 1e7, "PICKSCORE_NCCL_ID_TIMEOUT='", v,
                "' is not a number of seconds");
        b.timeout_seconds = s;
    }
    return b;
}

class NcclCommunicator final : public Communicator {
public:
    // Joins the group of `world` ranks as `rank` on the calling thread's current CUDA device.
    // Collective: returns once all ranks have joined with the same id.
    NcclCommunicator(int rank, int world, const ncclUniqueId& id) : rank_(rank), world_(world) {
        require(world >= 1 && rank >= 0 && rank < world, "NcclCommunicator: rank ", rank, " of world ", world);
        cuda::check(cudaGetDevice(&device_), "cudaGetDevice");
        nccl_check(ncclCommInitRank(&comm_, world, id, rank), "ncclCommInitRank");
    }

    // Joins the launch described by env (rank, world) with the id agreed as `b` says.
    static std::unique_ptr<NcclCommunicator> create(const DistributedEnv& env, const NcclBootstrap& b) {
        ncclUniqueId id;
        bool wrote_file = false;
        if (!b.id_hex.empty()) {
            const auto bytes = hex_decode(b.id_hex, sizeof(id.internal), "PICKSCORE_NCCL_ID (the NCCL id as hex)");
            std::memcpy(id.internal, bytes.data(), bytes.size());
        } else if (!b.id_file.empty()) {
            if (env.rank == 0) {
                id = nccl_unique_id();
                write_nccl_id_file(b.id_file, std::as_bytes(std::span(id.internal)), env.world, b.job);
                wrote_file = true;
            } else {
                const auto ms = std::chrono::milliseconds(std::int64_t(b.timeout_seconds * 1000.0));
                const auto bytes = wait_for_nccl_id_file(b.id_file, env.world, b.job, ms);
                std::memcpy(id.internal, bytes.data(), bytes.size());
            }
        } else if (const char* c = std::getenv("NCCL_COMM_ID"); c && *c) {
            id = nccl_unique_id();  // derived from NCCL_COMM_ID, the same in every rank
        } else {
            fail<Error>("NcclCommunicator: rank ", env.rank, " of ", env.world,
                        " has no way to agree on the NCCL id with the other ranks: give a file all ranks see "
                        "(PICKSCORE_NCCL_ID_FILE or --nccl-id-file), set NCCL_COMM_ID=host:port, or "
                        "PICKSCORE_NCCL_ID");
        }
        auto comm = std::make_unique<NcclCommunicator>(env.rank, env.world, id);
        if (wrote_file) {  // every rank has joined, so every rank has read it
            std::error_code ec;
            std::filesystem::remove(b.id_file, ec);
        }
        return comm;
    }

    ~NcclCommunicator() override {
        if (side_ != nullptr) (void)cudaStreamSynchronize(side_);  // no sum left running on the communicator
        if (comm_ != nullptr) (void)ncclCommDestroy(comm_);
        if (side_ != nullptr) (void)cudaStreamDestroy(side_);
        for (cudaEvent_t e : {ready_, done_})
            if (e != nullptr) (void)cudaEventDestroy(e);
    }
    NcclCommunicator(const NcclCommunicator&) = delete;
    NcclCommunicator& operator=(const NcclCommunicator&) = delete;

    int rank() const override { return rank_; }
    int world() const override { return world_; }
    bool host_memory() const override { return false; }
    int device() const { return device_; }
    ncclComm_t handle() const { return comm_; }

    void all_reduce_sum(void* data, std::int64_t count, DType dtype) override {
        require(count >= 0, "NcclCommunicator::all_reduce_sum: count ", count);
        const ncclDataType_t t = nccl_type(dtype, "NcclCommunicator::all_reduce_sum");
        wait_async();
        if (count == 0) return;
        nccl_check(ncclAllReduce(data, data, std::size_t(count), t, ncclSum, comm_, stream()), "ncclAllReduce", comm_);
    }

    // The current stream waits for every sum started on the side stream (nothing to do when none is
    // pending); the host does not block.
    void wait_async() override {
        if (!pending_) return;
        const cudaStream_t s = stream();
        cuda::check(cudaEventRecord(done_, side_), "cudaEventRecord");
        cuda::check(cudaStreamWaitEvent(s, done_, 0), "cudaStreamWaitEvent");
        pending_ = false;
    }

    void broadcast(void* data, std::int64_t count, DType dtype, int root) override {
        require(root >= 0 && root < world_, "NcclCommunicator::broadcast: root ", root, " outside world ", world_);
        require(count >= 0, "NcclCommunicator::broadcast: count ", count);
        const ncclDataType_t t = nccl_type(dtype, "NcclCommunicator::broadcast");
        wait_async();
        if (count == 0) return;
        nccl_check(ncclBroadcast(data, data, std::size_t(count), t, root, comm_, stream()), "ncclBroadcast", comm_);
    }

    // A one-element all-reduce, then a wait for the stream.
    void barrier() override {
        double one = 1.0;
        all_reduce_sum_host(&one, 1);
    }

    void all_reduce_sum_host(double* data, std::int64_t count) override {
        require(count >= 0, "NcclCommunicator::all_reduce_sum_host: count ", count);
        wait_async();
        if (count == 0) return;
        cuda::Context& ctx = cuda::current();
        const cudaStream_t s = stream();
        const std::size_t bytes = std::size_t(count) * sizeof(double);
        struct Block {  // returned to the stream-ordered allocator whatever happens
            cuda::Allocator& a;
            void* p;
            std::size_t n;
            ~Block() { a.deallocate(p, n); }
        } dev{ctx.allocator(), ctx.allocator().allocate(bytes), bytes};
        cuda::check(cudaMemcpyAsync(dev.p, data, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
        nccl_check(ncclAllReduce(dev.p, dev.p, std::size_t(count), ncclFloat64, ncclSum, comm_, s), "ncclAllReduce", comm_);
        cuda::check(cudaMemcpyAsync(data, dev.p, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
        cuda::check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    }

    // One broadcast per non-empty range, from its owner, in one NCCL group.
    void all_gather_ranges(void* data, std::span<const std::int64_t> offsets, DType dtype) override {
        require(std::int64_t(offsets.size()) == world_ + 1, "NcclCommunicator::all_gather_ranges: ", offsets.size(),
                " offsets for world size ", world_);
        for (std::size_t i = 0; i + 1 < offsets.size(); ++i)
            require(offsets[i] >= 0 && offsets[i] <= offsets[i + 1], "NcclCommunicator::all_gather_ranges: offsets ",
                    offsets[i], ", ", offsets[i + 1], " are not non-decreasing");
        const ncclDataType_t t = nccl_type(dtype, "NcclCommunicator::all_gather_ranges");
        wait_async();
        const std::size_t es = dtype_size(dtype);
        const cudaStream_t s = stream();
        nccl_check(ncclGroupStart(), "ncclGroupStart", comm_);
        ncclResult_t first_error = ncclSuccess;
        const char* failed = nullptr;
        for (int r = 0; r < world_; ++r) {
            const std::int64_t lo = offsets[std::size_t(r)], n = offsets[std::size_t(r) + 1] - lo;
            if (n == 0) continue;
            void* p = static_cast<std::byte*>(data) + std::size_t(lo) * es;
            const ncclResult_t e = ncclBroadcast(p, p, std::size_t(n), t, r, comm_, s);
            if (e != ncclSuccess && first_error == ncclSuccess) {
                first_error = e;
                failed = "ncclBroadcast";
            }
        }
        const ncclResult_t end = ncclGroupEnd();  // always closed, even after an error
        if (first_error != ncclSuccess) nccl_check(first_error, failed, comm_);
        nccl_check(end, "ncclGroupEnd", comm_);
    }

protected:
    // On the side stream, after what the current stream has queued so far.
    void start_all_reduce_sum(void* data, std::int64_t count, DType dtype) override {
        require(count >= 0, "NcclCommunicator::all_reduce_sum_async: count ", count);
        const ncclDataType_t t = nccl_type(dtype, "NcclCommunicator::all_reduce_sum_async");
        if (count == 0) return;
        const cudaStream_t s = stream();
        if (side_ == nullptr) {
            cuda::check(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
            cuda::check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
            cuda::check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
        }
        cuda::check(cudaEventRecord(ready_, s), "cudaEventRecord");
        cuda::check(cudaStreamWaitEvent(side_, ready_, 0), "cudaStreamWaitEvent");
        nccl_check(ncclAllReduce(data, data, std::size_t(count), t, ncclSum, comm_, side_), "ncclAllReduce", comm_);
        pending_ = true;
    }

private:
    cudaStream_t stream() const {
        int dev = -1;
        cuda::check(cudaGetDevice(&dev), "cudaGetDevice");
        require(dev == device_, "NcclCommunicator of rank ", rank_, " belongs to CUDA device ", device_,
                ", but device ", dev, " is current");
        return cuda::current().stream();
    }

    int rank_, world_;
    int device_ = -1;
    ncclComm_t comm_ = nullptr;
    cudaStream_t side_ = nullptr;  // the stream of all_reduce_sum_async (made on first use)
    cudaEvent_t ready_ = nullptr, done_ = nullptr;
    bool pending_ = false;  // sums on side_ that the current stream has not been made to wait for
};

}  // namespace pickscore::train
