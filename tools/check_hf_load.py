#!/usr/bin/env python3
"""Checks that a folder written by pickscore (io::save_clip_checkpoint) loads in transformers.

Loads DIR with CLIPModel.from_pretrained (which must find every parameter: no missing, unexpected
or mis-shaped keys), runs the inputs of a parity fixture (tests/data/clip/io.safetensors by default)
in float64, and compares the embeddings, scores and loss with the fixture's:
    max |got - want| / max |want|  <  --tol  (default 1e-6 for a float32 file, 1e-2 for bf16/f16)

    python3 tools/check_hf_load.py DIR [--fixture tests/data/clip/io.safetensors] [--tol 1e-6]

A typical round trip: the C++ parity test writes the fixture's model through save_clip_checkpoint
when PICKSCORE_SAVE_CHECKPOINT_TO=DIR is set in its environment:
    PICKSCORE_SAVE_CHECKPOINT_TO=/tmp/saved build/tests/test_clip_parity
    python3 tools/check_hf_load.py /tmp/saved
Exit status 0 when everything matches, 1 otherwise. Versions: tools/requirements-model.txt.
"""
import argparse
import json
import os
import sys

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="folder with config.json and model.safetensors (or a sharded index)")
    ap.add_argument("--fixture", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "clip",
                                                      "io.safetensors"))
    ap.add_argument("--tol", type=float, default=None)
    args = ap.parse_args()

    from safetensors.torch import load_file
    from transformers import CLIPModel

    # transformers builds its causal mask in the default dtype (see gen_clip_fixtures.py).
    torch.set_default_dtype(torch.float64)
    model, info = CLIPModel.from_pretrained(args.dir, output_loading_info=True, attn_implementation="sdpa")
    problems = {k: v for k, v in info.items() if v}
    if problems:
        print(f"FAIL: from_pretrained reported {json.dumps(problems, default=str)}")
        return 1
    with open(os.path.join(args.dir, "config.json")) as f:
        dtype = json.load(f).get("torch_dtype", "float32")
    tol = args.tol if args.tol is not None else (1e-6 if dtype == "float32" else 1e-2)
    model = model.to(torch.float64).eval()

    fx = load_file(args.fixture)
    ids = fx["input_ids"].long()
    pixels = fx["pixel_values"].to(torch.float64)
    N, S = ids.shape[0], pixels.shape[-1]
    with torch.no_grad():
        text = model.get_text_features(input_ids=ids)
        images = model.get_image_features(pixel_values=pixels.reshape(2 * N, 3, S, S)).reshape(N, 2, -1)
        tn = text / text.norm(dim=-1, keepdim=True)
        im = images / images.norm(dim=-1, keepdim=True)
        scores = model.logit_scale.exp() * torch.einsum("ne,nke->nk", tn, im)
        logp = torch.log_softmax(scores, dim=-1)
        y = fx["labels"]
        ylogy = torch.where(y > 0, y * torch.log(torch.where(y > 0, y, torch.ones_like(y))), torch.zeros_like(y))
        loss = (fx["weights"] * (ylogy - y * logp).sum(-1)).sum()

    ok = True
    for name, got in (("text_embeds_raw", text), ("image_embeds_raw", images), ("scores", scores), ("loss", loss)):
        want = fx[name]
        err = (got - want).abs().max().item() / max(want.abs().max().item(), 1e-300)
        status = "ok" if err < tol else "FAIL"
        ok = ok and err < tol
        print(f"{status:4} {name:18} max rel err {err:.3e} (tol {tol:g})")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
