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
import glob
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from find_cudnn import site_dirs  # noqa: E402  (the site-packages of the Pythons around)


def candidate_roots():
    roots = []
    if os.environ.get("NCCL_ROOT"):
        roots.append(os.environ["NCCL_ROOT"])
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            roots.append(os.environ[var])
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    roots += ["/usr/local/cuda", "/usr"]
    roots += [os.path.join(d, "nvidia", "nccl") for d in site_dirs()]
    return roots


def find_in(root):
    """(include dir, library file) of an NCCL under root, or None."""
    include = None
    for sub in ("include", "include/x86_64-linux-gnu", "targets/x86_64-linux/include"):
        if os.path.isfile(os.path.join(root, sub, "nccl.h")):
            include = os.path.join(root, sub)
            break
    if include is None:
        return None
    for sub in ("lib", "lib64", "lib/x86_64-linux-gnu", "targets/x86_64-linux/lib"):
        d = os.path.join(root, sub)
        plain = os.path.join(d, "libnccl.so")
        if os.path.isfile(plain):
            return include, plain
        versioned = sorted(glob.glob(os.path.join(d, "libnccl.so.[0-9]*")), key=len)
        if versioned:
            return include, versioned[0]
    return None


def main(argv):
    what = argv[1] if len(argv) > 1 else "--root"
    if what not in ("--root", "--include", "--library"):
        print(__doc__, file=sys.stderr)
        return 2
    for root in candidate_roots():
        found = find_in(root)
        if found:
            include, library = found
            print({"--root": os.path.normpath(root), "--include": include, "--library": library}[what])
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
