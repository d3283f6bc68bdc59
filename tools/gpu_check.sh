#!/usr/bin/env bash
# tools/gpu_check.sh OUTDIR — everything pickscore checks on a GPU, in one run, for a GPU machine
# without internet (the lent H100/H200): build the CUDA backend from this tree with nvcc for sm_90,
# run the CUDA tests on the hardware (ctest -L gpu), compute-sanitizer memcheck and racecheck over
# the op test programs, the kernel benchmarks (benchmarks/cuda/), and — where python3 has torch and
# transformers with CUDA — the PyTorch baseline of the training step (tools/bench_torch.py --train
# --device cuda, against bench_train_cuda's JSON); every log goes to OUTDIR and ONE summary table is
# printed last (tools/gpu_check_summary.py). Each step runs under `timeout` against a deadline
# (GPU_CHECK_BUDGET seconds, default 530: under 9 minutes on an H100), and a failed or timed-out
# step does not stop the later ones, so the table is always printed.
#
# Before (on a machine with internet, in the repository root): tools/fetch_gpu_deps.sh
#   downloads the .deb files of doctest and Google Benchmark into .deps/ (git-ignored); this
#   script unpacks them under /tmp (dpkg -x) and points CMake at them.
# The device run (the device tool of this workplace; $OUT is its output folder), from the root:
#   run(command="bash tools/gpu_check.sh $OUT", carry=[".deps"], timeout_s=590)
# What comes back ($OUT; at most 8 files there): summary.txt (the table), console.log (all that
# was printed), benchmarks.json (every benchmark program's Google Benchmark JSON, merged),
# torch_train.log (the PyTorch baseline's output, when it ran), logs.tar.gz (every log: device,
# configure, build, ctest, sanitizers, benchmarks, torch), refreshed after every step so that a
# killed run still leaves its logs.
#
# Environment (all optional):
#   GPU_CHECK_BUDGET     seconds for the whole run (default 530); steps are cut to fit
#   GPU_CHECK_ARCH       CUDA architecture (default 90)
#   GPU_CHECK_BUILD_DIR  build directory (default /tmp/pickscore-gpu-build)
#   GPU_CHECK_JOBS       parallel compile jobs (default: nproc)
#   GPU_CHECK_STEPS      steps to run (default "device deps configure build tests bench torch memcheck racecheck")
#   GPU_CHECK_FAKE_FAIL  steps to replace by a failing command, GPU_CHECK_FAKE_HANG steps to replace
#                        by one that outlives its limit (to test the timeout and summary logic)
#   CUDNN_ROOT           cuDNN location (default: tools/find_cudnn.py: toolkit, system, Python wheel)
# Benchmark settings reach the programs as PICKSCORE_BENCH_MIN_TIME (0.05 s) and
# PICKSCORE_BENCH_REPETITIONS (5) (bench_train_cuda: one run of PICKSCORE_TRAIN_STEPS steps, default
# 3, per benchmark); the sanitizer runs set PICKSCORE_TEST_REDUCED=1 (test programs
# may shrink their tables under it) and take the doctest arguments in sanitizer_args() below.
# Exit status: 0 when every step passed, 1 otherwise (the table says which); the torch step is a
# comparison, not a check: its result is in the table but not in the exit status.
set -uo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
ROOT=$(cd "$(dirname "$SELF")/.." && pwd)

# Extra arguments (doctest filters) of one test program under a sanitizer: empty = the whole
# program. Add a line here when a program is too slow under a tool, e.g.
#   racecheck:test_cuda_attention_gpu) echo '--test-case-exclude=*cuDNN*' ;;
sanitizer_args() {
    case "$1:$2" in
    *) echo "" ;;
    esac
}

