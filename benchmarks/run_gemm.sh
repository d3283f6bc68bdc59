#!/usr/bin/env bash
# Builds bench_gemm, runs pickscore's sgemm against OpenBLAS (repetitions interleaved at random,
# medians reported) and prints a markdown table.
#
#   benchmarks/run_gemm.sh [--threads N] [--repetitions R] [--build-dir DIR] [-- extra benchmark flags]
#
# Peak = threads x FMA width (8 floats for AVX2, 16 for AVX-512) x 2 FMA units x 2 flops x clock,
# with the clock that bench_gemm measures (a chain of dependent adds, one per cycle, on one core);
# the assumption of two FMA units per core holds for Zen 2/3/4, Skylake-SP Gold/Platinum, Ice Lake
# and Sapphire Rapids, not for Xeon Bronze/Silver parts with one AVX-512 unit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-bench"
threads=2
reps=5
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --threads) threads="$2"; shift 2 ;;
        --repetitions) reps="$2"; shift 2 ;;
        --build-dir) build="$2"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "run_gemm.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPICKSCORE_BUILD_TESTS=OFF \
    -DPICKSCORE_BUILD_EXAMPLES=OFF -DPICKSCORE_BUILD_TESTS_OF_BUILD=OFF -DPICKSCORE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j2 --target bench_gemm >/dev/null

json="$build/bench_gemm.json"
"$build/benchmarks/bench_gemm" --threads "$threads" --benchmark_repetitions="$reps" \
    --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=false \
    --benchmark_out="$json" --benchmark_out_format=json ${extra[@]+"${extra[@]}"} >&2

python3 - "$json" <<'EOF'
import json, sys, statistics
data = json.load(open(sys.argv[1]))
ctx = data["context"]
threads = int(ctx.get("threads", "2"))
simd = ctx.get("pickscore_simd", "avx2")
clock = float(ctx.get("core_clock_ghz", "0") or 0)
width = {"avx512": 16, "avx2": 8}.get(simd, 4)
peak = threads * width * 2 * 2 * clock  # GFLOP/s
runs = {}
for b in data["benchmarks"]:
    if b.get("run_type") != "iteration" or "FLOPS" not in b:
        continue
    impl, shape = b["run_name"].split("/", 1)
    shape = shape.replace("/real_time", "")
    runs.setdefault(shape, {}).setdefault(impl, []).append(b["FLOPS"] / 1e9)
layers = {("3840", "1280"): "qkv", ("1280", "1280"): "out-proj", ("5120", "1280"): "fc1", ("1280", "5120"): "fc2"}
print(f"OpenBLAS: {ctx.get('openblas_config', '?')}, core {ctx.get('openblas_core', '?')} "
      f"(OPENBLAS_CORETYPE={ctx.get('OPENBLAS_CORETYPE', '?')}); pickscore kernel: {simd}; threads: {threads}")
print(f"Peak: {threads} cores x {width} floats x 2 FMA units x 2 flops x {clock:.2f} GHz (measured) = {peak:.0f} GFLOP/s")
print()
print("| shape (M x N x K) | layer | pickscore GFLOP/s | OpenBLAS GFLOP/s | ratio | pickscore % of peak | OpenBLAS % of peak |")
print("|---|---|---|---|---|---|---|")
ratios = []
order = [("3840", "1280"), ("1280", "1280"), ("5120", "1280"), ("1280", "5120"), ("3840", "3840"),
         ("5120", "3840"), ("1280", "3840"), ("3840", "5120"), ("5120", "5120")]
def sort_key(shape):
    d = dict(kv.split("=") for kv in shape.split("/"))
    nk = (d["N"], d["K"])
    return (int(d["M"]), order.index(nk) if nk in order else len(order), int(d["N"]), int(d["K"]))
for shape, r in sorted(runs.items(), key=lambda item: sort_key(item[0])):
    if "pickscore" not in r or "openblas" not in r:
        continue
    dims = dict(kv.split("=") for kv in shape.split("/"))
    p, o = statistics.median(r["pickscore"]), statistics.median(r["openblas"])
    spread = lambda v: f" ({min(v):.0f}-{max(v):.0f})" if len(v) > 1 else ""
    ratios.append(p / o)
    pk = lambda g: f"{100 * g / peak:.0f}%" if peak > 0 else "?"
    print(f"| {dims['M']} x {dims['N']} x {dims['K']} | {layers.get((dims['N'], dims['K']), '')} "
          f"| {p:.1f}{spread(r['pickscore'])} | {o:.1f}{spread(r['openblas'])} | {p / o:.2f} | {pk(p)} | {pk(o)} |")
if ratios:
    print()
    print(f"Median ratio {statistics.median(ratios):.2f}, lowest {min(ratios):.2f} "
          f"(medians of {len(next(iter(runs.values()))['pickscore'])} repetitions; min-max in parentheses).")
EOF
