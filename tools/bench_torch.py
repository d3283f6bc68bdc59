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

--train --device cuda times PickScore's optimizer step on the GPU, the torch twin of
benchmarks/cuda/bench_train_cuda (see its header): ViT-H/14 at real size (--config h14; random
init on the device, no download), --batch prompts (default 128) with 2 images each, for each
--variants entry MICRO:TOKENS (default 32:77,64:77,128:77,64:32: micro-batches of MICRO prompts,
TOKENS ids per prompt, end-of-text last) — gradient accumulation over the micro-batches, the loss
weighted 1/batch per prompt so the summed gradient is the full batch's, then clipping at norm 1.0
and AdamW (lr 3e-6, betas 0.9/0.999, eps 1e-8, weight decay 0.3; fused where available, else
foreach). transformers' CLIPModel in train mode, SDPA attention, gradient checkpointing on (per
encoder layer, non-reentrant: the same recomputation as pickscore's recompute = true). Precision
(--precision): "autocast" (default; PickScore's own setup: f32 weights, gradients and AdamW state,
forward and backward under torch.autocast bf16) or "bf16" (pickscore's setup: bf16 weights and
gradients, bf16 gradients summed into f32 buffers per micro-batch, f32 master weights and AdamW
state, bf16 copy of the master after each update). Per variant: one warm-up step, then --reps
timed steps (torch.cuda.synchronize around each); prints seconds per step (mean and median), model
FLOP/s (3 x forward FLOPs, the count of ClipConfig::vision_flops/text_flops; recomputation not
counted) and peak memory (torch.cuda.max_memory_allocated, the analogue of pickscore's allocator
peak, and max_memory_reserved). With --cuda-json <bench_train_cuda's --benchmark_out JSON> the
table gets pickscore's seconds per step, peak memory and the ratio. Without torch/transformers, or
without a GPU, it prints why and exits with 77 (skipped); --allow-cpu runs the same code on the CPU
instead (a check of the code path, e.g. with --config small; the times mean nothing).

    python3 tools/bench_torch.py --train --device cuda --cuda-json bench_train_cuda.json
    /tmp/venv-bench/bin/python tools/bench_torch.py --train --device cuda --allow-cpu --config small \
        --batch 4 --variants 2:77,4:16 --reps 1       # the code path on a CPU
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
# ViT-H/14 (PickScore's model: LAION's CLIP-ViT-H-14), the sizes of model::ClipConfig::vit_h14().
H14 = dict(image_size=224, patch_size=14, vision_width=1280, vision_layers=32, vision_heads=16, vision_mlp=5120,
           vocab=49408, context=77, text_width=1024, text_layers=24, text_heads=16, text_mlp=4096, embed=1024)
CONFIGS = {"h14": H14, "small": SMALL}


def clip_config(c):
    """transformers' CLIPConfig of one of the dicts above (exact GELU, SDPA attention)."""
    from transformers import CLIPConfig
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
    return cfg


def forward_flops(c, images, prompts, tokens):
    """Forward FLOPs as model::ClipConfig counts them (2 per multiply-add of the matrix products and
    of attention over the full square; LayerNorm, softmax, GELU not counted)."""
    def blocks(t, layers, w, m):
        return 2.0 * layers * (t * (4 * w * w + 2 * w * m) + 2 * t * t * w)
    grid = c["image_size"] // c["patch_size"]
    patches = grid * grid
    vw = c["vision_width"]
    vision = (blocks(patches + 1, c["vision_layers"], vw, c["vision_mlp"]) + 2.0 * patches * 3 * c["patch_size"] ** 2 * vw
              + 2.0 * vw * c["embed"])
    text = blocks(tokens, c["text_layers"], c["text_width"], c["text_mlp"]) + 2.0 * c["text_width"] * c["embed"]
    return images * vision + prompts * text


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
    from transformers import CLIPModel

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    c = SMALL
    cfg = clip_config(c)
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


def parse_variants(text):
    out = []
    for item in text.split(","):
        micro, _, tokens = item.strip().partition(":")
        out.append((int(micro), int(tokens or 77)))
    return out


def pickscore_train_cuda(path):
    """{(micro, tokens): (seconds per step, peak GiB)} from bench_train_cuda's JSON (errors skipped)."""
    unit = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}
    res = {}
    with open(path) as f:
        data = json.load(f)
    for b in data.get("benchmarks", []):
        name = b.get("run_name") or b.get("name", "")
        m = re.match(r"^BM_train_step/bf16/micro:(\d+)/tokens:(\d+)", name)
        if not m or b.get("error_occurred"):
            continue
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        key = (int(m.group(1)), int(m.group(2)))
        if b.get("run_type") == "iteration" and key in res:
            continue
        res[key] = (b["real_time"] * unit[b["time_unit"]], b.get("peak_GiB"))
    return res


