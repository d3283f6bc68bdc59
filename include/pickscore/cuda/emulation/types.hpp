// pickscore/cuda/emulation/types.hpp — CUDA's built-in vector types for the host emulation.
//
// Part of the CUDA host emulation (see kernels/README.md):
// with PICKSCORE_CUDA_EMULATION defined, a C++ compiler builds the kernels in kernels/*.cuh
// against these headers instead of the CUDA toolkit. The names and layouts follow
// vector_types.h (same members, same alignment) so that kernel code compiles unchanged; they live
// in the global namespace like the originals. Only included in emulation builds.
// pickscore-requires: pickscore::cuda_emulation
#pragma once

#include <cstddef>
#include <cstdint>

#ifndef PICKSCORE_CUDA_EMULATION
#error "pickscore/cuda/emulation/*.hpp are for PICKSCORE_CUDA_EMULATION builds only"
#endif

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

// One struct and one make_ function per vector type, with CUDA's alignment.
#define PICKSCORE_EMU_VEC1(name, T, A)                                     \
    struct alignas(A) name {                                               \
        T x;                                                               \
    };                                                                     \
    inline constexpr name make_##name(T x) { return name{x}; }
#define PICKSCORE_EMU_VEC2(name, T, A)                                     \
    struct alignas(A) name {                                               \
        T x, y;                                                            \
    };                                                                     \
    inline constexpr name make_##name(T x, T y) { return name{x, y}; }
#define PICKSCORE_EMU_VEC3(name, T)                                        \
    struct name {                                                          \
        T x, y, z;                                                         \
    };                                                                     \
    inline constexpr name make_##name(T x, T y, T z) { return name{x, y, z}; }
#define PICKSCORE_EMU_VEC4(name, T, A)                                     \
    struct alignas(A) name {                                               \
        T x, y, z, w;                                                      \
    };                                                                     \
    inline constexpr name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }

PICKSCORE_EMU_VEC1(float1, float, 4)
PICKSCORE_EMU_VEC2(float2, float, 8)
PICKSCORE_EMU_VEC3(float3, float)
PICKSCORE_EMU_VEC4(float4, float, 16)
PICKSCORE_EMU_VEC1(int1, int, 4)
PICKSCORE_EMU_VEC2(int2, int, 8)
PICKSCORE_EMU_VEC3(int3, int)
PICKSCORE_EMU_VEC4(int4, int, 16)
PICKSCORE_EMU_VEC1(uint1, unsigned int, 4)
PICKSCORE_EMU_VEC2(uint2, unsigned int, 8)
PICKSCORE_EMU_VEC4(uint4, unsigned int, 16)
PICKSCORE_EMU_VEC2(double2, double, 16)
PICKSCORE_EMU_VEC2(longlong2, long long, 16)
PICKSCORE_EMU_VEC2(ulonglong2, unsigned long long, 16)
PICKSCORE_EMU_VEC2(short2, short, 4)
PICKSCORE_EMU_VEC2(ushort2, unsigned short, 4)
PICKSCORE_EMU_VEC4(char4, signed char, 4)
PICKSCORE_EMU_VEC4(uchar4, unsigned char, 4)
inline constexpr uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return uint3{x, y, z}; }

#undef PICKSCORE_EMU_VEC1
#undef PICKSCORE_EMU_VEC2
#undef PICKSCORE_EMU_VEC3
#undef PICKSCORE_EMU_VEC4

static_assert(sizeof(float4) == 16 && alignof(float4) == 16, "float4 must match CUDA's layout");
static_assert(sizeof(uint4) == 16 && alignof(uint4) == 16, "uint4 must match CUDA's layout");
