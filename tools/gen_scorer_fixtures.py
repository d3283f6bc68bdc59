#!/usr/bin/env python3
"""Writes the parity fixtures of the ImageReward and LAION-aesthetic scorers (tests/data/scorers/).

    python3 -m venv /tmp/venv-q && /tmp/venv-q/bin/pip install -r tools/requirements-scorers.txt
    /tmp/venv-q/bin/pip install --no-deps image-reward==1.5
    /tmp/venv-q/bin/python tools/gen_scorer_fixtures.py [--out tests/data/scorers]

The references are the code of the `image-reward` 1.5 package itself, not a re-implementation:
  ImageReward   ImageReward.ImageReward with BLIP's VisionTransformer (models/BLIP/vit.py) and
                BertModel (models/BLIP/med.py) built at a small size, its MLP class (with smaller
                hidden widths in the same nn.Sequential layout), BLIP's init_tokenizer steps on the
                WordPiece vocabulary of tests/data/tokenizer/wordpiece/ (BertTokenizer, [DEC] and
                [ENC] added) and the package's _transform. The float32 rewards come from the package's
                own ImageReward.inference_rank(prompt, [PIL images]) (tokenizer, preprocessing, both
                encoders, head, normalisation); the float64 reference from ImageReward.score_gard on
                the model in float64 with the same ids, attention mask and pixels.
  aesthetic     the predictor's MLP class (models/AestheticScore.py; its module imports OpenAI's
                `clip`, stood in for here since only the MLP class is used), smaller hidden widths in
                the same layout, over an open_clip CLIP with quick GELU (OpenAI's architecture) at a
                small size; float32 scores from AestheticScore.inference_rank(prompt, [paths]), the
                float64 reference from the same modules in float64:
                mlp(F.normalize(clip.encode_image(pixels))).
med.py imports apply_chunking_to_forward, find_pruneable_heads_and_indices and prune_linear_layer
from transformers.modeling_utils, where transformers 4.57 no longer has them; they are taken from
transformers.pytorch_utils (the same functions) before the import.

Small configurations that keep the awkward parts: ImageReward vision 64 px in 16 px patches
(17 tokens), width 40 with 2 heads (head dim 20), MLP 160, 2 blocks, LayerNorm eps 1e-6; text
width 36 with 3 heads (head dim 12), intermediate 52, 2 layers with cross-attention to the 40-wide
image tokens, 40 positions, the WordPiece vocabulary (+ [DEC], [ENC]), eps 1e-12; head
36 -> 24 -> 12 -> 10 -> 6 -> 1. Prompts of 5 to 35 (truncated) ids. Aesthetic: CLIP vision 56 px in
14 px patches (17 tokens), width 64 (one head of 64, OpenAI's head width), 2 layers; text 16 tokens;
embed 24; head 24 -> 20 -> 12 -> 10 -> 6 -> 1. Every weight is random and float16-exact, so the
weight files hold exactly what the float64 reference used. Images come from tests/data/images,
chosen so that torchvision's centre crop rounds differently from transformers' (the C++ test also
checks its torchvision preprocessing against the stored pixels).

Files:
  imagereward/model.safetensors     the ImageReward state dict (ImageReward.pt's names: blip.visual_encoder.*,
                                    blip.text_encoder.* incl. the position_ids buffer, blip.vision_proj/text_proj,
                                    mlp.layers.*), F16 (exact)
  imagereward/med_config.json       the BERT config (as ImageReward ships one)
  imagereward/imagereward_config.json  vision_heads (not 1024/64 here) and the prompt length
  imagereward/io.safetensors        pixels F32 [N,3,64,64] (the package's _transform), input_ids I32 [N,35],
                                    attention_mask I32, image_embeds F64 [N,17,40], text_features F64 [N,36],
                                    raw F64 [N] (head output), rewards F64 [N], rewards_f32 F32 [N] (the
                                    package's f32 inference_rank); metadata: prompts, images, groups
  aesthetic/model.safetensors       open_clip CLIP (OpenAI names: visual.*, token_embedding, ...) + the
                                    predictor head (layers.*), F16 (exact)
  aesthetic/io.safetensors          pixels F32 [N,3,56,56], embeds F64 [N,24] (L2-normalised),
                                    scores F64 [N], scores_f32 F32 [N]; metadata: images
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import types
import warnings

warnings.filterwarnings("ignore")

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "tests", "data", "images")
VOCAB = os.path.join(ROOT, "tests", "data", "tokenizer", "wordpiece", "vocab.txt")
PINNED = {"torch": "2.15.0", "transformers": "4.57.6", "open_clip_torch": "3.3.0", "safetensors": "0.8.0",
          "image-reward": "1.5", "timm": "0.6.13", "fairscale": "0.4.13", "pillow": "11.3.0",
          "torchvision": "0.29.2"}

IR_PROMPTS = [
    ("a photo of a cat", ["png_rgb8_100x67.png", "jpg_progressive_333x517.jpg", "png_rgb8_224x224.png"]),
    ("A Hyperrealistic Concept Art of a medieval castle on a hill, golden hour, volumetric lighting, "
     "trending on artstation, 8k, octane render, masterpiece, by Greg Rutkowski and Alphonse Mucha",
     ["png_rgb8_301x1201.png", "jpg_gray_progressive_257x129.jpg"]),
    ("Café au lait — naïve ÅNGSTRÖM 東京!", ["jpg_baseline_640x480.jpg"]),
]
AE_IMAGES = ["png_rgb8_67x100.png", "jpg_baseline_422_401x299.jpg", "jpg_gray_progressive_257x129.jpg",
             "webp_lossy_333x221.webp"]


def versions():
    import importlib.metadata as md
    got = {}
    for k, v in PINNED.items():
        got[k] = md.version(k)
        if not got[k].startswith(v):
            print(f"warning: {k} {got[k]} is not the pinned {v}; fixtures may differ", file=sys.stderr)
    return got


_IMPORTED = None


def import_image_reward():
    """The package's modules, without its __init__ (which pulls in diffusers, datasets, clip, hub
    downloads): stand-in parent packages, the three moved transformers helpers, a `clip` stand-in."""
    global _IMPORTED
    if _IMPORTED:
        return _IMPORTED
    import transformers.modeling_utils as mu
    import transformers.pytorch_utils as pu
    for n in ("apply_chunking_to_forward", "find_pruneable_heads_and_indices", "prune_linear_layer"):
        if not hasattr(mu, n):
            setattr(mu, n, getattr(pu, n))
    spec = importlib.util.find_spec("ImageReward")
    pkgdir = os.path.dirname(spec.origin)
    for name, sub in (("ImageReward", ""), ("ImageReward.models", "models")):
        m = types.ModuleType(name)
        m.__path__ = [os.path.join(pkgdir, sub) if sub else pkgdir]
        sys.modules[name] = m
    sys.modules.setdefault("clip", types.ModuleType("clip"))
    from ImageReward import ImageReward as IR
    from ImageReward.models import AestheticScore as AS
    from ImageReward.models.BLIP import blip_pretrain, med, vit
    _IMPORTED = (IR, AS, blip_pretrain, med, vit)
    return _IMPORTED


def f16_exact(t):
    r = t.to(torch.float16)
    assert torch.isfinite(r).all()
    return r.to(t.dtype)


def randomize(module, gen):
    with torch.no_grad():
        for name, p in module.named_parameters():
            shape = p.shape
            if ("norm" in name.lower()) and name.endswith(".weight"):
                v = 1.0 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
            elif name.endswith(".bias"):
                v = 0.05 * torch.randn(shape, generator=gen, dtype=torch.float64)
            elif p.dim() >= 2 and "embed" not in name and "positional" not in name and "class_embedding" not in name \
                    and "cls_token" not in name:
                fan_in = p[0].numel()
                v = torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(fan_in)
            else:
                v = 0.5 * torch.randn(shape, generator=gen, dtype=torch.float64)
            p.copy_(f16_exact(v).to(p.dtype))


def small_head(in_width, widths, gen):
    """nn.Sequential in the reference MLPs' layout: Linear, Dropout, Linear, Dropout, Linear, Dropout, Linear, Linear."""
    import torch.nn as nn
    w = [in_width] + widths
    layers = nn.Sequential(nn.Linear(w[0], w[1]), nn.Dropout(0.2), nn.Linear(w[1], w[2]), nn.Dropout(0.2),
                           nn.Linear(w[2], w[3]), nn.Dropout(0.1), nn.Linear(w[3], w[4]), nn.Linear(w[4], w[5]))
    randomize(layers, gen)
    return layers


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def save(path, tensors, meta):
    from safetensors.torch import save_file
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path,
              metadata={"fixture": json.dumps(meta, sort_keys=True)} if meta is not None else {"format": "pt"})


