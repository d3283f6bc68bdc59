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

--train times one PickScore optimizer step instead (benchmarks/bench_train, f32 on the CPU): the
small CLIP of bench_train.cpp (224 px / 32 px patches, vision width 384 x 6 layers, text width 256 x
6 layers, embed 256, 29.4 M parameters), --batch prompts with two images each, --tokens tokens per
prompt. Both sides: the text forward of the prompts and one image forward of all 2 x batch images,
L2-normalised embeddings, s_k = exp(logit_scale) <text, image_k>, the KL between the labels and
softmax(s_0, s_1) weighted 1/batch per prompt, the backward, gradient clipping at norm 1.0 and
AdamW (lr 3e-6, betas 0.9/0.999, eps 1e-8, weight decay 0.3 on every parameter). torch runs in
train mode (dropout is 0 in CLIP's config), SDPA attention, the foreach AdamW and clipping,
one warm-up step (as bench_train) and then --reps timed steps; --rounds alternates the two sides
that many times and prints every round's ratio.

    /tmp/venv-bench/bin/python tools/bench_torch.py --train --binary build/benchmarks/bench_train \
        --threads 2 --batch 8 --reps 5 --rounds 2

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


SMALL = dict(image_size=224, patch_size=32, vision_width=384, vision_layers=6, vision_heads=6, vision_mlp=1536,
             vocab=49408, context=77, text_width=256, text_layers=6, text_heads=4, text_mlp=1024, embed=256)


def run_pickscore_train(args):
    cmd = [args.binary, "--threads", str(args.threads), "--batch", str(args.batch), "--tokens", str(args.tokens),
           "--benchmark_format=json", f"--benchmark_repetitions={args.reps}"]
    print("pickscore:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    sys.stdout.write(proc.stderr)
    data = json.loads(proc.stdout)
    unit = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}
    times, median, cpu = [], None, None
    for b in data["benchmarks"]:
        seconds = b["real_time"] * unit[b["time_unit"]]
        if b.get("run_type") == "iteration":
            times.append(seconds)
        if b.get("aggregate_name") == "median" or (args.reps == 1 and b.get("run_type") != "aggregate"):
            median, cpu = seconds, b["cpu_time"] * unit[b["time_unit"]]
    print(f"pickscore: train step batch {args.batch}: median {median:.3f} s of {len(times)} "
          f"({', '.join(f'{t:.3f}' for t in times)}), CPU {cpu:.3f} s", flush=True)
    return median, cpu


def run_torch_train(args):
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    c = SMALL
    cfg = CLIPConfig(
        text_config=dict(vocab_size=c["vocab"], hidden_size=c["text_width"], intermediate_size=c["text_mlp"],
                         num_hidden_layers=c["text_layers"], num_attention_heads=c["text_heads"],
                         max_position_embeddings=c["context"], hidden_act="gelu", layer_norm_eps=1e-5,
                         eos_token_id=49407, bos_token_id=49406, pad_token_id=1),
        vision_config=dict(hidden_size=c["vision_width"], intermediate_size=c["vision_mlp"],
                           num_hidden_layers=c["vision_layers"], num_attention_heads=c["vision_heads"],
                           image_size=c["image_size"], patch_size=c["patch_size"], hidden_act="gelu",
                           layer_norm_eps=1e-5),
        projection_dim=c["embed"])
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = CLIPModel(cfg).train()
    params = list(model.parameters())
    # foreach: on this CPU (2026-11-26, torch 2.15, 29 M parameters) fused=True took 1.7 s per update
    # and the default per-tensor loop 6 s (both under load), foreach 0.26 s.
    opt = torch.optim.AdamW(params, lr=3e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.3, foreach=True)
    kind = "foreach"
    print(f"torch: {sum(p.numel() for p in params) / 1e6:.1f} M parameters, f32, cpu, attention "
          f"{model.config._attn_implementation}, AdamW {kind}, {torch.get_num_threads()} threads", flush=True)

    B, T, S = args.batch, args.tokens, c["image_size"]
    g = torch.Generator().manual_seed(7)
    pixels = torch.randn(2 * B, 3, S, S, generator=g)
    ids = torch.randint(1, 49405, (B, T), generator=g)
    ids[:, 0] = 49406
    ids[:, -1] = 49407
    y0 = torch.tensor([[1.0, 0.0, 0.5][i % 3] for i in range(B)])
    labels = torch.stack([y0, 1 - y0], dim=1)
    weights = torch.full((B,), 1.0 / B)

    def step():
        opt.zero_grad(set_to_none=True)
        txt = model.get_text_features(input_ids=ids)
        img = model.get_image_features(pixel_values=pixels)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        img = (img / img.norm(dim=-1, keepdim=True)).view(B, 2, -1)
        logits = model.logit_scale.exp() * torch.einsum("be,bke->bk", txt, img)
        logp = torch.log_softmax(logits, dim=-1)
        loss = (weights * (torch.xlogy(labels, labels) - labels * logp).sum(dim=-1)).sum()  # KL(y || p)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        return loss.item()

    step()  # warm-up
    times, cpus = [], []
    for _ in range(args.reps):
        t = time.perf_counter()
        cp = time.process_time()
        step()
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - cp)
    med = statistics.median(times)
    print(f"torch: train step batch {B}: median {med:.3f} s of {args.reps} ({', '.join(f'{t:.3f}' for t in times)}), "
          f"CPU {statistics.median(cpus):.3f} s", flush=True)
    del model, opt
    return med, statistics.median(cpus)


