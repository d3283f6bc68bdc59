#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds everything with CMake (Release, warnings
# are errors), runs CTest (unit tests and the tests of the build: install + find_package,
# add_subdirectory, meson subproject, header and ODR checks), fuzzes each libFuzzer target for
# PICKSCORE_FUZZ_SECONDS (default 20 here, to keep the whole run well under 30 minutes on 2 cores)
# in a clang build, then builds and tests with meson.
# Exits non-zero if anything fails. The build directory can be changed with PICKSCORE_BUILD_DIR
# (default build/); the meson build goes to <build dir>/meson.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$SECONDS
build=${PICKSCORE_BUILD_DIR:-build}
jobs=$(nproc)
elapsed() { printf '%dm%02ds' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)); }
# Wall time, and the CPU seconds (user + sys) of everything this script ran: a measure of its cost
# that does not depend on the machine's load. `times` must run in this shell: in a subshell or a
# pipeline it sees no children.
times_file=$(mktemp)
report_time() {
    times >"$times_file"
    local cpu
    cpu=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.0f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$times_file")
    rm -f "$times_file"
    echo "elapsed:    $(elapsed) on $jobs cores, $cpu s of CPU time"
}

# Printed however the script ends, also when a build step stops it.
trap report_time EXIT

scripts/setup.sh
# nvcc from the CUDA toolkit's usual place when it is not on PATH: the CUDA kernels are compiled in
# every run (for sm_80 and sm_90, warnings as errors) when the toolkit is there.
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi

echo "== CMake: configure and build ($build)"
cmake --preset release -B "$build"
cmake --build "$build" -j "$jobs"

echo "== CTest"
ctest_status=0
# --timeout: a test without its own TIMEOUT gets 5 minutes (each should take seconds).
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 300 || ctest_status=$?

echo "== libFuzzer targets, ${PICKSCORE_FUZZ_SECONDS:-20} s each ($build/fuzz, clang++)"
# Image decoders, tokenizer, vocabulary and JSON readers, safetensors header: each fuzzed from its
# committed corpus (tests/fuzz/corpus/) under AddressSanitizer and UBSan for a bounded time.
fuzz_status=0
if cmake -S . -B "$build/fuzz" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Release \
        -DPICKSCORE_BUILD_FUZZERS=ON -DPICKSCORE_FUZZ_SECONDS="${PICKSCORE_FUZZ_SECONDS:-20}" \
        -DPICKSCORE_BUILD_BENCHMARKS=OFF -DPICKSCORE_BUILD_EXAMPLES=OFF -DPICKSCORE_BUILD_TESTS_OF_BUILD=OFF \
        -DPICKSCORE_CUDA=OFF -DPICKSCORE_COLLECT=OFF >/dev/null &&
    cmake --build "$build/fuzz" -j "$jobs" --target fuzz_all; then
    ctest --test-dir "$build/fuzz" -L fuzz --output-on-failure -j "$jobs" || fuzz_status=$?
else
    fuzz_status=$?
    echo "fuzz build failed"
fi

echo "== meson: configure, build and test ($build/meson)"
# The same tests and programs as CMake, at -O1 (they compile in about half the time of -O3 and run
# fast enough; CMake's Release build is the optimised one); the benchmarks are left to the CMake
# build, and the CUDA library (built when meson finds nvcc, cuBLAS and cuDNN) is built for sm_90 only.
meson_status=0
meson_options=(-Doptimization=1 -Ddebug=false -Dwerror=true -Dtests=enabled -Dbenchmarks=disabled -Dexamples=enabled
               -Dgpu_architectures=90)
if [[ -f "$build/meson/meson-private/coredata.dat" ]]; then
    meson setup --reconfigure "${meson_options[@]}" "$build/meson" .
else
    meson setup "${meson_options[@]}" "$build/meson" .
fi
if meson compile -C "$build/meson" -j "$jobs"; then
    meson test -C "$build/meson" --print-errorlogs --num-processes "$jobs" || meson_status=$?
else
    meson_status=$?
    echo "meson compile failed"
fi

echo "== summary"
echo "ctest:      $([[ $ctest_status -eq 0 ]] && echo passed || echo "FAILED (status $ctest_status)")"
echo "fuzz:       $([[ $fuzz_status -eq 0 ]] && echo passed || echo "FAILED (status $fuzz_status)")"
echo "meson test: $([[ $meson_status -eq 0 ]] && echo passed || echo "FAILED (status $meson_status)")"
[[ $ctest_status -eq 0 && $fuzz_status -eq 0 && $meson_status -eq 0 ]]
