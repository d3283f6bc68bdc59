// pickscore/cuda/emulation/runtime.hpp — the subset of the CUDA runtime API (cuda_runtime_api.h)
// that pickscore's host code uses, over host memory: device memory is host memory that the
// emulator tracks (so a host pointer passed where device memory is expected is an error, as
// with cudaMemcpy's kinds), streams run everything synchronously in issue order, events record
// wall-clock time. Names, enumerator values and signatures follow the real API, so host code
// compiles unchanged. Errors set the calling thread's last error (cudaGetLastError) and keep a
// message in pickscore::cuda::emu::last_error_detail().
//
// Only included in emulation builds (pickscore/cuda/runtime.hpp picks it).
// pickscore-requires: pickscore::cuda_emulation
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <set>
#include <string>

#include "executor.hpp"
#include "types.hpp"

// ---- types ------------------------------------------------------------------------------------------
enum cudaError_t : int {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorUnknown = 999,
};
using cudaError = cudaError_t;

enum cudaMemcpyKind : int {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute : int {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

enum cudaDeviceAttr : int {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

struct cudaDeviceProp {
    char name[256];
    std::size_t totalGlobalMem;
    std::size_t sharedMemPerBlock;
    std::size_t sharedMemPerBlockOptin;
    std::size_t sharedMemPerMultiprocessor;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int maxThreadsPerMultiProcessor;
    int multiProcessorCount;
    int major;
    int minor;
    int l2CacheSize;
    int clockRate;
};

struct CUstream_st {
    unsigned flags;
};
using cudaStream_t = CUstream_st*;

struct CUevent_st {
    unsigned flags;
    bool recorded;
    std::chrono::steady_clock::time_point time;
};
using cudaEvent_t = CUevent_st*;

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02

namespace pickscore::cuda::emu {

// What the emulated device memory holds; for tests of the callers (allocator reuse, leaks).
struct MemoryStats {
    std::size_t live_allocations = 0;  // cudaMalloc'ed and not yet freed
    std::size_t live_bytes = 0;
    std::size_t malloc_calls = 0;      // successful cudaMalloc calls so far
    std::size_t free_calls = 0;        // successful cudaFree calls (of non-null pointers) so far
};

namespace detail {

struct RuntimeState {
    std::mutex m;
    std::map<std::uintptr_t, std::size_t> device;  // start -> bytes
    std::set<const void*> pinned;
    std::set<const CUstream_st*> streams;
    std::set<const CUevent_st*> events;
    MemoryStats stats;
};

inline RuntimeState& runtime() {
    static RuntimeState s;
    return s;
}

// Whether [p, p + bytes) lies inside one device allocation. Caller holds the lock.
inline bool is_device_locked(const RuntimeState& s, const void* p, std::size_t bytes) {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    auto it = s.device.upper_bound(a);
    if (it == s.device.begin()) return false;
    --it;
    return a >= it->first && a + bytes <= it->first + it->second;
}

inline cudaError_t error(cudaError_t code, std::string text) { return cudaError_t(set_error(code, std::move(text))); }

inline cudaError_t check_stream(cudaStream_t stream, const char* call) {
    if (stream == nullptr) return cudaSuccess;
    RuntimeState& s = runtime();
    std::lock_guard<std::mutex> lk(s.m);
    if (!s.streams.count(stream))
        return error(cudaErrorInvalidResourceHandle, ::pickscore::detail::concat(call, ": unknown stream ", static_cast<const void*>(stream)));
    return cudaSuccess;
}

inline cudaError_t check_copy(const char* call, void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
    if (bytes == 0 || kind == cudaMemcpyDefault) return cudaSuccess;
    if (int(kind) < 0 || int(kind) > 4) return error(cudaErrorInvalidMemcpyDirection, ::pickscore::detail::concat(call, ": invalid kind ", int(kind)));
    RuntimeState& s = runtime();
    std::lock_guard<std::mutex> lk(s.m);
    const bool dst_dev = is_device_locked(s, dst, bytes), src_dev = is_device_locked(s, src, bytes);
    const bool want_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool want_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    static const char* const names[] = {"cudaMemcpyHostToHost", "cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost",
                                        "cudaMemcpyDeviceToDevice"};
    if (dst_dev != want_dst)
        return error(cudaErrorInvalidValue, ::pickscore::detail::concat(call, ": destination ", dst, " (", bytes, " bytes) is ",
                                                       dst_dev ? "" : "not ", "device memory, but the kind is ", names[kind]));
    if (src_dev != want_src)
        return error(cudaErrorInvalidValue, ::pickscore::detail::concat(call, ": source ", src, " (", bytes, " bytes) is ",
                                                       src_dev ? "" : "not ", "device memory, but the kind is ", names[kind]));
    return cudaSuccess;
}

}  // namespace detail

inline MemoryStats memory_stats() {
    detail::RuntimeState& s = detail::runtime();
    std::lock_guard<std::mutex> lk(s.m);
    return s.stats;
}

// Whether [p, p + bytes) is emulated device memory (inside one cudaMalloc'ed block).
inline bool is_device_memory(const void* p, std::size_t bytes = 1) {
    detail::RuntimeState& s = detail::runtime();
    std::lock_guard<std::mutex> lk(s.m);
    return detail::is_device_locked(s, p, bytes);
}

}  // namespace pickscore::cuda::emu

// ---- errors -------------------------------------------------------------------------------------------
inline cudaError_t cudaGetLastError() {
    const int e = ::pickscore::cuda::emu::detail::last_error_code();
    ::pickscore::cuda::emu::detail::last_error_code() = 0;
    return cudaError_t(e);
}
inline cudaError_t cudaPeekAtLastError() { return cudaError_t(::pickscore::cuda::emu::detail::last_error_code()); }

inline const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInitializationError: return "cudaErrorInitializationError";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
        case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
        case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
        case cudaErrorNotReady: return "cudaErrorNotReady";
        case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
        case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
        case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
        case cudaErrorNotSupported: return "cudaErrorNotSupported";
        case cudaErrorUnknown: return "cudaErrorUnknown";
    }
    return "cudaErrorUnknown";
}

inline const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInitializationError: return "initialization error";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
        case cudaErrorInvalidDeviceFunction: return "invalid device function";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        case cudaErrorNotReady: return "device not ready";
        case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
        case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
        case cudaErrorLaunchFailure: return "unspecified launch failure";
        case cudaErrorNotSupported: return "operation not supported";
        case cudaErrorUnknown: return "unknown error";
    }
    return "unknown error";
}

