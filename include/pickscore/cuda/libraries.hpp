// pickscore/cuda/libraries.hpp — cuBLAS, cuBLASLt and cuDNN (the toolkit's, or the host
// emulation's subset with PICKSCORE_CUDA_EMULATION), and check() overloads for their statuses.
//
// Host-side user code does not need this header: Context hands out the library handles as
// forward-declared pointers. The implementation (kernels/*.cuh) and users who call the
// libraries themselves with a Context's handles include it.
// pickscore-requires: pickscore::cuda_emulation (or pickscore::cuda: the CUDA runtime API, real or emulated)
#pragma once

#include <source_location>

#include "runtime.hpp"

#if defined(PICKSCORE_CUDA_EMULATION)
#include "emulation/cublaslt.hpp"
#include "emulation/cudnn.hpp"
#else
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cudnn.h>
#endif

namespace pickscore::cuda {

// Throws CudaError unless status is CUBLAS_STATUS_SUCCESS (cuBLAS and cuBLASLt share the type).
inline void check(cublasStatus_t status, const char* call, std::source_location where = std::source_location::current()) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    detail::throw_error("cuBLAS", int(status), call, cublasLtGetStatusName(status), cublasLtGetStatusString(status), {},
                        where);
}

// Throws CudaError unless status is CUDNN_STATUS_SUCCESS.
inline void check(cudnnStatus_t status, const char* call, std::source_location where = std::source_location::current()) {
    if (status == CUDNN_STATUS_SUCCESS) return;
    detail::throw_error("cuDNN", int(status), call, cudnnGetErrorString(status), "cuDNN error", {}, where);
}

}  // namespace pickscore::cuda
