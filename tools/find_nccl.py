#!/usr/bin/env python3
"""Finds NCCL (nccl.h and libnccl.so[.N]) the way pickscore's builds look for it.

    find_nccl.py [--root | --include | --library]    (default --root)

Prints the NCCL root (the directory holding include/nccl.h and lib/ or lib64/ with libnccl), its
include directory, or the library file, and exits 0; prints nothing and exits 1 when there is no
NCCL. Looked for, in this order:
  1. $NCCL_ROOT
  2. the CUDA toolkit: $CUDA_HOME, $CUDA_PATH, the directory above the nvcc on PATH, /usr/local/cuda
  3. the system: /usr
  4. a Python wheel (pip install nvidia-nccl-cu13, or PyTorch's): site-packages/nvidia/nccl of this
     interpreter and of the `python3` on PATH (the same site directories as tools/find_cudnn.py).
meson.build runs it for the `cuda` option (the pickscore-nccl dependency); cmake/pickscoreCuda.cmake
looks in the same places for pickscore::nccl.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from find_cudnn import find_main  # noqa: E402  (the same search, for nccl.h and libnccl.so)


def main(argv):
    return find_main(argv, __doc__, "NCCL_ROOT", "nccl", "nccl.h", "libnccl.so")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
