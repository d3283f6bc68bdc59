#!/usr/bin/env python3
"""Converts a PyTorch checkpoint (.bin / .pt / .pth / .ckpt) to safetensors, keeping the names.

    python3 tools/convert_checkpoint.py INPUT OUTPUT.safetensors [--key state_dict] [--dtype keep|f32|f16|bf16]
    python3 tools/convert_checkpoint.py --mode aesthetic sac+logos+ava1-l14-linearMSE.pth OUT.safetensors [--clip CLIP]
    python3 tools/convert_checkpoint.py --mode imagereward ImageReward.pt OUT_DIR [--med-config med_config.json] [--vocab vocab.txt]

Modes (--mode):
  plain        (default) any state dict, names kept (below).
  aesthetic    the LAION aesthetic predictor's .pth (an nn.Sequential state dict: layers.{0,2,4,6,7}.weight/bias,
               768 -> 1024 -> 128 -> 64 -> 16 -> 1). The head's shapes are checked. Without --clip the output is
               the head alone: name it aesthetic_head.safetensors and put it in the folder of a CLIP ViT-L/14
               model (openai/clip-vit-large-patch14 in Hugging Face names, or OpenAI/open_clip names), which
               `--scorer aesthetic --model FOLDER` then loads. With --clip CLIP (.safetensors, .bin, .pt of such a
               model) the CLIP tensors and the head are written into one file.
  imagereward  ImageReward.pt (the state dict of ImageReward.ImageReward: blip.visual_encoder.*,
               blip.text_encoder.*, mlp.layers.*). OUT is a folder (created): model.safetensors, plus
               med_config.json (--med-config, ImageReward ships it as med_config.json) and vocab.txt (--vocab,
               bert-base-uncased's) copied beside it when given: `--scorer imagereward --model OUT` loads it.

- The state dict is found automatically: the file itself when it maps names to tensors, else the
  first of the keys state_dict, model, model_state_dict, module, ema, state_dict_ema whose value does
  (HPSv2's HPS_v2_compressed.pt keeps it under "state_dict"); --key names it explicitly.
- Names are kept: open_clip names stay open_clip names (pickscore's loader maps them), Hugging Face
  names stay HF names. A "module." prefix that every name carries (DistributedDataParallel) is
  removed unless --keep-prefix; pickscore's loader accepts either.
- Non-tensor entries are skipped (listed on stderr). Tensors that share storage are copied apart
  (safetensors refuses aliases), everything is made contiguous.
- --dtype converts floating-point tensors (integer buffers such as position_ids keep their type).
- The file is loaded with torch.load(weights_only=True), which refuses arbitrary pickled code; a
  checkpoint that needs more (pickled classes) fails with torch's message, and --unsafe-pickle
  loads it with weights_only=False: ONLY for files from a source you trust.
- The output is written to a temporary file in the same folder and renamed into place, with
  __metadata__ {"format": "pt", "source": <input file name>}.
"""
import argparse
import os
import shutil
import sys
import tempfile

import torch

CANDIDATE_KEYS = ("state_dict", "model", "model_state_dict", "module", "ema", "state_dict_ema")
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def is_state_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and any(torch.is_tensor(v) for v in obj.values()) and \
        all(isinstance(k, str) for k in obj.keys())


def find_state_dict(obj, key):
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise SystemExit(f"error: no key {key!r} in the checkpoint (top-level keys: {list_keys(obj)})")
        if not is_state_dict(obj[key]):
            raise SystemExit(f"error: {key!r} does not map names to tensors")
        return obj[key], key
    if is_state_dict(obj) and not any(k in obj and isinstance(obj[k], dict) for k in CANDIDATE_KEYS):
        return obj, None
    for k in CANDIDATE_KEYS:
        if isinstance(obj, dict) and k in obj and is_state_dict(obj[k]):
            return obj[k], k
    if is_state_dict(obj):
        return obj, None
    raise SystemExit(f"error: no state dict found (top-level keys: {list_keys(obj)}); name it with --key")


def list_keys(obj):
    return sorted(map(str, obj.keys()))[:20] if isinstance(obj, dict) else type(obj).__name__


def strip_prefix(sd, prefix="module."):
    while sd and all(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def check_head(sd, prefix, what):
    """The reward/aesthetic MLP: Linears at nn.Sequential indices, widths chained, ending in 1."""
    idx = sorted(int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix) and k.endswith(".weight"))
    if not idx:
        raise SystemExit(f"error: {what}: no {prefix}K.weight tensors (is this the right file?)")
    widths = []
    for i in idx:
        w, b = sd.get(f"{prefix}{i}.weight"), sd.get(f"{prefix}{i}.bias")
        if w is None or b is None or w.dim() != 2 or b.shape != (w.shape[0],):
            raise SystemExit(f"error: {what}: {prefix}{i} is not a Linear (weight [out, in] and bias [out])")
        if widths and widths[-1] != w.shape[1]:
            raise SystemExit(f"error: {what}: {prefix}{i}.weight takes {w.shape[1]} inputs, the layer before gives {widths[-1]}")
        widths += [w.shape[1]] if not widths else []
        widths.append(w.shape[0])
    if widths[-1] != 1:
        raise SystemExit(f"error: {what}: the last Linear has {widths[-1]} outputs, expected 1")
    return widths


