#!/usr/bin/env bash
# tools/fetch_gpu_deps.sh — downloads the Debian packages that tools/gpu_check.sh needs on a GPU
# machine without internet (doctest and Google Benchmark: the test and benchmark frameworks) into
# .deps/ at the repository root (git-ignored). Run it here, with internet, before the device run;
# the run then names .deps in `carry`, and gpu_check.sh unpacks the files with `dpkg -x` under /tmp.
# Uses only `apt-get download` (no root needed, nothing is installed); run `apt-get update` first
# if the package lists are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
packages=(doctest-dev libbenchmark-dev libbenchmark1debian)
mkdir -p .deps
cd .deps
rm -f ./*.deb
apt-get download "${packages[@]}"
ls -l ./*.deb
