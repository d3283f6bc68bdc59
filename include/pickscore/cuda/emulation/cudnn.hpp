// pickscore/cuda/emulation/cudnn.hpp — the cuDNN handle functions for the host emulation: enough
// for Context to own a cuDNN handle in every build. cuDNN's operations (the fused-attention
// baseline) are not emulated: code that calls them is compiled only without
// PICKSCORE_CUDA_EMULATION, and the emulated tests use our own kernels.
//
// Only included in emulation builds (pickscore/cuda/libraries.hpp picks it).
// pickscore-requires: pickscore::cuda_emulation
#pragma once

#include <cstddef>

#include "runtime.hpp"

enum cudnnStatus_t : int {
    CUDNN_STATUS_SUCCESS = 0,
    CUDNN_STATUS_NOT_INITIALIZED = 1001,
    CUDNN_STATUS_BAD_PARAM = 2000,
    CUDNN_STATUS_NOT_SUPPORTED = 3000,
    CUDNN_STATUS_INTERNAL_ERROR = 4000,
    CUDNN_STATUS_EXECUTION_FAILED = 5000,
};

struct cudnnContext {
    cudaStream_t stream;
};
using cudnnHandle_t = cudnnContext*;

#define CUDNN_VERSION 90000

inline cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
    *handle = new cudnnContext{nullptr};
    return CUDNN_STATUS_SUCCESS;
}
inline cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
    if (!handle) return CUDNN_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUDNN_STATUS_SUCCESS;
}
inline cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
    if (!handle) return CUDNN_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUDNN_STATUS_SUCCESS;
}
inline std::size_t cudnnGetVersion() { return CUDNN_VERSION; }
inline const char* cudnnGetErrorString(cudnnStatus_t s) {
    switch (s) {
        case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
        case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
        case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
        case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
        case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
        case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    }
    return "CUDNN_STATUS_UNKNOWN";
}