# ---- internal: one step, run by the main script under `timeout` (see run_step) -----------------
if [[ "${1:-}" == "__step" ]]; then
    step=$2
    shift 2
    cd "$ROOT" || exit 1
    case "$step" in
    device)
        echo "## nvidia-smi"; nvidia-smi
        smi=$?
        echo "## nvidia-smi --query-gpu"
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit,temperature.gpu,pstate --format=csv
        echo "## nvidia-smi -q -d CLOCK,PERFORMANCE"; nvidia-smi -q -d CLOCK,PERFORMANCE
        echo "## tools"
        for t in "$NVCC" cmake ctest ninja g++ python3 "$SANITIZER"; do
            printf '%s: ' "$t"; command -v "$t" >/dev/null 2>&1 && { "$t" --version 2>&1 | grep -m1 -iE 'version|release|[0-9]+\.[0-9]+'; } || echo "not found"
        done
        echo "## CUDA libraries of the toolkit ($CUDA_LIB_DIR)"
        find "$CUDA_LIB_DIR/" -maxdepth 1 \( -name 'libcublas*' -o -name 'libcudnn*' -o -name 'libcudart*' -o -name 'libnvrtc*' \) | sort
        echo "## cuDNN: root ${CUDNN_ROOT:-<none found>}, library ${CUDNN_LIBRARY:-<none>}"
        echo "## Python wheels: $(python3 -c 'import site,os;print(" ".join(d for d in site.getsitepackages() if os.path.isdir(d+"/nvidia")))' 2>&1)"
        echo "## machine: $(nproc) cores"; free -g; df -h /tmp | tail -1
        exit $smi  # the step fails where nvidia-smi sees no GPU
        ;;
    deps)
        # doctest and Google Benchmark from the .deb files in .deps/ (tools/fetch_gpu_deps.sh)
        shopt -s nullglob
        debs=("$ROOT"/.deps/*.deb)
        if [[ ${#debs[@]} -eq 0 ]]; then
            echo "no .deps/*.deb: relying on the system's doctest and Google Benchmark"
        fi
        mkdir -p "$DEPS_PREFIX"
        for deb in "${debs[@]}"; do
            echo "unpacking $(basename "$deb")"
            if command -v dpkg >/dev/null 2>&1; then
                dpkg -x "$deb" "$DEPS_PREFIX" || exit 1
            else  # a .deb is an ar archive holding data.tar.*
                tmp=$(mktemp -d) && (cd "$tmp" && ar x "$deb" && tar -xf data.tar.* -C "$DEPS_PREFIX") || exit 1
                rm -rf "$tmp"
            fi
        done
        find "$DEPS_PREFIX" -name '*Config.cmake' -o -name 'libbenchmark.so*' | sort
        ;;
    configure)
        doctest_dir=$(dirname "$(find "$DEPS_PREFIX" -name doctestConfig.cmake 2>/dev/null | head -1)" 2>/dev/null)
        benchmark_dir=$(dirname "$(find "$DEPS_PREFIX" -name benchmarkConfig.cmake 2>/dev/null | head -1)" 2>/dev/null)
        generator=(-G Ninja)
        command -v ninja >/dev/null 2>&1 || generator=(-G "Unix Makefiles")
        args=("${generator[@]}" -DCMAKE_BUILD_TYPE=Release
            -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DPICKSCORE_CUDA_ARCHITECTURES="$ARCH"
            -DPICKSCORE_CUDA=ON -DPICKSCORE_BUILD_TESTS=ON -DPICKSCORE_BUILD_BENCHMARKS=ON
            -DPICKSCORE_BUILD_EXAMPLES=OFF -DPICKSCORE_BUILD_TESTS_OF_BUILD=OFF -DPICKSCORE_BUILD_FUZZERS=OFF
            -DPICKSCORE_IO=OFF -DCMAKE_PREFIX_PATH="$DEPS_PREFIX/usr"
            # the host compiler there may be newer than CI's and warn about more: warnings as
            # errors is CI's check (nvcc's own -Werror all-warnings stays on)
            -DPICKSCORE_WERROR=OFF)
        [[ -n "$doctest_dir" && "$doctest_dir" != . ]] && args+=(-Ddoctest_DIR="$doctest_dir")
        [[ -n "$benchmark_dir" && "$benchmark_dir" != . ]] && args+=(-Dbenchmark_DIR="$benchmark_dir")
        [[ -n "$CUDNN_ROOT" ]] && args+=(-DCUDNN_ROOT="$CUDNN_ROOT")
        echo "cmake -S $ROOT -B $BUILD ${args[*]}"
        cmake -S "$ROOT" -B "$BUILD" "${args[@]}" || exit $?
        echo "GPU test programs:"; ctest --test-dir "$BUILD" -N -L gpu | grep 'Test *#' || { echo "none (label gpu)"; exit 1; }
        ;;
    build)
        # the GPU test programs (test name = target name) and the benchmarks, if they exist
        mapfile -t targets < <(ctest --test-dir "$BUILD" -N -L gpu | sed -n 's/^ *Test *#[0-9]*: *\([^ ]*\).*/\1/p')
        if cmake --build "$BUILD" --target help 2>/dev/null | grep -q pickscore_cuda_benchmarks; then
            targets+=(pickscore_cuda_benchmarks)
        else
            echo "no benchmark target (Google Benchmark not found?)"
        fi
        ((${#targets[@]} > 0)) || { echo "nothing to build"; exit 1; }
        echo "building ${targets[*]} with $JOBS jobs"
        keep_going=(-- -k 0)
        [[ -f "$BUILD/build.ninja" ]] || keep_going=(-- -k)
        cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" "${keep_going[@]}"
        ;;
    tests)
        PICKSCORE_CUDA_SYNC_CHECK=1 ctest --test-dir "$BUILD" -L gpu -V --timeout 120 -j 1
        ;;
    bench)
        # the quick ones first: a program's limit is the time left over the programs left, so what
        # the early ones do not use goes to the later ones
        first=(bench_cuda_ops bench_cuda_gemm bench_attention)
        mapfile -t programs < <(
            for n in "${first[@]}"; do [[ -x "$BUILD/benchmarks/cuda/$n" ]] && echo "$BUILD/benchmarks/cuda/$n"; done
            find "$BUILD/benchmarks/cuda" -maxdepth 1 -type f -executable -name 'bench_*' 2>/dev/null | sort |
                grep -v -E "/($(IFS='|'; echo "${first[*]}"))\$")
        [[ ${#programs[@]} -gt 0 ]] || { echo "no benchmark programs were built"; exit 1; }
        status=0
        # line-buffered console output, so that a program stopped by its limit leaves its finished rows
        linebuf=()
        command -v stdbuf >/dev/null 2>&1 && linebuf=(stdbuf -oL)
        # a program's share of the time left is its weight over the weights of the programs left:
        # bench_train_cuda (about a minute: ViT-H training steps) counts twice
        weight() { [[ $(basename "$1") == bench_train_cuda ]] && echo 2 || echo 1; }
        for i in "${!programs[@]}"; do
            p=${programs[$i]} name=$(basename "${programs[$i]}")
            weights=0
            for q in "${programs[@]:$i}"; do weights=$((weights + $(weight "$q"))); done
            left=$((STEP_DEADLINE - $(date +%s))) share=$((left * $(weight "$p") / weights))
            if ((share < 5)); then echo "$name: no time left"; echo -e "$name\tskipped\t0" >>"$WORK/bench_status.tsv"; status=1; continue; fi
            echo "== $name (limit ${share}s)"
            start=$(date +%s)
            timeout --kill-after=5 "$share" "${linebuf[@]}" "$p" --benchmark_enable_random_interleaving=true \
                --benchmark_out="$LOGS/$name.json" --benchmark_out_format=json >"$LOGS/$name.log" 2>&1
            rc=$?
            echo -e "$name\t$rc\t$(($(date +%s) - start))" >>"$WORK/bench_status.tsv"
            tail -n 3 "$LOGS/$name.log"
            ((rc == 0)) || status=1
        done
        exit $status
        ;;
    torch)
        # the PyTorch baseline of bench_train_cuda: the same step in transformers' CLIPModel (bf16
        # autocast, SDPA, gradient checkpointing, fused AdamW), with the ratios when the JSON is there
        json=$LOGS/bench_train_cuda.json
        args=(--train --device cuda --reps 3)
        if [[ -s "$json" ]]; then args+=(--cuda-json "$json"); else echo "no $json: PyTorch times only"; fi
        echo "python3 tools/bench_torch.py ${args[*]}"
        python3 -u "$ROOT/tools/bench_torch.py" "${args[@]}"
        ;;
    memcheck | racecheck)
        tool=$step
        [[ -x "$SANITIZER" ]] || { echo "compute-sanitizer not found"; exit 1; }
        help=$("$SANITIZER" --help 2>&1)
        opts=(--tool "$tool" --error-exitcode 86 --print-limit 20)
        grep -q -- '--report-api-errors' <<<"$help" && opts+=(--report-api-errors no)   # tests provoke API errors on purpose
        grep -q -- '--show-backtrace' <<<"$help" && opts+=(--show-backtrace device)
        # racecheck: pickscore's kernels only (cuBLAS/cuDNN run uninstrumented, which saves most of the time)
        [[ $tool == racecheck ]] && grep -q -- '--kernel-name' <<<"$help" && opts+=(--kernel-name kns=pickscore)
        # name<TAB>program of each GPU test (the program is empty where it was not built); the op
        # tests first, the emulator's primitive tests last
        ctest --test-dir "$BUILD" -N -V -L gpu |
            awk '/^[0-9]+: Test command:/ { cmd[$1] = $4 }
                 /^ *Test +#[0-9]+:/ { n = $2; gsub(/[#:]/, "", n); print $3 "\t" cmd[n ":"] }' >"$WORK/gpu_programs.tsv"
        mapfile -t rows < <(grep -v emulator "$WORK/gpu_programs.tsv"; grep emulator "$WORK/gpu_programs.tsv")
        status=0
        for i in "${!rows[@]}"; do
            name=${rows[$i]%%$'\t'*} exe=${rows[$i]#*$'\t'}
            left=$((STEP_DEADLINE - $(date +%s))) share=$((left / (${#rows[@]} - i)))
            if [[ -z "$exe" || ! -x "$exe" ]]; then echo -e "$tool\t$name\tnot built\t0" >>"$WORK/sanitizer_status.tsv"; status=1; continue; fi
            if ((share < 5)); then echo -e "$tool\t$name\tskipped\t0" >>"$WORK/sanitizer_status.tsv"; status=1; continue; fi
            read -r -a extra <<<"$(sanitizer_args "$tool" "$name")"
            echo "== $tool $name ${extra[*]} (limit ${share}s)"
            start=$(date +%s)
            PICKSCORE_TEST_REDUCED=1 timeout --kill-after=5 "$share" "$SANITIZER" "${opts[@]}" "$exe" "${extra[@]}" \
                >"$LOGS/${tool}_$name.log" 2>&1
            rc=$?
            # 77: the program skipped itself (test_nccl_gpu's several-rank part on one GPU); the sanitizer
            # checked what ran before that and would have exited 86 on an error. The table says "skipped".
            echo -e "$tool\t$name\t$rc\t$(($(date +%s) - start))" >>"$WORK/sanitizer_status.tsv"
            ((rc == 0 || rc == 77)) || status=1
            grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|\[doctest\] (test cases|Status)' "$LOGS/${tool}_$name.log" | tail -n 4
        done
        exit $status
        ;;
    *)
        echo "unknown step $step"; exit 2 ;;
    esac
    exit $?
fi

# ---- the main script ------------------------------------------------------------------------------
if [[ $# -lt 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
OUTDIR=$1
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-530}
DEADLINE=$((START + BUDGET))

export ROOT ARCH=${GPU_CHECK_ARCH:-90}
export BUILD=${GPU_CHECK_BUILD_DIR:-/tmp/pickscore-gpu-build}
export JOBS=${GPU_CHECK_JOBS:-$(nproc)}
export WORK=/tmp/pickscore-gpu-check
export LOGS=$WORK/logs
export DEPS_PREFIX=/tmp/pickscore-gpu-deps
rm -rf "$WORK" && mkdir -p "$LOGS"
: >"$WORK/steps.tsv"

exec > >(tee "$OUTDIR/console.log") 2>&1
TEE_PID=$!

# nvcc, compute-sanitizer, the CUDA libraries and cuDNN (the toolkit's, else a Python wheel's)
NVCC=$(command -v nvcc || true)
for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc; do [[ -z "$NVCC" && -x "$c" ]] && NVCC=$c; done
export NVCC=${NVCC:-nvcc}
CUDA_HOME_GUESS=$(dirname "$(dirname "$(readlink -f "$(command -v "$NVCC" || echo /usr/local/cuda/bin/nvcc)")")")
export PATH="$CUDA_HOME_GUESS/bin:$PATH"
SANITIZER=$(command -v compute-sanitizer || true)
for c in "$CUDA_HOME_GUESS/bin/compute-sanitizer" "$CUDA_HOME_GUESS/compute-sanitizer/compute-sanitizer" /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [[ -z "$SANITIZER" && -x "$c" ]] && SANITIZER=$c
done
export SANITIZER=${SANITIZER:-compute-sanitizer}
export CUDA_LIB_DIR=$CUDA_HOME_GUESS/lib64
[[ -d "$CUDA_LIB_DIR" ]] || CUDA_LIB_DIR=$CUDA_HOME_GUESS/lib
export CUDNN_ROOT=${CUDNN_ROOT:-$(python3 "$ROOT/tools/find_cudnn.py" --root 2>/dev/null)}
CUDNN_LIBRARY=$(CUDNN_ROOT=$CUDNN_ROOT python3 "$ROOT/tools/find_cudnn.py" --library 2>/dev/null)
export CUDNN_LIBRARY
libpath="$DEPS_PREFIX/usr/lib/x86_64-linux-gnu:$CUDA_LIB_DIR"
[[ -n "$CUDNN_LIBRARY" ]] && libpath="$libpath:$(dirname "$CUDNN_LIBRARY")"
# cuBLAS/NVRTC of a wheel (nvidia/cu13/lib) go last: the toolkit's come first
for d in $(python3 -c 'import site,glob;print(" ".join(glob.glob(site.getsitepackages()[0]+"/nvidia/cu1*/lib")))' 2>/dev/null); do
    libpath="$libpath:$d"
done
export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PICKSCORE_BENCH_MIN_TIME=${PICKSCORE_BENCH_MIN_TIME:-0.05}
export PICKSCORE_BENCH_REPETITIONS=${PICKSCORE_BENCH_REPETITIONS:-5}

elapsed() { echo $(($(date +%s) - START)); }

# Packs the logs into OUTDIR (after every step, so a killed run still leaves them).
archive() {
    cp "$WORK/steps.tsv" "$WORK"/*.txt "$WORK"/*.tsv "$LOGS/" 2>/dev/null
    tar -czf "$OUTDIR/logs.tar.gz.tmp" -C "$WORK" logs 2>/dev/null && mv -f "$OUTDIR/logs.tar.gz.tmp" "$OUTDIR/logs.tar.gz"
}

declare -A STATUS
# run_step NAME NOMINAL_SECONDS RESERVE_SECONDS: runs step NAME under timeout, limited to
# NOMINAL seconds and to what the deadline leaves after RESERVE seconds for the later steps.
run_step() {
    local name=$1 nominal=$2 reserve=$3
    local log="$LOGS/$name.log"
    if [[ " ${GPU_CHECK_STEPS:-device deps configure build tests bench torch memcheck racecheck} " != *" $name "* ]]; then
        STATUS[$name]=unselected  # the later steps use what an earlier run left in the build directory
        echo -e "$name\tskipped\t0\tnot selected" >>"$WORK/steps.tsv"
        return 0
    fi
    local left=$((DEADLINE - $(date +%s) - reserve))
    local limit=$((nominal < left ? nominal : left))
    if ((limit < 5)); then
        STATUS[$name]=skipped
        echo "== [$(elapsed)s] $name: skipped (no time left)"
        echo -e "$name\tskipped\t0\tno time left" >>"$WORK/steps.tsv"
        return 0
    fi
    echo "== [$(elapsed)s] $name (limit ${limit}s, log $name.log)"
    local cmd=("$SELF" __step "$name")
    [[ " ${GPU_CHECK_FAKE_FAIL:-} " == *" $name "* ]] && cmd=(bash -c 'echo "fake failure"; exit 3')
    [[ " ${GPU_CHECK_FAKE_HANG:-} " == *" $name "* ]] && cmd=(sleep 100000)
    local start rc secs result
    start=$(date +%s)
    STEP_DEADLINE=$((start + limit - 2)) timeout --kill-after=5 "$limit" "${cmd[@]}" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    case $rc in
    0) result=ok ;;
    124 | 137) result=timeout ;;
    *) result=failed ;;
    esac
    STATUS[$name]=$result
    echo -e "$name\t$result\t$secs\trc $rc" >>"$WORK/steps.tsv"
    echo "   $name: $result after ${secs}s (rc $rc)"
    [[ $result == ok ]] || tail -n 15 "$log" | sed 's/^/   | /'
    archive
}

# A step whose inputs are missing is recorded as skipped with the reason.
skip_step() {
    STATUS[$1]=skipped
    echo "== [$(elapsed)s] $1: skipped ($2)"
    echo -e "$1\tskipped\t0\t$2" >>"$WORK/steps.tsv"
}

# Why the PyTorch baseline cannot run here (printed; status 0), or status 1 when it can: python3
# must import torch and transformers, and torch must see the GPU.
torch_missing() {
    local out rc
    out=$(timeout 60 python3 -c 'import sys, torch, transformers; sys.exit(0 if torch.cuda.is_available() else 3)' 2>&1)
    rc=$?
    case $rc in
    0) return 1 ;;
    3) echo "torch sees no CUDA device" ;;
    124) echo "importing torch took over 60 s" ;;
    *) echo "python3 lacks torch or transformers: $(tail -n 1 <<<"$out" | cut -c1-80)" ;;
    esac
    return 0
}

echo "pickscore gpu_check: $(date -u '+%Y-%m-%d %H:%M UTC'), budget ${BUDGET}s, arch sm_$ARCH, $JOBS jobs, logs -> $OUTDIR"
export STEP_DEADLINE

# nominal limits (seconds) and the reserve kept for the steps after each one
run_step device 20 480
run_step deps 20 460
run_step configure 90 390
if [[ ${STATUS[configure]:-} == ok || ${STATUS[configure]:-} == unselected ]]; then
    run_step build 300 230
else
    skip_step build "configure did not succeed"
fi
if [[ ${STATUS[configure]:-} =~ ^(ok|unselected)$ && ${STATUS[build]:-} != skipped ]]; then
    # after a failed build, whatever was built still runs (ctest reports the missing programs)
    run_step tests 90 210
    run_step bench 210 110
    # the PyTorch baseline (tools/bench_torch.py), where python3 has torch + transformers with CUDA
    if [[ " ${GPU_CHECK_STEPS:-device deps configure build tests bench torch memcheck racecheck} " == *" torch "* ]] &&
        why=$(torch_missing); then
        skip_step torch "$why"
    else
        run_step torch 75 65
        [[ -s "$LOGS/torch.log" ]] && cp "$LOGS/torch.log" "$OUTDIR/torch_train.log"
    fi
    run_step memcheck 90 30
    run_step racecheck 90 5
else
    for s in tests bench torch memcheck racecheck; do skip_step $s "nothing was built"; done
fi

# ---- the summary --------------------------------------------------------------------------------
archive
timeout 60 python3 "$ROOT/tools/gpu_check_summary.py" "$WORK" "$OUTDIR" >"$WORK/summary.txt" 2>"$LOGS/summary_errors.log"
src=$?
if ((src != 0)) || [[ ! -s "$WORK/summary.txt" ]]; then
    {
        echo "(tools/gpu_check_summary.py failed, status $src; the raw step table follows)"
        column -t -s $'\t' "$WORK/steps.tsv" 2>/dev/null || cat "$WORK/steps.tsv"
        cat "$LOGS/summary_errors.log"
    } >>"$WORK/summary.txt"
fi
cp "$WORK/summary.txt" "$OUTDIR/summary.txt"
archive
echo "== [$(elapsed)s] done; in $OUTDIR: $(cd "$OUTDIR" && echo *)"
echo
cat "$WORK/summary.txt"
all_ok=1
for s in device deps configure build tests bench memcheck racecheck; do
    if [[ " ${GPU_CHECK_STEPS:-device deps configure build tests bench memcheck racecheck} " == *" $s "* ]]; then
        [[ ${STATUS[$s]:-} == ok ]] || all_ok=0
    fi
done
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
((all_ok)) && exit 0 || exit 1
