#!/usr/bin/env bash
# Installs what building and testing pickscore needs on Debian 12, with apt-get. Checks each
# package with dpkg first: when everything is there it prints nothing and changes nothing.
# To need a new package, add it to the list below.
set -euo pipefail

packages=(
    build-essential g++ cmake ninja-build meson pkg-config python3  # compilers and build tools
    doctest-dev                                                   # tests
    libbenchmark-dev libopenblas-dev                              # benchmarks (OpenBLAS is the GEMM baseline)
    zlib1g-dev libpng-dev libjpeg62-turbo-dev libwebp-dev          # file formats (images, compressed data)
    libcpp-httplib-dev libsqlite3-dev libssl-dev                  # pickscore collect (HTTP server, SQLite, libcrypto)
    chromium                                                      # pickscore collect's browser test (headless)
    clang libclang-rt-14-dev                                       # libFuzzer targets (clang's -fsanitize=fuzzer)
)

missing=()
for p in "${packages[@]}"; do
    # "ii " = wanted and installed; anything else (absent, removed, half-installed) counts as missing.
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" == "ii " ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "setup.sh: missing packages: ${missing[*]}" >&2
    echo "setup.sh: not root and no sudo; install them with: apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "setup.sh: installing ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
