#!/usr/bin/env python3
"""Converts a PyTorch checkpoint (.bin / .pt / .pth / .ckpt) to safetensors, keeping the names.

    python3 tools/convert_checkpoint.py INPUT OUTPUT.safetensors [--key state_dict] [--dtype keep|f32|f16|bf16]

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
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

    out_dir = os.path.dirname(os.path.abspath(args.output))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(args.output) + ".", dir=out_dir)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", "source": os.path.basename(args.input)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.output)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    total = sum(t.numel() for t in tensors.values())
    where = f" (from key {key!r})" if key else ""
    print(f"wrote {len(tensors)} tensors, {total / 1e6:.2f} M elements{where} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
