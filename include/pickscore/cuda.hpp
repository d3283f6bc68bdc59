// pickscore/cuda.hpp — the CUDA backend's host-side API in one include: contexts and the caching
// allocator, Tensor<T, Cuda> storage and copies, error checks, and blas::matmul.
// pickscore-requires: pickscore::cuda_emulation (or pickscore::cuda: the CUDA runtime API, real or emulated)
#pragma once

#include "cuda/blas.hpp"
#include "cuda/context.hpp"
#include "cuda/enabled.hpp"
#include "cuda/gemm.hpp"
#include "cuda/runtime.hpp"
#include "cuda/storage.hpp"
