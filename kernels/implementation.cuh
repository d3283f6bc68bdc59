// kernels/implementation.cuh — every out-of-line definition of the CUDA backend: the host
// wrappers, the kernels they launch, Context and blas::matmul. Include it in exactly ONE
// translation unit of a program (stb-style): kernels/pickscore_cuda.cu does, and the CMake target
// pickscore::cuda builds that file with nvcc. With PICKSCORE_CUDA_EMULATION the same file is
// compiled by a C++ compiler against the host emulation (kernels/pickscore_cuda_emulation.cpp).
//
// A new kernel family adds its .cuh here (see kernels/README.md).
#pragma once

#define PICKSCORE_CUDA_IMPLEMENTATION 1

#include "common.cuh"
#include "ptx.cuh"
#include "runtime.cuh"
#include "gemm_epilogue.cuh"
#include "blas.cuh"
#include "elementwise.cuh"
#include "activation.cuh"
#include "softmax.cuh"
#include "layernorm.cuh"
#include "optim.cuh"
#include "embedding.cuh"
#include "patches.cuh"
#include "normalize.cuh"
#include "loss.cuh"
#include "attention.cuh"