def main_train(args):
    import torch
    rows = []
    for r in range(args.rounds):
        print(f"--- round {r + 1}/{args.rounds}, load average {loadavg()}", flush=True)
        ours = None if args.skip_pickscore else run_pickscore_train(args)
        theirs = None if args.skip_torch else run_torch_train(args)
        rows.append((r + 1, ours, theirs))
    print(f"load average after: {loadavg()}")
    print()
    print(f"| round | pickscore s/step (examples/s) | PyTorch {torch.__version__.split('+')[0]} s/step (examples/s) "
          f"| ratio (PyTorch time / pickscore time) | CPU s per step (pickscore / PyTorch) |")
    print("|---|---|---|---|---|")
    for r, a, t in rows:
        fa = f"{a[0]:.3f} ({args.batch / a[0]:.2f})" if a else "-"
        ft = f"{t[0]:.3f} ({args.batch / t[0]:.2f})" if t else "-"
        ratio = f"{t[0] / a[0]:.2f}x" if a and t else "-"
        fc = f"{a[1]:.3f} / {t[1]:.3f}" if a and t else "-"
        print(f"| {r} | {fa} | {ft} | {ratio} | {fc} |")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=None,
                    help="pickscore's bench_e2e (default build/benchmarks/bench_e2e; with --train, bench_train)")
    ap.add_argument("--train", action="store_true", help="time one training step instead (see above)")
    ap.add_argument("--batch", type=int, default=8, help="--train: prompts per step (2 images each)")
    ap.add_argument("--rounds", type=int, default=2, help="--train: alternating rounds of the two sides")
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
    if args.binary is None:
        args.binary = "build/benchmarks/bench_train" if args.train else "build/benchmarks/bench_e2e"
    if args.train and (args.device != "cpu" or args.dtype != "f32"):
        ap.error("--train compares the f32 step on the CPU")

    import torch
    import transformers
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {machine()}")
    print(f"versions: torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}")
    print(f"torch CPU: {torch.backends.cpu.get_cpu_capability()}, MKL {torch.backends.mkl.is_available()}, "
          f"oneDNN {torch.backends.mkldnn.is_available()}")
    print(f"load average before: {loadavg()}", flush=True)
    if args.train:
        return main_train(args)

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