// ---- device -------------------------------------------------------------------------------------------
inline cudaError_t cudaGetDeviceCount(int* count) {
    *count = 1;
    return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* device) {
    *device = 0;
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) {
    if (device != 0)
        return ::pickscore::cuda::emu::detail::error(cudaErrorInvalidDevice, ::pickscore::detail::concat("cudaSetDevice: the emulation has one device, not ", device));
    return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
    if (device != 0) return ::pickscore::cuda::emu::detail::error(cudaErrorInvalidDevice, "cudaGetDeviceProperties: invalid device");
    const auto& c = ::pickscore::cuda::emu::config();
    *prop = cudaDeviceProp{};
    std::strncpy(prop->name, "pickscore CUDA host emulation (H100 limits)", sizeof(prop->name) - 1);
    prop->totalGlobalMem = c.device_memory;
    prop->sharedMemPerBlock = c.shared_default;
    prop->sharedMemPerBlockOptin = c.shared_optin;
    prop->sharedMemPerMultiprocessor = 228 * 1024;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = int(c.max_threads_per_block);
    prop->maxThreadsDim[0] = 1024;
    prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 2147483647;
    prop->maxGridSize[1] = 65535;
    prop->maxGridSize[2] = 65535;
    prop->maxThreadsPerMultiProcessor = 2048;
    prop->multiProcessorCount = c.multiprocessors;
    prop->major = 9;
    prop->minor = 0;
    prop->l2CacheSize = 50 * 1024 * 1024;
    prop->clockRate = 1980000;
    return cudaSuccess;
}

inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
    cudaDeviceProp p;
    if (cudaError_t e = cudaGetDeviceProperties(&p, device)) return e;
    switch (attr) {
        case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
        case cudaDevAttrMaxSharedMemoryPerBlock: *value = int(p.sharedMemPerBlock); break;
        case cudaDevAttrWarpSize: *value = 32; break;
        case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
        case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
        case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
        case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(p.sharedMemPerBlockOptin); break;
        default:
            return ::pickscore::cuda::emu::detail::error(cudaErrorInvalidValue, ::pickscore::detail::concat("cudaDeviceGetAttribute: attribute ", int(attr), " is not emulated"));
    }
    return cudaSuccess;
}