def run_torch_train_device(args, device):
    """PickScore's optimizer step in PyTorch on `device` (see --train --device cuda above)."""
    import torch
    from transformers import CLIPModel

    c = CONFIGS[args.config]
    cfg = clip_config(c)
    on_gpu = device == "cuda"
    if not on_gpu:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    torch.manual_seed(0)
    with torch.device(device):
        model = CLIPModel(cfg)
    if args.precision == "bf16":
        model.to(torch.bfloat16)
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    if args.precision == "bf16":
        # f32 master weights with f32 gradient buffers (the bf16 gradients are summed into them)
        master = [torch.nn.Parameter(p.detach().float()) for p in params]
        for m in master:
            m.grad = torch.zeros_like(m)
        opt_params = master
    else:
        master = None
        opt_params = params
    opt, kind = None, "foreach"
    if on_gpu:
        try:
            opt = torch.optim.AdamW(opt_params, lr=3e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.3, fused=True)
            kind = "fused"
        except (TypeError, RuntimeError, ValueError):
            opt = None
    if opt is None:
        opt = torch.optim.AdamW(opt_params, lr=3e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.3, foreach=True)
    n_params = sum(p.numel() for p in params)
    name = torch.cuda.get_device_name() if on_gpu else machine()
    print(f"torch: {args.config} ({n_params / 1e6:.1f} M parameters) built on {device} in {time.time() - t0:.1f} s; "
          f"precision {args.precision}, attention {model.config._attn_implementation}, gradient checkpointing on, "
          f"AdamW {kind}; device {name}", flush=True)

    B, S = args.batch, c["image_size"]
    g = torch.Generator().manual_seed(7)
    in_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    pixels = (torch.rand(B, 2, 3, S, S, generator=g) * 4 - 2).to(dtype=in_dtype, device=device)
    y0 = torch.tensor([[1.0, 0.0, 0.5][i % 3] for i in range(B)])
    labels = torch.stack([y0, 1 - y0], dim=1).to(device)
    weights = torch.full((B,), 1.0 / B, device=device)

    def sync():
        if on_gpu:
            torch.cuda.synchronize()

    def step(ids, micro):
        if master is None:
            opt.zero_grad(set_to_none=True)
        else:
            torch._foreach_zero_([m.grad for m in master])
        total = torch.zeros((), device=device)
        for a in range(0, B, micro):
            e = min(B, a + micro)
            n = e - a
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=args.precision == "autocast"):
                txt = model.get_text_features(input_ids=ids[a:e])
                img = model.get_image_features(pixel_values=pixels[a:e].reshape(2 * n, 3, S, S))
            txt = txt.float()
            img = img.float()
            txt = txt / txt.norm(dim=-1, keepdim=True)
            img = (img / img.norm(dim=-1, keepdim=True)).view(n, 2, -1)
            logits = model.logit_scale.float().exp() * torch.einsum("be,bke->bk", txt, img)
            logp = torch.log_softmax(logits, dim=-1)
            y = labels[a:e]
            loss = (weights[a:e] * (torch.xlogy(y, y) - y * logp).sum(dim=-1)).sum()  # KL(y || p), global weights
            loss.backward()
            total += loss.detach()
            if master is not None:
                torch._foreach_add_([m.grad for m in master], [p.grad.float() for p in params])
                for p in params:
                    p.grad = None
        norm = torch.nn.utils.clip_grad_norm_(opt_params, 1.0, foreach=True)
        opt.step()
        if master is not None:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in params], [m.data for m in master])
        return total.item(), float(norm)

    res = {}
    for micro, tokens in parse_variants(args.variants):
        if tokens < 2 or tokens > c["context"] or micro < 1:
            print(f"torch: variant {micro}:{tokens} skipped (tokens 2..{c['context']}, micro >= 1)")
            continue
        ids = torch.randint(1, 49405, (B, tokens), generator=g)
        ids[:, 0] = 49406
        ids[:, -1] = 49407
        ids = ids.to(device)
        if on_gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            step(ids, micro)  # warm-up (the first one also creates AdamW's state)
            times = []
            for _ in range(args.reps):
                sync()
                t = time.perf_counter()
                loss, norm = step(ids, micro)
                sync()
                times.append(time.perf_counter() - t)
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
            print(f"torch: micro {micro}, {tokens} tokens: FAILED: {str(e).splitlines()[0][:200]}", flush=True)
            if on_gpu:
                torch.cuda.empty_cache()
            continue
        peak = torch.cuda.max_memory_allocated() / 2 ** 30 if on_gpu else None
        reserved = torch.cuda.max_memory_reserved() / 2 ** 30 if on_gpu else None
        mean = statistics.mean(times)
        flops = 3 * forward_flops(c, 2 * B, B, tokens)
        res[(micro, tokens)] = (mean, peak, reserved, flops / mean)
        mem = f", peak {peak:.1f} GiB allocated / {reserved:.1f} GiB reserved" if on_gpu else ""
        print(f"torch: micro {micro}, {tokens} tokens: mean {mean:.3f} s/step, median {statistics.median(times):.3f} "
              f"of {len(times)} ({', '.join(f'{t:.3f}' for t in times)}), {flops / mean / 1e12:.1f} model TFLOP/s"
              f"{mem}; loss {loss:.4f}, grad norm {norm:.3g}", flush=True)
    del model, opt
    return res


