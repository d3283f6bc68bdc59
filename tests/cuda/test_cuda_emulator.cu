// The emulator's test program compiled by nvcc: the same checks on a GPU (emulation-only cases are
// left out by the preprocessor), which holds the emulated layouts to the hardware's.
#include "../test_cuda_emulator.cpp"