// ---- kernel attributes ---------------------------------------------------------------------------------
template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* entry, cudaFuncAttribute attr, int value) {
    using namespace ::pickscore::cuda::emu::detail;
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
        return error(cudaErrorInvalidValue, ::pickscore::detail::concat("cudaFuncSetAttribute: attribute ", int(attr), " is not emulated"));
    if (value < 0 || std::size_t(value) > ::pickscore::cuda::emu::config().shared_optin)
        return error(cudaErrorInvalidValue, ::pickscore::detail::concat("cudaFuncSetAttribute: ", value,
                                                       " bytes of dynamic shared memory exceed the device's opt-in limit of ",
                                                       ::pickscore::cuda::emu::config().shared_optin));
    std::lock_guard<std::mutex> lk(func_attr_mutex());
    func_attributes()[reinterpret_cast<std::uintptr_t>(entry)].max_dynamic_shared = std::size_t(value);
    return cudaSuccess;
}

// ---- memory ------------------------------------------------------------------------------------------------
inline cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
    using namespace ::pickscore::cuda::emu::detail;
    *ptr = nullptr;
    if (bytes == 0) return cudaSuccess;
    RuntimeState& s = runtime();
    const std::size_t rounded = (bytes + 255) / 256 * 256;
    {
        std::lock_guard<std::mutex> lk(s.m);
        if (s.stats.live_bytes + rounded > ::pickscore::cuda::emu::config().device_memory)
            return error(cudaErrorMemoryAllocation,
                         ::pickscore::detail::concat("cudaMalloc: ", bytes, " bytes do not fit in the emulated device memory (",
                                        s.stats.live_bytes, " of ", ::pickscore::cuda::emu::config().device_memory, " bytes in use)"));
    }
    void* p = std::aligned_alloc(256, rounded);
    if (p == nullptr) return error(cudaErrorMemoryAllocation, ::pickscore::detail::concat("cudaMalloc: the host cannot allocate ", bytes, " bytes"));
    if (::pickscore::cuda::emu::config().poison) std::memset(p, 0xFF, rounded);
    std::lock_guard<std::mutex> lk(s.m);
    s.device[reinterpret_cast<std::uintptr_t>(p)] = rounded;
    s.stats.live_allocations += 1;
    s.stats.live_bytes += rounded;
    s.stats.malloc_calls += 1;
    *ptr = p;
    return cudaSuccess;
}

template <class T>
cudaError_t cudaMalloc(T** ptr, std::size_t bytes) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    *ptr = static_cast<T*>(p);
    return e;
}

inline cudaError_t cudaFree(void* ptr) {
    using namespace ::pickscore::cuda::emu::detail;
    if (ptr == nullptr) return cudaSuccess;
    RuntimeState& s = runtime();
    {
        std::lock_guard<std::mutex> lk(s.m);
        auto it = s.device.find(reinterpret_cast<std::uintptr_t>(ptr));
        if (it == s.device.end())
            return error(cudaErrorInvalidValue, ::pickscore::detail::concat("cudaFree: ", ptr, " is not the start of a device allocation"));
        s.stats.live_allocations -= 1;
        s.stats.live_bytes -= it->second;
        s.stats.free_calls += 1;
        s.device.erase(it);
    }
    std::free(ptr);
    return cudaSuccess;
}

inline cudaError_t cudaMallocHost(void** ptr, std::size_t bytes) {
    using namespace ::pickscore::cuda::emu::detail;
    *ptr = bytes ? std::aligned_alloc(256, (bytes + 255) / 256 * 256) : nullptr;
    if (bytes && *ptr == nullptr) return error(cudaErrorMemoryAllocation, "cudaMallocHost: out of host memory");
    std::lock_guard<std::mutex> lk(runtime().m);
    if (*ptr) runtime().pinned.insert(*ptr);
    return cudaSuccess;
}

inline cudaError_t cudaFreeHost(void* ptr) {
    using namespace ::pickscore::cuda::emu::detail;
    if (ptr == nullptr) return cudaSuccess;
    {
        std::lock_guard<std::mutex> lk(runtime().m);
        if (!runtime().pinned.erase(ptr))
            return error(cudaErrorInvalidValue, ::pickscore::detail::concat("cudaFreeHost: ", ptr, " was not allocated by cudaMallocHost"));
    }
    std::free(ptr);
    return cudaSuccess;
}

inline cudaError_t cudaMemGetInfo(std::size_t* free_bytes, std::size_t* total_bytes) {
    const std::size_t total = ::pickscore::cuda::emu::config().device_memory;
    const std::size_t used = ::pickscore::cuda::emu::memory_stats().live_bytes;
    *free_bytes = used < total ? total - used : 0;
    *total_bytes = total;
    return cudaSuccess;
}

inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t stream = nullptr) {
    using namespace ::pickscore::cuda::emu::detail;
    if (cudaError_t e = check_stream(stream, "cudaMemcpyAsync")) return e;
    if (cudaError_t e = check_copy("cudaMemcpyAsync", dst, src, bytes, kind)) return e;
    if (bytes) std::memmove(dst, src, bytes);
    return cudaSuccess;
}

inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
    using namespace ::pickscore::cuda::emu::detail;
    if (cudaError_t e = check_copy("cudaMemcpy", dst, src, bytes, kind)) return e;
    if (bytes) std::memmove(dst, src, bytes);
    return cudaSuccess;
}

inline cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t bytes, cudaStream_t stream = nullptr) {
    using namespace ::pickscore::cuda::emu::detail;
    if (cudaError_t e = check_stream(stream, "cudaMemsetAsync")) return e;
    if (bytes && !::pickscore::cuda::emu::is_device_memory(dst, bytes))
        return error(cudaErrorInvalidValue, ::pickscore::detail::concat("cudaMemsetAsync: ", dst, " (", bytes, " bytes) is not device memory"));
    if (bytes) std::memset(dst, value, bytes);
    return cudaSuccess;
}

inline cudaError_t cudaMemset(void* dst, int value, std::size_t bytes) { return cudaMemsetAsync(dst, value, bytes, nullptr); }

// ---- streams and events ---------------------------------------------------------------------------------------
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
    using namespace ::pickscore::cuda::emu::detail;
    *stream = new CUstream_st{flags};
    std::lock_guard<std::mutex> lk(runtime().m);
    runtime().streams.insert(*stream);
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

inline cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    using namespace ::pickscore::cuda::emu::detail;
    {
        std::lock_guard<std::mutex> lk(runtime().m);
        if (stream == nullptr || !runtime().streams.erase(stream))
            return error(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: unknown stream");
    }
    delete stream;
    return cudaSuccess;
}

inline cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    return ::pickscore::cuda::emu::detail::check_stream(stream, "cudaStreamSynchronize");
}
inline cudaError_t cudaStreamQuery(cudaStream_t stream) {
    return ::pickscore::cuda::emu::detail::check_stream(stream, "cudaStreamQuery");
}

inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
    using namespace ::pickscore::cuda::emu::detail;
    *event = new CUevent_st{flags, false, {}};
    std::lock_guard<std::mutex> lk(runtime().m);
    runtime().events.insert(*event);
    return cudaSuccess;
}
inline cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

inline cudaError_t cudaEventDestroy(cudaEvent_t event) {
    using namespace ::pickscore::cuda::emu::detail;
    {
        std::lock_guard<std::mutex> lk(runtime().m);
        if (event == nullptr || !runtime().events.erase(event))
            return error(cudaErrorInvalidResourceHandle, "cudaEventDestroy: unknown event");
    }
    delete event;
    return cudaSuccess;
}

inline cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr) {
    using namespace ::pickscore::cuda::emu::detail;
    if (cudaError_t e = check_stream(stream, "cudaEventRecord")) return e;
    {
        std::lock_guard<std::mutex> lk(runtime().m);
        if (event == nullptr || !runtime().events.count(event))
            return error(cudaErrorInvalidResourceHandle, "cudaEventRecord: unknown event");
    }
    event->recorded = true;
    event->time = std::chrono::steady_clock::now();
    return cudaSuccess;
}

inline cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    using namespace ::pickscore::cuda::emu::detail;
    std::lock_guard<std::mutex> lk(runtime().m);
    if (event == nullptr || !runtime().events.count(event))
        return error(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: unknown event");
    return cudaSuccess;
}

inline cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0) {
    (void)flags;
    if (cudaError_t e = ::pickscore::cuda::emu::detail::check_stream(stream, "cudaStreamWaitEvent")) return e;
    return cudaEventSynchronize(event);
}

inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    using namespace ::pickscore::cuda::emu::detail;
    if (cudaError_t e = cudaEventSynchronize(start)) return e;
    if (cudaError_t e = cudaEventSynchronize(end)) return e;
    if (!start->recorded || !end->recorded)
        return error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event has not been recorded");
    if ((start->flags | end->flags) & cudaEventDisableTiming)
        return error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event was created with cudaEventDisableTiming");
    *ms = std::chrono::duration<float, std::milli>(end->time - start->time).count();
    return cudaSuccess;
}
