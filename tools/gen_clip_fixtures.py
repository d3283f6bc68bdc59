#!/usr/bin/env python3
"""Writes the CLIP parity fixtures in tests/data/clip/ from Hugging Face transformers and open_clip.

Random-weight SMALL configurations that keep the awkward dimensions of ViT-H/14:
  vision: 224 px in 14 px patches (256 patches + class token = 257 tokens), width 80 with one head
          (head dim 80), MLP 320, 2 layers;
  text:   77 positions, causal, width 64 with one head (head dim 64), MLP 256, 2 layers, a 512-id
          vocabulary with begin/end of text at the top (510, 511) like CLIP's, so that HF's
          first-end-of-text pooling (eos_token_id = 511) and open_clip's argmax(ids) pooling agree;
  embed dim 32, exact erf GELU (hidden_act "gelu" / open_clip quick_gelu=False).
Plus a smaller quick-GELU (OpenAI-style) configuration.

The reference runs in float64 (transformers CLIPModel, SDPA attention: its eager path rounds the softmax to float32). Every weight and every pixel
is rounded to a float16-representable value first, so the fp32 (HF) and fp16 (open_clip) weight files
and the fp16 pixels hold exactly the numbers the float64 reference used. The same weights are copied
into an open_clip CLIP (fused q/k/v, transposed projections) and its embeddings and gradients are
checked against transformers' here, to 1e-12.

Loss (docs/pickscore-reference.md, written out here, not taken from PickScore's code): per example i
with one prompt and two images, s_ik = exp(logit_scale) * cos(t_i, x_ik), p_i = softmax(s_i0, s_i1),
L = sum_i w_i KL(y_i || p_i), KL(y || p) = sum_k y_k (log y_k - log p_k) with 0 log 0 = 0, and
w_i = (1/n_i) / sum_j (1/n_j) from num_example_per_prompt n_i.

Files (safetensors):
  hf/model.safetensors + hf/config.json         CLIPModel.save_pretrained (F32, HF names)
  open_clip/open_clip_model.safetensors          the same weights, open_clip names, F16
  open_clip/open_clip_config.json                {"model_cfg": ...} as on the hub
  io.safetensors                                 inputs, outputs and every parameter gradient:
      input_ids I32 [N,77], pixel_values F16 [N,2,3,224,224], labels F64 [N,2],
      num_example_per_prompt F64 [N], weights F64 [N], text_embeds_raw F64 [N,E],
      text_embeds F64 [N,E] (L2-normalised), image_embeds_raw / image_embeds F64 [N,2,E],
      cos / scores / probs F64 [N,2], loss F64 [], logit_scale F64 [],
      grad.<HF parameter name> F64 (HF shape) for every parameter;
      __metadata__ {"fixture": JSON of the versions, configuration, seed, and torch's own
      float32-vs-float64 errors}.
  quickgelu/model.safetensors + config.json + io.safetensors   the quick-GELU configuration.

Usage:  python3 tools/gen_clip_fixtures.py [--out tests/data/clip]
Versions: tools/requirements-model.txt (checked below; other versions give a warning).
"""
import argparse
import json
import math
import os
import shutil
import sys

import torch

PINNED = {"torch": "2.15.0", "transformers": "4.57.6", "open_clip_torch": "3.3.0", "safetensors": "0.8.0"}


def versions():
    import importlib.metadata as md
    got = {k: md.version(k) for k in PINNED}
    for k, v in PINNED.items():
        if not got[k].startswith(v):
            print(f"warning: {k} {got[k]} is not the pinned {v}; fixtures may differ", file=sys.stderr)
    return got


def f16_exact(t):
    """The nearest float16-representable value of each element (kept in t's dtype)."""
    r = t.to(torch.float16)
    assert torch.isfinite(r).all(), "value outside the float16 range"
    return r.to(t.dtype)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

