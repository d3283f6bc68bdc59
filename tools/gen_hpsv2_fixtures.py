#!/usr/bin/env python3
"""Add HPSv2-preprocessing references to tests/data/images/expected.txt (run after
tools/gen_image_fixtures.py, which leaves the Pillow-decoded pixels in
build/image-fixtures-decoded.npz).

HPSv2's preprocess_val (hpsv2/src/open_clip/transform.py, image_transform(...,
resize_longest_max=True)) is: convert RGB, ToTensor (float32 v / 255), ResizeMaxSize (torchvision
F.resize on the tensor: bicubic, antialias=True as torchvision >= 0.17 defaults, to
round(dim * 224 / max(h, w)); then F.pad with 0 on the [0, 1] tensor, pad // 2 before), Normalize.
This script runs those steps with torch directly (F.resize on a float tensor is exactly
torch.nn.functional.interpolate(..., mode="bicubic", align_corners=False, antialias=True)).
Needs torch (Debian's python3-torch 1.13 was used: `apt-get install python3-torch`, then
`/usr/bin/python3 tools/gen_hpsv2_fixtures.py`).

Records added:
  tensor <file> hpsv2 224 <sha256> <c,y,x,value>...    (the test compares values within 1e-6)
  full   <file> hpsv2 <size> <npy file>
"""
import hashlib
import os

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "images")
DECODED_NPZ = os.path.join(ROOT, "build", "image-fixtures-decoded.npz")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

TENSOR_FILES = ["png_rgb8_640x480.png", "png_rgb8_480x640.png", "png_rgb8_225x301.png", "png_rgb8_3x5.png",
                "png_rgb8_2x150.png", "png_rgb8_100x67.png", "png_rgb8_1000x999.png", "png_rgb8_2304x1536.png",
                "jpg_baseline_640x480.jpg", "jpg_progressive_333x517.jpg", "jpg_cmyk_320x240.jpg",
                "webp_lossy_333x221.webp", "png_gray16_256x256.png", "jpg_odd_17x1023.jpg"]
FULL_FILES = ["png_rgb8_640x480.png", "png_rgb8_3x5.png", "jpg_progressive_333x517.jpg", "png_rgb8_100x67.png"]


def hpsv2(arr, size):
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    h, w = x.shape[1:]
    scale = size / float(max(h, w))
    nh, nw = h, w
    if scale != 1.0:
        nh, nw = round(h * scale), round(w * scale)
        x = torch.nn.functional.interpolate(x[None], size=(nh, nw), mode="bicubic", align_corners=False,
                                            antialias=True)[0]
    # HPSv2 pads only when it resized; pickscore pads always (a square is what the model takes).
    pad_h, pad_w = size - nh, size - nw
    x = torch.nn.functional.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(CLIP_STD, dtype=torch.float32)[:, None, None]
    return x.sub(mean).div(std).numpy()


def tensor_record(name, size, t):
    t = np.ascontiguousarray(t, dtype=np.float32)
    rng = np.random.RandomState(size + 1)
    pts = [(0, 0, 0), (2, size - 1, size - 1), (1, size // 2, size // 2)]
    pts += [(int(rng.randint(0, 3)), int(rng.randint(0, size)), int(rng.randint(0, size))) for _ in range(13)]
    vals = " ".join(f"{c},{y},{x},{float(t[c, y, x])!r}" for c, y, x in pts)
    return f"tensor {name} hpsv2 {size} {hashlib.sha256(t.tobytes()).hexdigest()} {vals}"


def main():
    torch.set_num_threads(1)
    decoded = np.load(DECODED_NPZ)
    path = os.path.join(OUT, "expected.txt")
    lines = [l for l in open(path).read().splitlines() if " hpsv2 " not in l]
    for name in TENSOR_FILES:
        lines.append(tensor_record(name, 224, hpsv2(decoded[name.replace(".", "__")], 224)))
    for name in FULL_FILES:
        npy = f"{os.path.splitext(name)[0]}.hpsv2_32.npy"
        np.save(os.path.join(OUT, npy), np.ascontiguousarray(hpsv2(decoded[name.replace(".", "__")], 32), np.float32))
        lines.append(f"full {name} hpsv2 32 {npy}")
    lines[0] = lines[0].split("; hpsv2 records")[0] + f"; hpsv2 records by tools/gen_hpsv2_fixtures.py with torch {torch.__version__}"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(TENSOR_FILES)} hpsv2 tensors, {len(FULL_FILES)} full")


if __name__ == "__main__":
    main()