def load_any(path, key, unsafe):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path), None
    obj = torch.load(path, map_location="cpu", weights_only=not unsafe)
    return find_state_dict(obj, key)


def prepare(args, sd):
    """Mode-specific checks and merges; returns (state dict, output file, files to copy beside it)."""
    if args.mode == "aesthetic":
        widths = check_head(sd, "layers.", "aesthetic predictor")
        extra = [k for k in sd if not k.startswith("layers.")]
        if extra:
            raise SystemExit(f"error: aesthetic predictor: unexpected tensors {extra[:5]} (expected layers.* only)")
        print(f"aesthetic head: {' -> '.join(map(str, widths))}", file=sys.stderr)
        if widths[0] != 768:
            print(f"note: the head takes {widths[0]} inputs; the published predictor takes 768 (CLIP ViT-L/14)",
                  file=sys.stderr)
        if args.clip:
            clip, _ = load_any(args.clip, None, args.unsafe_pickle)
            clip = strip_prefix(clip)
            clash = [k for k in clip if k.startswith("layers.")]
            if clash:
                raise SystemExit(f"error: --clip {args.clip} already holds layers.* tensors ({clash[0]})")
            sd = {**clip, **sd}
        return sd, args.output, []
    if args.mode == "imagereward":
        for need in ("blip.visual_encoder.cls_token", "blip.visual_encoder.pos_embed",
                     "blip.text_encoder.embeddings.word_embeddings.weight"):
            if need not in sd:
                raise SystemExit(f"error: ImageReward: no tensor {need!r} (is this ImageReward.pt?)")
        widths = check_head(sd, "mlp.layers.", "ImageReward head")
        print(f"ImageReward head: {' -> '.join(map(str, widths))}", file=sys.stderr)
        out_dir = args.output
        if out_dir.endswith(".safetensors"):
            raise SystemExit("error: --mode imagereward writes a folder (model.safetensors + med_config.json + vocab.txt)")
        os.makedirs(out_dir, exist_ok=True)
        beside = []
        if args.med_config:
            beside.append((args.med_config, os.path.join(out_dir, "med_config.json")))
        if args.vocab:
            beside.append((args.vocab, os.path.join(out_dir, "vocab.txt")))
        return sd, os.path.join(out_dir, "model.safetensors"), beside
    return sd, args.output, []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--mode", choices=["plain", "aesthetic", "imagereward"], default="plain")
    ap.add_argument("--clip", default=None, help="aesthetic: a CLIP ViT-L/14 checkpoint to merge with the head")
    ap.add_argument("--med-config", default=None, help="imagereward: BLIP's med_config.json, copied beside")
    ap.add_argument("--vocab", default=None, help="imagereward: bert-base-uncased's vocab.txt, copied beside")
    ap.add_argument("--key", default=None, help="the state dict's key in the checkpoint (default: found automatically)")
    ap.add_argument("--dtype", choices=["keep", *DTYPES], default="keep")
    ap.add_argument("--keep-prefix", action="store_true", help="keep a 'module.' prefix that every name carries")
    ap.add_argument("--unsafe-pickle", action="store_true",
                    help="torch.load(weights_only=False): runs pickled code; only for trusted files")
    args = ap.parse_args()

    from safetensors.torch import save_file

    obj = torch.load(args.input, map_location="cpu", weights_only=not args.unsafe_pickle)
    sd, key = find_state_dict(obj, args.key)
    if not args.keep_prefix:
        sd = strip_prefix(sd)
    sd, output, beside = prepare(args, sd)
    tensors, skipped, seen = {}, [], {}
    for name, v in sd.items():
        if not torch.is_tensor(v):
            skipped.append(name)
            continue
        v = v.detach()
        if args.dtype != "keep" and v.is_floating_point():
            v = v.to(DTYPES[args.dtype])
        # Copy tensors apart when they share storage with one already taken (or are views).
        ptr = v.untyped_storage().data_ptr() if v.numel() else None
        if ptr is not None and (ptr in seen or v.untyped_storage().nbytes() != v.numel() * v.element_size()):
            v = v.clone()
        if ptr is not None:
            seen[ptr] = name
        tensors[name] = v.contiguous()
    if skipped:
        print(f"skipped {len(skipped)} non-tensor entries: {', '.join(skipped[:10])}", file=sys.stderr)
    if not tensors:
        raise SystemExit("error: the state dict holds no tensors")

    out_dir = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(output) + ".", dir=out_dir)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", "source": os.path.basename(args.input)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    total = sum(t.numel() for t in tensors.values())
    where = f" (from key {key!r})" if key else ""
    print(f"wrote {len(tensors)} tensors, {total / 1e6:.2f} M elements{where} to {output}")
    for src, dst in beside:
        shutil.copyfile(src, dst)
        print(f"copied {src} to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
