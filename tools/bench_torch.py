#!/usr/bin/env python3
"""End-to-end CLIP inference speed: pickscore (benchmarks/bench_e2e) against Hugging Face transformers'
CLIPModel (PyTorch), the same shapes, dtype and thread count, in one run; prints both and the ratio.

    python3 -m venv /tmp/venv-bench && /tmp/venv-bench/bin/pip install -r tools/requirements-bench.txt
    /tmp/venv-bench/bin/python tools/bench_torch.py --binary build/benchmarks/bench_e2e --threads 2

What is timed (both sides): ViT-H/14 at its real size with random weights;
  images   preprocessed pixels [B, 3, 224, 224] in, image embeddings [B, 1024] out
           (pickscore: ClipModel::encode_images, L2-normalised; torch: CLIPModel.get_image_features,
           then x / x.norm());
  text     token ids [B, T] in (T = --tokens, end-of-text last), text embeddings out (pickscore gets
           the ids padded to 77 and stops at the end-of-text, as it does for real prompts; torch gets
           the B x T ids unpadded, as PickScore's processor(padding=True) gives them for one prompt).
Each point: one warm-up call, then --reps timed calls; the median wall time is reported (pickscore:
Google Benchmark repetitions of one iteration each, the median aggregate). torch runs under
torch.inference_mode() with torch.set_num_threads(--threads) and one inter-op thread; attention is
transformers' "sdpa" implementation. The machine, the load average before and after, and the
versions are printed too: on a shared machine the load matters, so report it with the numbers.
Each repetition's time is printed, and the table also gives the process CPU seconds per call
(user + system, all threads; pickscore: Google Benchmark's process CPU time): on a loaded machine
CPU seconds close to the wall time mean the side got its cores.

--device cuda runs the torch side on the GPU (bf16 by default there, eager + SDPA) for the batches
given; the pickscore GPU figures come from benchmarks/cuda/bench_e2e_cuda (see its header), whose
JSON output can be passed with --cuda-json to print the ratios.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time


def machine():
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def loadavg():
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


# Process CPU seconds (user + system, all threads) per call, median: ("pickscore"|"torch", kind, batch).
# On a loaded machine wall times stretch with the load; CPU seconds much less so (both sides'
# threads may spin while they wait, so it is not a clean measure either): printed next to them.
CPU_SECONDS = {}


def run_pickscore(args):
    cmd = [args.binary, "--threads", str(args.threads), "--batches", args.batches, "--tokens", str(args.tokens),
           "--dtype", args.dtype, "--benchmark_format=json", f"--benchmark_repetitions={args.reps}"]
    if args.only:
        cmd.append(f"--benchmark_filter={'BM_images' if args.only == 'images' else 'BM_text'}")
    print("pickscore:", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    data = json.loads(out)
    res = {}
    reps = {}
    for b in data["benchmarks"]:
        kind = "images" if b["run_name"].startswith("BM_images") else "text"
        batch = int(re.search(r"batch:(\d+)", b["run_name"]).group(1))
        seconds = b["real_time"] * {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[b["time_unit"]]
        if b.get("run_type") == "iteration":
            reps.setdefault((kind, batch), []).append(seconds)
        cpu = b["cpu_time"] * {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[b["time_unit"]]
        if b.get("aggregate_name") == "median" or (args.reps == 1 and b.get("run_type") != "aggregate"):
            res[(kind, batch)] = seconds
            CPU_SECONDS["pickscore", kind, batch] = cpu
    for (kind, batch), seconds in sorted(res.items()):
        times = reps.get((kind, batch), [seconds])
        print(f"pickscore: {kind} batch {batch}: median {seconds:.3f} s of {len(times)} "
              f"({', '.join(f'{t:.3f}' for t in times)})", flush=True)
    return res


def run_torch(args, device):
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                         num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                         layer_norm_eps=1e-5, eos_token_id=49407, bos_token_id=49406, pad_token_id=1),
        vision_config=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                           image_size=224, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5),
        projection_dim=1024)
    cfg._attn_implementation = "sdpa"
    t0 = time.time()
    torch.manual_seed(0)
    model = CLIPModel(cfg).to(dtype=dtype, device=device).eval()
    print(f"torch: model built in {time.time() - t0:.1f} s ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
          f"parameters, {args.dtype}, {device}, attention {model.config._attn_implementation})", flush=True)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    res = {}
    batches = [int(b) for b in args.batches.split(",")]
    g = torch.Generator().manual_seed(7)
    with torch.inference_mode():
        for b in batches:
            for kind in ("images", "text"):
                if args.only and args.only != kind:
                    continue
                if kind == "images":
                    x = torch.randn(b, 3, 224, 224, generator=g).to(dtype=dtype, device=device)

                    def call():
                        e = model.get_image_features(pixel_values=x)
                        return e / e.norm(dim=-1, keepdim=True)
                else:
                    ids = torch.randint(1, 49405, (b, args.tokens), generator=g)
                    ids[:, 0] = 49406
                    ids[:, -1] = 49407
                    ids = ids.to(device)

                    def call():
                        e = model.get_text_features(input_ids=ids)
                        return e / e.norm(dim=-1, keepdim=True)
                call()
                sync()
                times, cpus = [], []
                for _ in range(args.reps):
                    t = time.perf_counter()
                    c = time.process_time()
                    call()
                    sync()
                    times.append(time.perf_counter() - t)
                    cpus.append(time.process_time() - c)
                res[(kind, b)] = statistics.median(times)
                CPU_SECONDS["torch", kind, b] = statistics.median(cpus)
                print(f"torch: {kind} batch {b}: median {res[(kind, b)]:.3f} s of {args.reps} "
                      f"({', '.join(f'{t:.3f}' for t in times)})", flush=True)
    del model
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/benchmarks/bench_e2e", help="pickscore's bench_e2e")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--tokens", type=int, default=77)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default=None, help="default: f32 on cpu, bf16 on cuda")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", choices=["images", "text"], default=None)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--skip-pickscore", action="store_true")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--cuda-json", help="JSON output of benchmarks/cuda/bench_e2e_cuda (GPU ratios)")
    args = ap.parse_args()
    if args.dtype is None:
        args.dtype = "bf16" if args.device == "cuda" else "f32"

    import torch
    import transformers
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {machine()}")
    print(f"versions: torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}")
    print(f"torch CPU: {torch.backends.cpu.get_cpu_capability()}, MKL {torch.backends.mkl.is_available()}, "
          f"oneDNN {torch.backends.mkldnn.is_available()}")
    print(f"load average before: {loadavg()}", flush=True)

    ours = {}
    if args.device == "cpu" and not args.skip_pickscore:
        ours = run_pickscore(args)
    elif args.cuda_json:
        with open(args.cuda_json) as f:
            for b in json.load(f)["benchmarks"]:
                if b.get("aggregate_name") != "median":
                    continue
                name = b["run_name"]
                if not name.startswith(("BM_e2e_images/", "BM_e2e_text/")) or "graph" in name:
                    continue
                kind = "images" if "images" in name else "text"
                batch = int(re.search(r"batch:(\d+)", name).group(1))
                ours[(kind, batch)] = b["real_time"] * {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[b["time_unit"]]
    theirs = {} if args.skip_torch else run_torch(args, args.device)
    print(f"load average after: {loadavg()}")

    print()
    print(f"| what | batch | pickscore | PyTorch {torch.__version__.split('+')[0]} | ratio (pickscore / PyTorch speed) "
          f"| CPU s per call (pickscore / PyTorch) |")
    print("|---|---|---|---|---|---|")
    for key in sorted(set(ours) | set(theirs)):
        kind, b = key
        unit = "images/s" if kind == "images" else "prompts/s"
        a = ours.get(key)
        t = theirs.get(key)
        fa = f"{b / a:.3g} {unit} ({a:.3g} s)" if a else "-"
        ft = f"{b / t:.3g} {unit} ({t:.3g} s)" if t else "-"
        ratio = f"{t / a:.2f}x" if a and t else "-"
        label = f"{kind} ({args.tokens} tokens)" if kind == "text" else kind
        ca, ct = CPU_SECONDS.get(("pickscore", kind, b)), CPU_SECONDS.get(("torch", kind, b))
        fc = f"{ca:.3g} / {ct:.3g}" if ca and ct else (f"{ca:.3g} / -" if ca else (f"- / {ct:.3g}" if ct else "-"))
        print(f"| {label}, {args.dtype}, {args.threads} threads | {b} | {fa} | {ft} | {ratio} | {fc} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
