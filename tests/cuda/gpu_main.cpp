// main() of the test programs that run on a GPU (tests/cuda/CMakeLists.txt): without a CUDA device
// the program exits with 77, which CTest reports as skipped; otherwise it runs doctest.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include <cuda_runtime_api.h>

int main(int argc, char** argv) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        (void)cudaGetLastError();
        std::printf("no CUDA device: skipped\n");
        return 77;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        std::printf("device 0: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    doctest::Context context(argc, argv);
    return context.run();
}
