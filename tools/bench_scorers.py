#!/usr/bin/env python3
"""Times the aesthetic predictor and ImageReward in pickscore (benchmarks/bench_scorers) and in their
Python references in the same run, on the CPU, at real size with random weights, and prints a table.

    python3 tools/bench_scorers.py --bench build/benchmarks/bench_scorers [--threads 2] [--batches 1,4]

References (what the packages run, on the same preprocessed-tensor inputs):
  aesthetic    transformers CLIPVisionModelWithProjection (openai/clip-vit-large-patch14's
               configuration: quick GELU, 24 layers, width 1024, patch 14, projection 768), L2
               normalisation, the predictor's MLP (nn.Sequential 768-1024-128-64-16-1 with dropouts).
  imagereward  the image-reward package's BLIP VisionTransformer (ViT-L/16, 224 px) and med.py BertModel
               (bert-base with cross-attention, encoder width 1024), last_hidden_state[:, 0], its MLP,
               the normalisation: ImageReward.score's computation; prompts of --tokens ids padded to 35
               with the attention mask.
Needs torch, transformers, and for ImageReward image-reward 1.5 with timm 0.6.13 and fairscale
(tools/gen_scorer_fixtures.py lists the pins); without the package only the aesthetic row is timed.
Timing: the median of --repeats calls after one warm-up call, torch.set_num_threads(--threads), no grad.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch


def time_calls(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def aesthetic_ref(batch):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    cfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
    vision = CLIPVisionModelWithProjection(cfg).eval()
    mlp = torch.nn.Sequential(torch.nn.Linear(768, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128),
                              torch.nn.Dropout(0.2), torch.nn.Linear(128, 64), torch.nn.Dropout(0.1),
                              torch.nn.Linear(64, 16), torch.nn.Linear(16, 1)).eval()
    px = torch.randn(batch, 3, 224, 224)

    def run():
        with torch.no_grad():
            e = vision(pixel_values=px).image_embeds
            return mlp(torch.nn.functional.normalize(e, dim=-1))
    return run


def imagereward_ref(batch, tokens):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gen_scorer_fixtures import import_image_reward
    IR, _, _, med, vit = import_image_reward()
    visual = vit.VisionTransformer(img_size=224, patch_size=16, embed_dim=1024, depth=24, num_heads=16,
                                   use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0).eval()
    cfg = med.BertConfig(vocab_size=30524, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512,
                         layer_norm_eps=1e-12, add_cross_attention=True)
    cfg.encoder_width = 1024
    text = med.BertModel(config=cfg, add_pooling_layer=False).eval()
    mlp = IR.MLP(768).eval()
    px = torch.randn(batch, 3, 224, 224)
    ids = torch.zeros(batch, 35, dtype=torch.long)
    ids[:, 0] = 101
    ids[:, 1:tokens - 1] = torch.randint(1000, 29000, (batch, tokens - 2))
    ids[:, tokens - 1] = 102
    mask = torch.zeros(batch, 35, dtype=torch.long)
    mask[:, :tokens] = 1

    def run():
        with torch.no_grad():
            emb = visual(px)
            atts = torch.ones(emb.size()[:-1], dtype=torch.long)
            out = text(ids, attention_mask=mask, encoder_hidden_states=emb, encoder_attention_mask=atts,
                       return_dict=True)
            r = mlp(out.last_hidden_state[:, 0, :].float())
            return (r - 0.16717362830052426) / 1.0333394966054072
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True, help="the bench_scorers program")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-imagereward", action="store_true")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(args.threads)

    out = subprocess.run([args.bench, "--threads", str(args.threads), "--batches", args.batches, "--tokens",
                          str(args.tokens), "--benchmark_format=json", f"--benchmark_repetitions={args.repeats}",
                          "--benchmark_report_aggregates_only=true"], check=True, capture_output=True, text=True).stdout
    ours = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            parts = b["run_name"].split("/")  # BM_aesthetic/f32/4/real_time
            ours[(parts[0][3:], int(parts[2]))] = b["real_time"] / 1e3  # ms -> s
    rows = []
    for kind in ("aesthetic", "imagereward"):
        for B in batches:
            ref = None
            try:
                if kind == "aesthetic":
                    ref = time_calls(aesthetic_ref(B), args.repeats)
                elif not args.skip_imagereward:
                    ref = time_calls(imagereward_ref(B, args.tokens), args.repeats)
            except ImportError as e:
                print(f"note: {kind} reference not run: {e}", file=sys.stderr)
            rows.append((kind, B, ours.get((kind, B)), ref))
    print(f"CPU, {args.threads} threads, f32, torch {torch.__version__}; seconds per call (median of {args.repeats})")
    print(f"{'scorer':<12} {'batch':>5} {'pickscore':>10} {'python':>10} {'speedup':>8}")
    for kind, B, a, r in rows:
        sp = f"{r / a:.2f}x" if a and r else "-"
        print(f"{kind:<12} {B:>5} {a if a else float('nan'):>10.3f} {r if r else float('nan'):>10.3f} {sp:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
