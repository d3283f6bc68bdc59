#!/usr/bin/env python3
"""Finds cuDNN (cudnn.h and libcudnn.so[.N]) the way pickscore's builds look for it.

    find_cudnn.py [--root | --include | --library]    (default --root)

Prints the cuDNN root (the directory holding include/cudnn.h and lib/ or lib64/ with libcudnn),
its include directory, or the library file, and exits 0; prints nothing and exits 1 when there is
no cuDNN. Looked for, in this order:
  1. $CUDNN_ROOT
  2. the CUDA toolkit: $CUDA_HOME, $CUDA_PATH, the directory above the nvcc on PATH, /usr/local/cuda
  3. the system: /usr (include/ or include/x86_64-linux-gnu/, lib/x86_64-linux-gnu/, lib64/, lib/)
  4. a Python wheel (pip install nvidia-cudnn-cu13, or PyTorch's): site-packages/nvidia/cudnn of
     this interpreter and of the `python3` on PATH when that is another one.
meson.build runs it for the `cuda` option; tools/gpu_check.sh runs it to pass CUDNN_ROOT to CMake.
"""
import glob
import os
import shutil
import site
import subprocess
import sys


def site_dirs():
    dirs = []
    try:
        dirs += site.getsitepackages()
    except AttributeError:  # some virtualenvs
        pass
    try:
        dirs.append(site.getusersitepackages())
    except AttributeError:
        pass
    dirs += [p for p in sys.path if p]
    other = shutil.which("python3")
    if other and os.path.realpath(other) != os.path.realpath(sys.executable):
        try:
            out = subprocess.run(
                [other, "-c", "import site, sys; print('\\n'.join(site.getsitepackages() + sys.path))"],
                capture_output=True, text=True, timeout=30, check=False).stdout
            dirs += [line for line in out.splitlines() if line]
        except (OSError, subprocess.SubprocessError):
            pass
    seen, result = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            result.append(d)
    return result


def candidate_roots(root_var, wheel):
    """Where to look: $root_var, the CUDA toolkit, /usr, then site-packages/nvidia/<wheel>."""
    roots = []
    if os.environ.get(root_var):
        roots.append(os.environ[root_var])
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            roots.append(os.environ[var])
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    roots += ["/usr/local/cuda", "/usr"]
    roots += [os.path.join(d, "nvidia", wheel) for d in site_dirs()]
    return roots


def find_in(root, header, library):
    """(include dir, library file) of the library under root (header e.g. cudnn.h, library e.g.
    libcudnn.so or a versioned libcudnn.so.N), or None."""
    include = None
    for sub in ("include", "include/x86_64-linux-gnu", "targets/x86_64-linux/include"):
        if os.path.isfile(os.path.join(root, sub, header)):
            include = os.path.join(root, sub)
            break
    if include is None:
        return None
    for sub in ("lib", "lib64", "lib/x86_64-linux-gnu", "targets/x86_64-linux/lib"):
        d = os.path.join(root, sub)
        plain = os.path.join(d, library)
        if os.path.isfile(plain):
            return include, plain
        versioned = sorted(glob.glob(os.path.join(d, library + ".[0-9]*")), key=len)
        if versioned:
            return include, versioned[0]
    return None


def find_main(argv, doc, root_var, wheel, header, library):
    """The command line shared by find_cudnn.py and find_nccl.py."""
    what = argv[1] if len(argv) > 1 else "--root"
    if what not in ("--root", "--include", "--library"):
        print(doc, file=sys.stderr)
        return 2
    for root in candidate_roots(root_var, wheel):
        found = find_in(root, header, library)
        if found:
            include, lib = found
            print({"--root": os.path.normpath(root), "--include": include, "--library": lib}[what])
            return 0
    return 1


def main(argv):
    return find_main(argv, __doc__, "CUDNN_ROOT", "cudnn", "cudnn.h", "libcudnn.so")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
