# cmake/pickscoreCuda.cmake — the CUDA backend's targets (included once by the top-level CMakeLists.txt).
#
# pickscore::cuda_emulation (target pickscore_cuda_emulation): kernels/pickscore_cuda_emulation.cpp,
#   the whole CUDA backend compiled by the C++ compiler against the host emulation
#   (PICKSCORE_CUDA_EMULATION, public). Needs no CUDA toolkit; the tests link it, so every kernel
#   runs in every build.
# pickscore::cuda (target pickscore_cuda, PICKSCORE_CUDA=ON): kernels/pickscore_cuda.cu compiled by
#   nvcc for PICKSCORE_CUDA_ARCHITECTURES (default 80;90) with warnings as errors, as a shared
#   library linking cudart (public), cuBLAS, cuBLASLt and cuDNN (private). Consumers compile with
#   any C++ compiler and get PICKSCORE_WITH_CUDA, so ops on Tensor<T, Cuda> dispatch to it. Building
#   it is the nvcc check of CI; the GPU test programs (tests/cuda/) are built with it and skip
#   themselves where no GPU is present.
#   PICKSCORE_CUDA defaults to ON in a top-level build where nvcc is found, OFF otherwise.
#
# cuDNN is looked for under CUDNN_ROOT (variable or environment), next to the CUDA toolkit, in the
# standard paths, and in a Python wheel layout (site-packages/nvidia/cudnn/{include,lib}).

include_guard(GLOBAL)

# ---- the emulated backend (always) ----------------------------------------------------------------
add_library(pickscore_cuda_emulation STATIC ${PROJECT_SOURCE_DIR}/kernels/pickscore_cuda_emulation.cpp)
add_library(pickscore::cuda_emulation ALIAS pickscore_cuda_emulation)
target_link_libraries(pickscore_cuda_emulation PUBLIC pickscore)
target_compile_definitions(pickscore_cuda_emulation PUBLIC PICKSCORE_CUDA_EMULATION)
target_compile_options(pickscore_cuda_emulation PRIVATE
    $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:-Wall -Wextra -Wpedantic $<$<BOOL:${PICKSCORE_WERROR}>:-Werror>>)
set_target_properties(pickscore_cuda_emulation PROPERTIES EXPORT_NAME cuda_emulation)
if(NOT PROJECT_IS_TOP_LEVEL)  # a parent project builds it only if something of its own links it
    set_target_properties(pickscore_cuda_emulation PROPERTIES EXCLUDE_FROM_ALL ON)
endif()

# ---- the nvcc-built backend (PICKSCORE_CUDA) --------------------------------------------------------
if(NOT PICKSCORE_CUDA)
    include(CheckLanguage)
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
        message(STATUS "pickscore: nvcc found (${CMAKE_CUDA_COMPILER}) but PICKSCORE_CUDA=OFF: "
                       "pickscore::cuda and the nvcc build check are skipped; the CUDA tests run emulated")
    else()
        message(STATUS "pickscore: no nvcc found: pickscore::cuda and the nvcc build check are skipped; "
                       "the CUDA tests run emulated")
    endif()
    return()
endif()

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

# nvcc compiles C++20. Older CMake releases do not know cuda_std_20 for newer nvcc versions; then
# the flag is given directly.
function(pickscore_cuda_std20 target)
    if("cuda_std_20" IN_LIST CMAKE_CUDA_COMPILE_FEATURES)
        target_compile_features(${target} PRIVATE cuda_std_20)
    else()
        target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
    endif()
endfunction()

set(PICKSCORE_CUDA_ARCHITECTURES "80;90" CACHE STRING "GPU architectures pickscore::cuda is built for (sm_80 or newer)")
set(CUDNN_ROOT "$ENV{CUDNN_ROOT}" CACHE PATH "Where cuDNN is installed (include/cudnn.h, lib/libcudnn.so)")

# cuDNN from a Python wheel (pip install nvidia-cudnn-cu12): site-packages/nvidia/cudnn/{include,lib}.
set(pickscore_cudnn_hints ${CUDNN_ROOT} ${CUDAToolkit_LIBRARY_ROOT})
find_package(Python3 COMPONENTS Interpreter QUIET)
if(Python3_Interpreter_FOUND)
    execute_process(
        COMMAND ${Python3_EXECUTABLE} -c "import site, sys; print(';'.join(site.getsitepackages() + [site.getusersitepackages()]))"
        OUTPUT_VARIABLE pickscore_site_packages OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    foreach(dir IN LISTS pickscore_site_packages)
        if(EXISTS "${dir}/nvidia/cudnn")
            list(APPEND pickscore_cudnn_hints "${dir}/nvidia/cudnn")
        endif()
    endforeach()
endif()
find_path(PICKSCORE_CUDNN_INCLUDE_DIR cudnn.h
    HINTS ${pickscore_cudnn_hints} ${CUDAToolkit_INCLUDE_DIRS}
    PATH_SUFFIXES include)
find_library(PICKSCORE_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9
    HINTS ${pickscore_cudnn_hints} ${CUDAToolkit_LIBRARY_DIR}
    PATH_SUFFIXES lib lib64 lib/x64)
if(NOT PICKSCORE_CUDNN_INCLUDE_DIR OR NOT PICKSCORE_CUDNN_LIBRARY)
    message(FATAL_ERROR "pickscore::cuda needs cuDNN 9: set CUDNN_ROOT to a directory with include/cudnn.h and "
                        "lib/libcudnn.so (a pip wheel's site-packages/nvidia/cudnn works), or configure with -DPICKSCORE_CUDA=OFF")
endif()
message(STATUS "pickscore: cuDNN ${PICKSCORE_CUDNN_LIBRARY}")
add_library(pickscore_cudnn INTERFACE)
target_include_directories(pickscore_cudnn INTERFACE ${PICKSCORE_CUDNN_INCLUDE_DIR})
target_link_libraries(pickscore_cudnn INTERFACE ${PICKSCORE_CUDNN_LIBRARY})

add_library(pickscore_cuda SHARED ${PROJECT_SOURCE_DIR}/kernels/pickscore_cuda.cu)
add_library(pickscore::cuda ALIAS pickscore_cuda)
target_link_libraries(pickscore_cuda
    PUBLIC pickscore CUDA::cudart
    PRIVATE CUDA::cublas CUDA::cublasLt $<BUILD_INTERFACE:pickscore_cudnn>)
target_compile_definitions(pickscore_cuda PUBLIC PICKSCORE_WITH_CUDA)
target_compile_features(pickscore_cuda PUBLIC cxx_std_20)
pickscore_cuda_std20(pickscore_cuda)
target_compile_options(pickscore_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:SHELL:-Werror all-warnings>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra$<$<BOOL:${PICKSCORE_WERROR}>:,-Werror>>)
set_target_properties(pickscore_cuda PROPERTIES
    EXPORT_NAME cuda
    CUDA_ARCHITECTURES "${PICKSCORE_CUDA_ARCHITECTURES}"
    CUDA_RUNTIME_LIBRARY Shared
    CUDA_SEPARABLE_COMPILATION OFF
    INSTALL_RPATH_USE_LINK_PATH ON)
install(TARGETS pickscore_cuda EXPORT pickscoreTargets)
