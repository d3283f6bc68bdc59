// pickscore/cuda/enabled.hpp — whether this build has a CUDA backend.
//
// PICKSCORE_CUDA_ENABLED is 1 when the translation unit is built against the CUDA backend:
// either the real one (PICKSCORE_WITH_CUDA, set by linking the pickscore::cuda target, which needs
// the CUDA toolkit's headers) or the host emulation (PICKSCORE_CUDA_EMULATION, which needs nothing).
// The ops headers include the CUDA declarations only then, so host-only users never see a CUDA
// header. Every translation unit of a program must agree on these macros.
#pragma once

#if defined(PICKSCORE_CUDA_EMULATION) || defined(PICKSCORE_WITH_CUDA)
#define PICKSCORE_CUDA_ENABLED 1
#else
#define PICKSCORE_CUDA_ENABLED 0
#endif
