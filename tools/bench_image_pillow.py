#!/usr/bin/env python3
"""Baseline for benchmarks/bench_image.cpp: images/s of Pillow decode + transformers'
CLIPImageProcessor (what PickScore runs) on 512x512 and 1024x1024 PNG and JPEG images of the same
kind (a smooth synthetic scene with noise; PNG at Pillow's default compression, JPEG quality 90
4:2:0), one image at a time on one thread. Versions: tools/requirements-images.txt.

    /tmp/venv-img/bin/python tools/bench_image_pillow.py
"""
import io
import statistics
import time

import numpy as np
from PIL import Image
from transformers import CLIPImageProcessor


def scene(side):
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    fx, fy = x / side, y / side
    rng = np.random.RandomState(12345)
    noise = rng.randint(0, 256, (side, side)) / 255.0 - 0.5
    v = np.stack([0.5 + 0.4 * np.sin(6 * fx + 2 * fy), 0.2 + 0.6 * fy, 0.5 + 0.3 * np.cos(9 * fy - 3 * fx)], -1)
    return np.round(np.clip(v + 0.06 * noise[..., None], 0, 1) * 255).astype(np.uint8)


def main():
    proc = CLIPImageProcessor()
    for fmt in ("PNG", "JPEG"):
        for side in (512, 1024):
            buf = io.BytesIO()
            Image.fromarray(scene(side)).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
            data = buf.getvalue()

            def decode():
                return Image.open(io.BytesIO(data)).convert("RGB")

            def full():
                return proc(images=decode(), return_tensors="np")["pixel_values"]

            for name, fn in (("decode", decode), ("decode+preprocess", full)):
                fn()
                times = []
                for _ in range(5):
                    n, t0 = 0, time.perf_counter()
                    while time.perf_counter() - t0 < 0.5:
                        fn()
                        n += 1
                    times.append((time.perf_counter() - t0) / n)
                med = statistics.median(times)
                print(f"{fmt:4s} {side:4d} {name:18s} {med * 1e3:7.2f} ms  {1 / med:7.1f} images/s "
                      f"({len(data) // 1024} KiB)")


if __name__ == "__main__":
    main()