# ---------------------------------------------------------------------------------------------
# ImageReward
# ---------------------------------------------------------------------------------------------

def build_imagereward(out_dir, vers):
    from PIL import Image
    from transformers import BertTokenizer
    IR, _, blip_pretrain, med, vit = import_image_reward()
    gen = torch.Generator().manual_seed(20240917)
    S, P, VW, VH, VL = 64, 16, 40, 2, 2
    TW, TH, TL, TM, POS = 36, 3, 2, 52, 40
    HEAD = [24, 12, 10, 6, 1]

    # BLIP's init_tokenizer on the local vocabulary.
    tok = BertTokenizer(vocab_file=VOCAB, do_lower_case=True)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tok.enc_token_id = tok.additional_special_tokens_ids[0]
    med_config = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
                  "hidden_dropout_prob": 0.1, "hidden_size": TW, "initializer_range": 0.02, "intermediate_size": TM,
                  "layer_norm_eps": 1e-12, "max_position_embeddings": POS, "model_type": "bert",
                  "num_attention_heads": TH, "num_hidden_layers": TL, "pad_token_id": 0, "type_vocab_size": 2,
                  "vocab_size": len(tok), "encoder_width": TW, "add_cross_attention": True}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "med_config.json"), "w") as f:
        json.dump(med_config, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out_dir, "imagereward_config.json"), "w") as f:
        json.dump({"vision_heads": VH, "max_length": 35}, f, indent=2, sort_keys=True)
        f.write("\n")

    # BLIP_Pretrain as ImageReward builds it (create_vit / BertConfig.from_json_file / BertModel), at
    # the small size: its __init__ hard-codes the sizes, so the same attributes are set here.
    blip = blip_pretrain.BLIP_Pretrain.__new__(blip_pretrain.BLIP_Pretrain)
    torch.nn.Module.__init__(blip)
    blip.visual_encoder = vit.VisionTransformer(img_size=S, patch_size=P, embed_dim=VW, depth=VL, num_heads=VH,
                                                use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0)
    blip.tokenizer = tok
    encoder_config = med.BertConfig.from_json_file(os.path.join(out_dir, "med_config.json"))
    encoder_config.encoder_width = VW
    blip.text_encoder = med.BertModel(config=encoder_config, add_pooling_layer=False)
    blip.vision_proj = torch.nn.Linear(VW, 16)
    blip.text_proj = torch.nn.Linear(TW, 16)
    model = IR.ImageReward.__new__(IR.ImageReward)
    torch.nn.Module.__init__(model)
    model.device = "cpu"
    model.blip = blip
    model.preprocess = IR._transform(S)
    model.mlp = IR.MLP(TW)
    model.mlp.layers = small_head(TW, HEAD, gen)
    model.mean = 0.16717362830052426
    model.std = 1.0333394966054072
    randomize(model, gen)
    model.eval()

    prompts, names, groups, rewards_f32 = [], [], [], []
    ids_rows, mask_rows, pixels = [], [], []
    for prompt, files in IR_PROMPTS:
        images = [Image.open(os.path.join(IMAGES, f)) for f in files]
        with torch.no_grad():
            _, r = model.inference_rank(prompt, images)  # the package's f32 path
        r = r if isinstance(r, list) else [r]
        rewards_f32 += r
        text_input = tok(prompt, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
        for f, im in zip(files, images):
            pixels.append(model.preprocess(im))
            ids_rows.append(text_input.input_ids[0])
            mask_rows.append(text_input.attention_mask[0])
            names.append(f)
            groups.append(len(prompts))
        prompts.append(prompt)
    pixels = torch.stack(pixels)
    ids = torch.stack(ids_rows)
    mask = torch.stack(mask_rows)

    # float64 reference through the package's score_gard, plus the intermediate values.
    m64 = model.double()
    with torch.no_grad():
        rewards = m64.score_gard(ids, mask, pixels.double())[:, 0]
        enc = m64.blip.visual_encoder(pixels.double())
        out = m64.blip.text_encoder(ids, attention_mask=mask, encoder_hidden_states=enc,
                                    encoder_attention_mask=torch.ones(enc.shape[:-1], dtype=torch.long), return_dict=True)
        feats = out.last_hidden_state[:, 0, :]
        raw = m64.mlp(feats)[:, 0]
    assert rel_err((raw - model.mean) / model.std, rewards) < 1e-14
    f32 = torch.tensor(rewards_f32, dtype=torch.float32)
    summary = {"torch_f32_rewards_rel_err": rel_err(f32, rewards), "lengths": mask.sum(1).tolist(),
               "rewards": rewards.tolist()}
    assert summary["torch_f32_rewards_rel_err"] < 1e-4, summary

    sd = {k: v for k, v in model.float().state_dict().items()}
    weights = {k: (v.to(torch.float16) if v.is_floating_point() else v) for k, v in sd.items()}
    save(os.path.join(out_dir, "model.safetensors"), weights, None)
    meta = {"generator": "tools/gen_scorer_fixtures.py", "versions": vers, "summary": summary,
            "prompts": prompts, "images": names, "groups": groups,
            "config": {"image": S, "patch": P, "vision_width": VW, "vision_heads": VH, "vision_layers": VL,
                       "text_width": TW, "text_heads": TH, "text_layers": TL, "intermediate": TM, "positions": POS,
                       "head": HEAD}}
    io = {"pixels": pixels.float(), "input_ids": ids.to(torch.int32), "attention_mask": mask.to(torch.int32),
          "image_embeds": enc, "text_features": feats, "raw": raw, "rewards": rewards, "rewards_f32": f32}
    save(os.path.join(out_dir, "io.safetensors"), io, meta)
    return summary


# ---------------------------------------------------------------------------------------------
# Aesthetic predictor
# ---------------------------------------------------------------------------------------------

def build_aesthetic(out_dir, vers):
    import torch.nn.functional as F
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    IR, AS, *_ = import_image_reward()
    gen = torch.Generator().manual_seed(20240918)
    S, P, VW, VL, E = 56, 14, 64, 2, 24
    HEAD = [20, 12, 10, 6, 1]
    vision = CLIPVisionCfg(layers=VL, width=VW, head_width=64, mlp_ratio=4.0, patch_size=P, image_size=S)
    text = CLIPTextCfg(context_length=16, vocab_size=64, width=64, heads=1, layers=1, mlp_ratio=4.0)
    clip = CLIP(embed_dim=E, vision_cfg=vision, text_cfg=text, quick_gelu=True).eval()
    randomize(clip, gen)
    ae = AS.AestheticScore.__new__(AS.AestheticScore)
    torch.nn.Module.__init__(ae)
    ae.device = "cpu"
    ae.clip_model = clip
    ae.preprocess = IR._transform(S)  # OpenAI clip's _transform, as clip.load returns it
    ae.mlp = AS.MLP(E)
    ae.mlp.layers = small_head(E, HEAD, gen)
    ae.eval()

    paths = [os.path.join(IMAGES, f) for f in AE_IMAGES]
    with torch.no_grad():
        _, s32 = ae.inference_rank("unused prompt", paths)  # the package's f32 path
    from PIL import Image
    pixels = torch.stack([ae.preprocess(Image.open(p)) for p in paths])
    with torch.no_grad():
        c64, m64 = clip.double(), ae.mlp.double()
        emb = F.normalize(c64.encode_image(pixels.double()))
        scores = m64(emb)[:, 0]
    f32 = torch.tensor(s32, dtype=torch.float32)
    summary = {"torch_f32_scores_rel_err": rel_err(f32, scores), "scores": scores.tolist()}
    assert summary["torch_f32_scores_rel_err"] < 1e-4, summary

    weights = {k: v.to(torch.float16) for k, v in clip.float().state_dict().items() if v.is_floating_point()}
    weights.update({"layers." + k: v.float().to(torch.float16) for k, v in ae.mlp.layers.state_dict().items()})
    save(os.path.join(out_dir, "model.safetensors"), weights, None)
    meta = {"generator": "tools/gen_scorer_fixtures.py", "versions": vers, "summary": summary, "images": AE_IMAGES,
            "config": {"image": S, "patch": P, "vision_width": VW, "vision_layers": VL, "embed": E, "head": HEAD}}
    io = {"pixels": pixels.float(), "embeds": emb, "scores": scores, "scores_f32": f32}
    save(os.path.join(out_dir, "io.safetensors"), io, meta)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "scorers"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    vers = versions()
    print("imagereward:", json.dumps(build_imagereward(os.path.join(args.out, "imagereward"), vers)))
    print("aesthetic:", json.dumps(build_aesthetic(os.path.join(args.out, "aesthetic"), vers)))
    total = 0
    for root, _, files in os.walk(args.out):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"fixtures: {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
