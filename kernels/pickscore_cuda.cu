// kernels/pickscore_cuda.cu — the one translation unit of the CUDA backend, built by nvcc as the
// library pickscore::cuda (cmake/pickscoreCuda.cmake). Users compile their own code with any C++
// compiler against the host-side headers (pickscore/cuda/*.hpp) and link this library.
#include "implementation.cuh"