def main_train_device(args):
    import torch
    device = "cuda"
    if not torch.cuda.is_available():
        if not args.allow_cpu:
            print("bench_torch: --device cuda but torch sees no CUDA device: skipped")
            return 77
        device = "cpu"
        print("bench_torch: no CUDA device; --allow-cpu: running the GPU step's code on the CPU (times mean nothing)")
    ours = {}
    if args.cuda_json:
        try:
            ours = pickscore_train_cuda(args.cuda_json)
        except (OSError, ValueError) as e:
            print(f"bench_torch: cannot read {args.cuda_json}: {e}")
    theirs = run_torch_train_device(args, device)
    print()
    print(f"| step (batch {args.batch} prompts, {2 * args.batch} images), {args.config} | pickscore s/step (peak GiB) "
          f"| PyTorch {torch.__version__.split('+')[0]} {args.precision} s/step (peak GiB) "
          f"| ratio (PyTorch time / pickscore time) | PyTorch model TFLOP/s |")
    print("|---|---|---|---|---|")
    for key in sorted(set(ours) | set(theirs)):
        micro, tokens = key
        a, t = ours.get(key), theirs.get(key)
        fa = (f"{a[0]:.3f}" + (f" ({a[1]:.1f})" if a[1] is not None else "")) if a else "-"
        ft = (f"{t[0]:.3f}" + (f" ({t[1]:.1f})" if t[1] is not None else "")) if t else "-"
        ratio = f"{t[0] / a[0]:.2f}x" if a and t else "-"
        tf = f"{t[3] / 1e12:.1f}" if t else "-"
        print(f"| micro {micro}, {tokens} tokens | {fa} | {ft} | {ratio} | {tf} |")
    return 0 if theirs else 1


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
    ap.add_argument("--batch", type=int, default=None,
                    help="--train: prompts per step (2 images each; default 8 on the CPU, 128 with --device cuda)")
    ap.add_argument("--variants", default="32:77,64:77,128:77,64:32",
                    help="--train --device cuda: MICRO:TOKENS entries (micro-batch prompts : ids per prompt)")
    ap.add_argument("--config", choices=sorted(CONFIGS), default="h14",
                    help="--train --device cuda: the model (small: the CPU benchmark's, for a code-path check)")
    ap.add_argument("--precision", choices=["autocast", "bf16"], default="autocast",
                    help="--train --device cuda: autocast = f32 weights + bf16 autocast (PickScore's); "
                         "bf16 = bf16 weights + f32 master and gradient sums (pickscore's)")
    ap.add_argument("--allow-cpu", action="store_true",
                    help="--train --device cuda without a GPU: run the same code on the CPU instead of exiting 77")
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
    ap.add_argument("--cuda-json", help="JSON output of benchmarks/cuda/bench_e2e_cuda, or with --train of "
                                        "bench_train_cuda (GPU ratios)")
    args = ap.parse_args()
    if args.batch is None:
        args.batch = 128 if args.train and args.device == "cuda" else 8
    if args.dtype is None:
        args.dtype = "bf16" if args.device == "cuda" else "f32"
    if args.binary is None:
        args.binary = "build/benchmarks/bench_train" if args.train else "build/benchmarks/bench_e2e"
    if args.train and args.device == "cpu" and args.dtype != "f32":
        ap.error("--train on the CPU compares the f32 step (the GPU step: --device cuda)")
    if args.batch < 1 or args.reps < 1:
        ap.error("--batch and --reps must be at least 1")

    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"bench_torch: PyTorch and transformers are needed ({e}): skipped")
        return 77
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {machine()}")
    print(f"versions: torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}")
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        capability = "?"
    print(f"torch CPU: {capability}, MKL {torch.backends.mkl.is_available()}, "
          f"oneDNN {torch.backends.mkldnn.is_available()}")
    if torch.cuda.is_available():
        print(f"torch CUDA: {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
              f"device {torch.cuda.get_device_name()}")
    print(f"load average before: {loadavg()}", flush=True)
    if args.train and args.device == "cuda":
        return main_train_device(args)
    if args.train:
        return main_train(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_torch: --device cuda but torch sees no CUDA device: skipped")
        return 77

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