def hf_model(c):
    from transformers import CLIPConfig, CLIPModel
    act = c["act"]
    config = CLIPConfig(
        text_config=dict(vocab_size=c["vocab"], hidden_size=c["tw"], intermediate_size=c["tmlp"],
                         num_hidden_layers=c["tl"], num_attention_heads=c["th"],
                         max_position_embeddings=c["ctx"], hidden_act=act, layer_norm_eps=1e-5,
                         bos_token_id=c["vocab"] - 2, eos_token_id=c["vocab"] - 1, pad_token_id=0),
        vision_config=dict(hidden_size=c["vw"], intermediate_size=c["vmlp"], num_hidden_layers=c["vl"],
                           num_attention_heads=c["vh"], image_size=c["image"], patch_size=c["patch"],
                           hidden_act=act, layer_norm_eps=1e-5, num_channels=3),
        projection_dim=c["embed"],
    )
    config._attn_implementation = "sdpa"  # eager does its softmax in float32; SDPA keeps float64
    model = CLIPModel(config).to(torch.float64).eval()
    assert model.text_model.eos_token_id == c["vocab"] - 1
    return model


def randomize(model, gen):
    """Every parameter random (biases and LayerNorms too), then rounded to float16 values."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = p.shape
            if name == "logit_scale":
                # exp(2.25) = 9.5: scores of a few units, so that the softmax is not saturated.
                v = torch.full(shape, 2.25, dtype=torch.float64)
            elif "norm" in name and name.endswith(".weight"):  # every LayerNorm (pre_layrnorm too)
                v = 1.0 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
            elif name.endswith(".bias"):
                v = 0.05 * torch.randn(shape, generator=gen, dtype=torch.float64)
            elif name.endswith("class_embedding"):
                v = torch.randn(shape, generator=gen, dtype=torch.float64)
            elif "position_embedding" in name:
                v = 0.2 * torch.randn(shape, generator=gen, dtype=torch.float64)
            elif "token_embedding" in name:
                v = 0.5 * torch.randn(shape, generator=gen, dtype=torch.float64)
            elif "patch_embedding" in name:
                fan_in = shape[1] * shape[2] * shape[3]
                v = torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(fan_in)
            elif p.dim() == 2:  # Linear [out, in]
                v = torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(shape[1])
            else:
                raise RuntimeError(f"no rule for {name} {tuple(shape)}")
            p.copy_(f16_exact(v))


def open_clip_model(c):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    vision = CLIPVisionCfg(layers=c["vl"], width=c["vw"], head_width=c["vw"] // c["vh"],
                           mlp_ratio=c["vmlp"] / c["vw"], patch_size=c["patch"], image_size=c["image"])
    text = CLIPTextCfg(context_length=c["ctx"], vocab_size=c["vocab"], width=c["tw"], heads=c["th"],
                       layers=c["tl"], mlp_ratio=c["tmlp"] / c["tw"])
    model = CLIP(embed_dim=c["embed"], vision_cfg=vision, text_cfg=text, quick_gelu=c["act"] == "quick_gelu")
    return model.to(torch.float64).eval()


def open_clip_config(c):
    return {"model_cfg": {
        "embed_dim": c["embed"], "quick_gelu": c["act"] == "quick_gelu",
        "vision_cfg": {"image_size": c["image"], "layers": c["vl"], "width": c["vw"],
                       "head_width": c["vw"] // c["vh"], "mlp_ratio": c["vmlp"] / c["vw"],
                       "patch_size": c["patch"]},
        "text_cfg": {"context_length": c["ctx"], "vocab_size": c["vocab"], "width": c["tw"],
                     "heads": c["th"], "layers": c["tl"], "mlp_ratio": c["tmlp"] / c["tw"]}},
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                           "std": [0.26862954, 0.26130258, 0.27577711]}}


def hf_to_open_clip(sd, c):
    """HF CLIPModel state dict -> open_clip CLIP state dict (written here from the two layouts)."""
    out = {}
    out["logit_scale"] = sd["logit_scale"]
    t, v = "text_model.", "vision_model."
    out["token_embedding.weight"] = sd[t + "embeddings.token_embedding.weight"]
    out["positional_embedding"] = sd[t + "embeddings.position_embedding.weight"]
    out["ln_final.weight"] = sd[t + "final_layer_norm.weight"]
    out["ln_final.bias"] = sd[t + "final_layer_norm.bias"]
    out["text_projection"] = sd["text_projection.weight"].t().contiguous()
    out["visual.conv1.weight"] = sd[v + "embeddings.patch_embedding.weight"]
    out["visual.class_embedding"] = sd[v + "embeddings.class_embedding"]
    out["visual.positional_embedding"] = sd[v + "embeddings.position_embedding.weight"]
    out["visual.ln_pre.weight"] = sd[v + "pre_layrnorm.weight"]
    out["visual.ln_pre.bias"] = sd[v + "pre_layrnorm.bias"]
    out["visual.ln_post.weight"] = sd[v + "post_layernorm.weight"]
    out["visual.ln_post.bias"] = sd[v + "post_layernorm.bias"]
    out["visual.proj"] = sd["visual_projection.weight"].t().contiguous()
    for hf_prefix, oc_prefix, layers in ((t, "transformer.", c["tl"]), (v, "visual.transformer.", c["vl"])):
        for i in range(layers):
            a = f"{hf_prefix}encoder.layers.{i}."
            b = f"{oc_prefix}resblocks.{i}."
            out[b + "attn.in_proj_weight"] = torch.cat(
                [sd[a + f"self_attn.{x}_proj.weight"] for x in "qkv"], 0).contiguous()
            out[b + "attn.in_proj_bias"] = torch.cat([sd[a + f"self_attn.{x}_proj.bias"] for x in "qkv"], 0)
            for w in ("weight", "bias"):
                out[b + f"attn.out_proj.{w}"] = sd[a + f"self_attn.out_proj.{w}"]
                out[b + f"ln_1.{w}"] = sd[a + f"layer_norm1.{w}"]
                out[b + f"ln_2.{w}"] = sd[a + f"layer_norm2.{w}"]
                out[b + f"mlp.c_fc.{w}"] = sd[a + f"mlp.fc1.{w}"]
                out[b + f"mlp.c_proj.{w}"] = sd[a + f"mlp.fc2.{w}"]
    return out


# ---------------------------------------------------------------------------------------------
# Inputs and the loss
# ---------------------------------------------------------------------------------------------

def make_inputs(c, gen, lengths, pad_with_eos):
    """Token ids [N, ctx]: bos, random body ids in [1, vocab-3], eos, then padding (0 or eos)."""
    V, L = c["vocab"], c["ctx"]
    bos, eos = V - 2, V - 1
    ids = torch.zeros(len(lengths), L, dtype=torch.int64)
    for i, n in enumerate(lengths):
        assert 2 <= n <= L
        body = torch.randint(1, V - 2, (n - 2,), generator=gen)
        ids[i, 0] = bos
        ids[i, 1:n - 1] = body
        ids[i, n - 1] = eos
        if pad_with_eos[i]:
            ids[i, n:] = eos
    S = c["image"]
    pixels = f16_exact(1.2 * torch.randn(len(lengths), 2, 3, S, S, generator=gen, dtype=torch.float64))
    return ids, pixels


def pickscore_loss(text, images, logit_scale, labels, weights):
    """text [N,E], images [N,2,E] (unnormalised) -> dict of everything the fixture records."""
    tn = text / text.norm(dim=-1, keepdim=True)
    im = images / images.norm(dim=-1, keepdim=True)
    cos = torch.einsum("ne,nke->nk", tn, im)
    scores = logit_scale.exp() * cos
    logp = torch.log_softmax(scores, dim=-1)
    ylogy = torch.where(labels > 0, labels * torch.log(torch.where(labels > 0, labels, torch.ones_like(labels))),
                        torch.zeros_like(labels))
    kl = (ylogy - labels * logp).sum(-1)
    loss = (weights * kl).sum()
    return {"text_embeds": tn, "image_embeds": im, "cos": cos, "scores": scores, "probs": logp.exp(), "loss": loss}


def run_hf(model, ids, pixels, labels, weights):
    # transformers builds its causal mask with torch.full(..., finfo(dtype).min) in the default
    # dtype, which must therefore be the model's (float64's min does not fit in float32).
    old = torch.get_default_dtype()
    torch.set_default_dtype(model.logit_scale.dtype)
    try:
        return _run_hf(model, ids, pixels, labels, weights)
    finally:
        torch.set_default_dtype(old)


def _run_hf(model, ids, pixels, labels, weights):
    N = ids.shape[0]
    S = pixels.shape[-1]
    model.zero_grad(set_to_none=True)
    text = model.get_text_features(input_ids=ids)
    images = model.get_image_features(pixel_values=pixels.reshape(2 * N, 3, S, S)).reshape(N, 2, -1)
    out = pickscore_loss(text, images, model.logit_scale, labels, weights)
    out["loss"].backward()
    out["text_embeds_raw"] = text
    out["image_embeds_raw"] = images
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return {k: v.detach() for k, v in out.items()}, grads


def run_open_clip(model, ids, pixels, labels, weights):
    N = ids.shape[0]
    S = pixels.shape[-1]
    model.zero_grad(set_to_none=True)
    text = model.encode_text(ids)
    images = model.encode_image(pixels.reshape(2 * N, 3, S, S)).reshape(N, 2, -1)
    out = pickscore_loss(text, images, model.logit_scale, labels, weights)
    out["loss"].backward()
    out["text_embeds_raw"] = text
    out["image_embeds_raw"] = images
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return {k: v.detach() for k, v in out.items()}, grads


def rel_err(a, b, floor=0.0):
    """max |a - b| / max(max |b|, floor) over a tensor (the measure the C++ test uses)."""
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    den = max(b.abs().max().item(), floor)
    return (a - b).abs().max().item() / (den if den > 0 else 1.0)


def grads_rel_err(got, ref):
    """The largest rel_err over gradient tensors. The k_proj biases have an identically zero
    gradient (a softmax does not change when the same number is added to every logit of a row), so
    their reference values are rounding noise: their error is scaled by the largest gradient element
    of the whole model instead."""
    scale = max(g.abs().max().item() for g in ref.values())
    return max(rel_err(got[k], ref[k], scale if k.endswith("k_proj.bias") else 0.0) for k in ref)


# ---------------------------------------------------------------------------------------------
# One fixture
# ---------------------------------------------------------------------------------------------

def build(c, out_dir, seed, lengths, pad_with_eos, labels, nepp, with_open_clip, vers):
    from safetensors.torch import save_file
    gen = torch.Generator().manual_seed(seed)
    model = hf_model(c)
    randomize(model, gen)
    ids, pixels = make_inputs(c, gen, lengths, pad_with_eos)
    labels = torch.tensor(labels, dtype=torch.float64)
    n = torch.tensor(nepp, dtype=torch.float64)
    weights = (1.0 / n) / (1.0 / n).sum()

    ref, grads = run_hf(model, ids, pixels, labels, weights)
    summary = {"loss": ref["loss"].item()}

    # torch's own float32 error against its float64 (what an f32 implementation can expect).
    m32 = hf_model(c).to(torch.float32)
    m32.load_state_dict({k: v.to(torch.float32) for k, v in model.state_dict().items()})
    r32, g32 = run_hf(m32, ids, pixels.to(torch.float32), labels.to(torch.float32), weights.to(torch.float32))
    summary["torch_f32_embeds_rel_err"] = max(rel_err(r32[k], ref[k]) for k in ("text_embeds_raw", "image_embeds_raw"))
    summary["torch_f32_grads_rel_err"] = grads_rel_err(g32, grads)
    summary["torch_f32_loss_rel_err"] = abs(r32["loss"].item() - ref["loss"].item()) / abs(ref["loss"].item())

    os.makedirs(out_dir, exist_ok=True)
    hf_dir = os.path.join(out_dir, "hf")
    if os.path.isdir(hf_dir):
        shutil.rmtree(hf_dir)
    m32.save_pretrained(hf_dir, safe_serialization=True)
    for extra in os.listdir(hf_dir):
        if extra not in ("model.safetensors", "config.json"):
            os.remove(os.path.join(hf_dir, extra))

    if with_open_clip:
        oc = open_clip_model(c)
        oc_sd = hf_to_open_clip(model.state_dict(), c)
        missing, unexpected = oc.load_state_dict(oc_sd, strict=True)
        assert not missing and not unexpected
        oref, ograds = run_open_clip(oc, ids, pixels, labels, weights)
        for k in ("text_embeds_raw", "image_embeds_raw", "scores", "probs", "loss"):
            e = rel_err(oref[k], ref[k])
            assert e < 1e-12, f"open_clip and transformers disagree on {k}: {e}"
        mapped = hf_to_open_clip(grads, c)
        e = grads_rel_err(ograds, mapped)
        assert e < 1e-10, f"open_clip and transformers disagree on the gradients: {e}"
        summary["open_clip_vs_hf_grads_rel_err"] = e
        oc_dir = os.path.join(out_dir, "open_clip")
        os.makedirs(oc_dir, exist_ok=True)
        save_file({k: v.to(torch.float16).contiguous() for k, v in oc_sd.items()},
                  os.path.join(oc_dir, "open_clip_model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(oc_dir, "open_clip_config.json"), "w") as f:
            json.dump(open_clip_config(c), f, indent=2)
            f.write("\n")

    io = {
        "input_ids": ids.to(torch.int32),
        "pixel_values": pixels.to(torch.float16),
        "labels": labels,
        "num_example_per_prompt": n,
        "weights": weights,
        "logit_scale": model.logit_scale.detach().clone(),
    }
    for k in ("text_embeds_raw", "text_embeds", "image_embeds_raw", "image_embeds", "cos", "scores", "probs", "loss"):
        io[k] = ref[k].contiguous()
    for k, g in grads.items():
        io["grad." + k] = g.contiguous()
    meta = {"generator": "tools/gen_clip_fixtures.py", "config": c, "seed": seed, "summary": summary,
            "versions": vers}
    # One metadata key: safetensors writes its metadata map in no fixed order, and a single entry
    # keeps the file's bytes reproducible.
    save_file(io, os.path.join(out_dir, "io.safetensors"), metadata={"fixture": json.dumps(meta, sort_keys=True)})
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "clip"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    vers = versions()

    main_cfg = dict(image=224, patch=14, vw=80, vl=2, vh=1, vmlp=320,
                    vocab=512, ctx=77, tw=64, tl=2, th=1, tmlp=256, embed=32, act="gelu")
    # Three prompts of 5, 12 and 77 tokens (the last fills the context: end-of-text at position 76),
    # padded with 0 (open_clip's padding) and with end-of-text (HF's): both pool at the first one.
    s = build(main_cfg, args.out, seed=20240611, lengths=[5, 12, 77], pad_with_eos=[False, True, False],
              labels=[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], nepp=[1, 3, 2], with_open_clip=True, vers=vers)
    print("main:", json.dumps(s))

    quick_cfg = dict(image=56, patch=14, vw=24, vl=2, vh=2, vmlp=96,
                     vocab=64, ctx=16, tw=16, tl=2, th=2, tmlp=64, embed=8, act="quick_gelu")
    s = build(quick_cfg, os.path.join(args.out, "quickgelu"), seed=7, lengths=[4, 16], pad_with_eos=[False, False],
              labels=[[1.0, 0.0], [0.5, 0.5]], nepp=[2, 1], with_open_clip=True, vers=vers)
    print("quickgelu:", json.dumps(s))

    total = 0
    for root, _, files in os.walk(args.out):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"fixtures: {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
