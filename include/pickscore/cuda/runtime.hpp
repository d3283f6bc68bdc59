// pickscore/cuda/runtime.hpp — the CUDA runtime API (the toolkit's, or the host emulation's with
// PICKSCORE_CUDA_EMULATION) and the checks that turn CUDA status codes into pickscore errors.
// pickscore-requires: pickscore::cuda_emulation (or pickscore::cuda: the CUDA runtime API, real or emulated)
//
//   check(cudaMemcpyAsync(...), "cudaMemcpyAsync");   // throws cuda::CudaError unless cudaSuccess
//   check_launch("layernorm_forward");                // after a kernel launch (cuda::launch does it)
//
// The message names the call, the error's name and description, and the caller's file and line;
// under emulation it adds the emulator's explanation (which lane, which limit, ...). A failed
// check also clears the runtime's last error, so the next launch check does not report it again.
// cuBLAS/cuBLASLt/cuDNN statuses have their check overloads in pickscore/cuda/libraries.hpp.
//
// Set PICKSCORE_CUDA_SYNC_CHECK=1 in the environment (or call set_sync_after_launch(true)) to
// synchronise after every launch, so an asynchronous kernel fault is reported at the launch that
// caused it. Off by default: nothing synchronises behind the caller's back.
#pragma once

#include <atomic>
#include <cstdlib>
#include <source_location>
#include <string>
#include <utility>

#include "../core/error.hpp"

#if defined(PICKSCORE_CUDA_EMULATION)
#include "emulation/runtime.hpp"
#else
#include <cuda_runtime_api.h>
#endif

namespace pickscore::cuda {

// A failed CUDA, cuBLAS(Lt) or cuDNN call. code() is the library's status value.
class CudaError : public Error {
public:
    CudaError(std::string library, int code, const std::string& message)
        : Error(message), library_(std::move(library)), code_(code) {}
    const std::string& library() const { return library_; }
    int code() const { return code_; }

private:
    std::string library_;
    int code_;
};

namespace detail {
// Formats and throws the error of a failed call; `extra` is appended (may be empty).
[[noreturn]] inline void throw_error(const char* library, int code, const char* call, const char* name,
                                     const char* description, const std::string& extra, const std::source_location& where) {
    std::string msg = pickscore::detail::concat(call, " failed: ", name, " (", description, ")");
    if (!extra.empty()) msg += ": " + extra;
    msg += pickscore::detail::concat(" [", where.file_name(), ":", where.line(), "]");
    throw CudaError(library, code, msg);
}

inline std::atomic<bool>& sync_after_launch_flag() {
    static std::atomic<bool> flag{[] {
        const char* v = std::getenv("PICKSCORE_CUDA_SYNC_CHECK");
        return v != nullptr && *v != '\0' && *v != '0';
    }()};
    return flag;
}
}  // namespace detail

// Throws CudaError unless status is cudaSuccess.
inline void check(cudaError_t status, const char* call, std::source_location where = std::source_location::current()) {
    if (status == cudaSuccess) return;
    std::string extra;
#if defined(PICKSCORE_CUDA_EMULATION)
    if (cudaPeekAtLastError() == status) extra = emu::last_error_detail();
#endif
    (void)cudaGetLastError();  // clear it: the next launch check must not report this error again
    detail::throw_error("CUDA", int(status), call, cudaGetErrorName(status), cudaGetErrorString(status), extra, where);
}

// Whether every launch is followed by a synchronisation (see the top of this file).
inline bool sync_after_launch() { return detail::sync_after_launch_flag().load(std::memory_order_relaxed); }
inline void set_sync_after_launch(bool on) { detail::sync_after_launch_flag().store(on); }

// The check after a kernel launch: the launch's own error, and with sync_after_launch() the
// kernel's asynchronous errors too.
inline void check_launch(const char* what, std::source_location where = std::source_location::current()) {
    check(cudaGetLastError(), what, where);
    if (sync_after_launch()) check(cudaDeviceSynchronize(), what, where);
}

}  // namespace pickscore::cuda
