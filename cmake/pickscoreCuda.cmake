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
# standard paths, and in a Python wheel layout (site-packages/nvidia/cudnn/{include,lib}, as
# `pip install nvidia-cudnn-cu13` or PyTorch installs it), in the site-packages of the Python that
# CMake finds and of the `python3` on PATH. cuBLAS and cuBLASLt come from the CUDA toolkit
# (FindCUDAToolkit); where the toolkit has none, from the same wheel layout
# (site-packages/nvidia/cu13 or nvidia/cublas: lib/libcublas*.so.N, include/cublas*.h).
# The architectures: PICKSCORE_CUDA_ARCHITECTURES, whose default is CMAKE_CUDA_ARCHITECTURES when
# that is given on the command line (e.g. -DCMAKE_CUDA_ARCHITECTURES=90), else 80;90.

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

# Only a value the user gave counts: enable_language() fills CMAKE_CUDA_ARCHITECTURES with a default.
if(DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT CMAKE_CUDA_ARCHITECTURES STREQUAL "")
    set(pickscore_cuda_arch_default "${CMAKE_CUDA_ARCHITECTURES}")
else()
    set(pickscore_cuda_arch_default "80;90")
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

# site-packages/nvidia of the Pythons around (for libraries installed as wheels), best first.
set(pickscore_nvidia_wheel_dirs "")
find_package(Python3 COMPONENTS Interpreter QUIET)
find_program(PICKSCORE_PYTHON3_ON_PATH NAMES python3 NO_CACHE)
foreach(py IN ITEMS "${Python3_EXECUTABLE}" "${PICKSCORE_PYTHON3_ON_PATH}")
    if(NOT py)
        continue()
    endif()
    execute_process(
        COMMAND "${py}" -c "import site, sys; print(';'.join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))"
        OUTPUT_VARIABLE pickscore_site_packages OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    foreach(dir IN LISTS pickscore_site_packages)
        if(dir AND IS_DIRECTORY "${dir}/nvidia")
            list(APPEND pickscore_nvidia_wheel_dirs "${dir}/nvidia")
        endif()
    endforeach()
endforeach()
list(REMOVE_DUPLICATES pickscore_nvidia_wheel_dirs)

# cuBLAS/cuBLASLt from a wheel where the toolkit has none. Only the cuBLAS headers are taken from
# the wheel (linked into the build tree), so that the rest of the toolkit's headers are not mixed
# with the wheel's copies of another CUDA version.
if(NOT TARGET CUDA::cublasLt OR NOT TARGET CUDA::cublas)
    set(pickscore_cublas_hints "")
    foreach(dir IN LISTS pickscore_nvidia_wheel_dirs)
        list(APPEND pickscore_cublas_hints "${dir}/cu${CUDAToolkit_VERSION_MAJOR}" "${dir}/cublas")
    endforeach()
    find_library(PICKSCORE_CUBLASLT_LIBRARY NAMES cublasLt "libcublasLt.so.${CUDAToolkit_VERSION_MAJOR}"
                 HINTS ${pickscore_cublas_hints} PATH_SUFFIXES lib lib64)
    find_library(PICKSCORE_CUBLAS_LIBRARY NAMES cublas "libcublas.so.${CUDAToolkit_VERSION_MAJOR}"
                 HINTS ${pickscore_cublas_hints} PATH_SUFFIXES lib lib64)
    find_path(PICKSCORE_CUBLAS_INCLUDE_DIR cublasLt.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ${pickscore_cublas_hints}
              PATH_SUFFIXES include)
    if(NOT PICKSCORE_CUBLASLT_LIBRARY OR NOT PICKSCORE_CUBLAS_LIBRARY OR NOT PICKSCORE_CUBLAS_INCLUDE_DIR)
        message(FATAL_ERROR "pickscore::cuda needs cuBLAS and cuBLASLt: none in the CUDA toolkit (${CUDAToolkit_LIBRARY_DIR}) "
                            "nor in a Python wheel (site-packages/nvidia/cu${CUDAToolkit_VERSION_MAJOR}); "
                            "set PICKSCORE_CUBLAS_LIBRARY, PICKSCORE_CUBLASLT_LIBRARY and PICKSCORE_CUBLAS_INCLUDE_DIR, "
                            "or configure with -DPICKSCORE_CUDA=OFF")
    endif()
    set(pickscore_cublas_headers "${CMAKE_CURRENT_BINARY_DIR}/pickscore_cublas_include")
    file(MAKE_DIRECTORY "${pickscore_cublas_headers}")
    file(GLOB pickscore_cublas_header_files "${PICKSCORE_CUBLAS_INCLUDE_DIR}/cublas*.h")
    foreach(h IN LISTS pickscore_cublas_header_files)
        get_filename_component(name "${h}" NAME)
        file(CREATE_LINK "${h}" "${pickscore_cublas_headers}/${name}" SYMBOLIC)
    endforeach()
    foreach(lib IN ITEMS cublasLt cublas)
        if(NOT TARGET CUDA::${lib})
            string(TOUPPER "${lib}" upper)
            add_library(CUDA::${lib} SHARED IMPORTED GLOBAL)
            set_target_properties(CUDA::${lib} PROPERTIES
                IMPORTED_LOCATION "${PICKSCORE_${upper}_LIBRARY}"
                INTERFACE_INCLUDE_DIRECTORIES "${pickscore_cublas_headers}"
                INTERFACE_LINK_LIBRARIES CUDA::cudart)
        endif()
    endforeach()
    message(STATUS "pickscore: cuBLAS from ${PICKSCORE_CUBLAS_LIBRARY}, cuBLASLt from ${PICKSCORE_CUBLASLT_LIBRARY}")
endif()

# nvcc compiles C++20. Older CMake releases do not know cuda_std_20 for newer nvcc versions; then
# the flag is given directly.
function(pickscore_cuda_std20 target)
    if("cuda_std_20" IN_LIST CMAKE_CUDA_COMPILE_FEATURES)
        target_compile_features(${target} PRIVATE cuda_std_20)
    else()
        target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
    endif()
endfunction()

set(PICKSCORE_CUDA_ARCHITECTURES "${pickscore_cuda_arch_default}" CACHE STRING
    "GPU architectures pickscore::cuda is built for (sm_80 or newer)")
set(CUDNN_ROOT "$ENV{CUDNN_ROOT}" CACHE PATH "Where cuDNN is installed (include/cudnn.h, lib/libcudnn.so)")

# cuDNN from a Python wheel (pip install nvidia-cudnn-cu13): site-packages/nvidia/cudnn/{include,lib}.
set(pickscore_cudnn_hints ${CUDNN_ROOT} ${CUDAToolkit_LIBRARY_ROOT})
foreach(dir IN LISTS pickscore_nvidia_wheel_dirs)
    if(EXISTS "${dir}/cudnn/include/cudnn.h")
        list(APPEND pickscore_cudnn_hints "${dir}/cudnn")
    endif()
endforeach()
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

# ---- pickscore::nccl: NCCL for data-parallel training on several GPUs (train/nccl.hpp) ---------------
# An INTERFACE target (not exported) linking pickscore::cuda and NCCL and defining PICKSCORE_WITH_NCCL.
# nccl.h and libnccl are looked for under NCCL_ROOT (variable or environment), in the CUDA toolkit,
# the standard paths, and a Python wheel layout (site-packages/nvidia/nccl/{include,lib}, as PyTorch
# installs it). Without NCCL the target is absent and `pickscore train` runs a single process.
set(NCCL_ROOT "$ENV{NCCL_ROOT}" CACHE PATH "Where NCCL is installed (include/nccl.h, lib/libnccl.so)")
set(pickscore_nccl_hints ${NCCL_ROOT})
foreach(dir IN LISTS pickscore_nvidia_wheel_dirs)
    if(EXISTS "${dir}/nccl/include/nccl.h")
        list(APPEND pickscore_nccl_hints "${dir}/nccl")
    endif()
endforeach()
find_path(PICKSCORE_NCCL_INCLUDE_DIR nccl.h
    HINTS ${NCCL_ROOT} ${CUDAToolkit_INCLUDE_DIRS} ${CUDAToolkit_LIBRARY_ROOT} ${pickscore_nccl_hints}
    PATH_SUFFIXES include)
find_library(PICKSCORE_NCCL_LIBRARY NAMES nccl libnccl.so.2
    HINTS ${NCCL_ROOT} ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT} ${pickscore_nccl_hints}
    PATH_SUFFIXES lib lib64)
if(PICKSCORE_NCCL_INCLUDE_DIR AND PICKSCORE_NCCL_LIBRARY)
    message(STATUS "pickscore: NCCL ${PICKSCORE_NCCL_LIBRARY} (pickscore::nccl)")
    add_library(pickscore_nccl INTERFACE)
    add_library(pickscore::nccl ALIAS pickscore_nccl)
    target_include_directories(pickscore_nccl SYSTEM INTERFACE ${PICKSCORE_NCCL_INCLUDE_DIR})
    target_link_libraries(pickscore_nccl INTERFACE pickscore_cuda ${PICKSCORE_NCCL_LIBRARY})
    target_compile_definitions(pickscore_nccl INTERFACE PICKSCORE_WITH_NCCL)
else()
    message(STATUS "pickscore: no NCCL found (set NCCL_ROOT): pickscore::nccl and multi-GPU training are left out")
endif()
