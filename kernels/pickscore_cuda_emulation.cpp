// kernels/pickscore_cuda_emulation.cpp — the same translation unit as pickscore_cuda.cu, for a
// C++ compiler with PICKSCORE_CUDA_EMULATION defined: the kernels run on the host emulation
// (pickscore/cuda/emulation/). CI builds it as the library pickscore::cuda_emulation.
#if !defined(PICKSCORE_CUDA_EMULATION)
#error "build kernels/pickscore_cuda_emulation.cpp with PICKSCORE_CUDA_EMULATION defined (or pickscore_cuda.cu with nvcc)"
#endif
#include "implementation.cuh"
