#!/usr/bin/env python3
"""Generate the image-decoding / resizing / preprocessing fixtures of tests/test_image.cpp.

Writes tests/data/images/: the encoded test images (synthesised here, deterministic), and
`expected.txt`, the references computed with the pinned Pillow / numpy / transformers of
tools/requirements-images.txt:

  decode <file> <pillow_mode> <w> <h> <sha256 of Image.open(f).convert("RGB") bytes> <x,y,r,g,b>...
  resize <file> <out_w> <out_h> <sha256 of convert("RGB").resize((w, h), BICUBIC) bytes> <x,y,r,g,b>...
  tensor <file> <mode> <size> <sha256 of the float32 CHW tensor bytes> <c,y,x,value>...
  full   <file> <mode> <size> <npy file holding the whole float32 CHW tensor>

`resize` records cover the PickScore resize (shorter side 224, longer int(224*long/short)) of
every image and extra target sizes for some. `tensor pickscore` comes from transformers'
CLIPImageProcessor (slow, numpy) with CLIP's defaults — what PickScore used through
AutoProcessor.from_pretrained("laion/CLIP-ViT-H-14-laion2B-s32B-b79K"). `resize` mode tensors are
Pillow's resize to S x S followed by the same rescale/normalise code of transformers.

HPSv2 references need torch: tools/gen_hpsv2_fixtures.py adds them from the decoded pixels this
script leaves in build/image-fixtures-decoded.npz (not committed).

Usage:  python3 -m venv /tmp/venv-img && /tmp/venv-img/bin/pip install -r tools/requirements-images.txt
        /tmp/venv-img/bin/python tools/gen_image_fixtures.py
"""
import hashlib
import io
import os
import struct
import sys
import zlib

import numpy as np
import PIL
import transformers
from PIL import Image

PINNED = {"Pillow": "11.3.0", "numpy": "2.2.6", "transformers": "4.57.6"}
HAVE = {"Pillow": PIL.__version__, "numpy": np.__version__, "transformers": transformers.__version__}
if HAVE != PINNED and "--any-version" not in sys.argv:
    sys.exit(f"version mismatch: have {HAVE}, pinned {PINNED} (pass --any-version to override)")

from transformers import CLIPImageProcessor  # noqa: E402
from transformers.image_utils import ChannelDimension  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "images")
DECODED_NPZ = os.path.join(ROOT, "build", "image-fixtures-decoded.npz")

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ---- content -------------------------------------------------------------------------------

def scene(h, w, seed, noise=True):
    """A smooth synthetic picture in [0, 1], float64 [h, w, 3]: gradients, discs, a rectangle,
    and a small noisy patch (the only part that does not compress well)."""
    rng = np.random.RandomState(seed)
    y = (np.arange(h)[:, None] + 0.5) / h
    x = (np.arange(w)[None, :] + 0.5) / w
    a, b, c = rng.uniform(0.5, 3.0, 3)
    img = np.stack([
        0.5 + 0.5 * np.sin(2 * np.pi * (a * x + 0.3 * y)),
        np.broadcast_to(y, (h, w)) * 0.8 + 0.1 * np.cos(2 * np.pi * b * x),
        0.5 + 0.4 * np.cos(2 * np.pi * (c * y - 0.5 * x)),
    ], axis=-1)
    for _ in range(3):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        col = rng.uniform(0, 1, 3)
        mask = ((y - cy) ** 2 + (x - cx) ** 2) < r * r
        img[mask] = col
    y0, x0 = int(rng.uniform(0, 0.6) * h), int(rng.uniform(0, 0.6) * w)
    img[y0:y0 + max(1, h // 5), x0:x0 + max(1, w // 4)] = rng.uniform(0, 1, 3)
    if noise and h >= 8 and w >= 8:
        ny, nx = min(h // 6 + 1, 48), min(w // 6 + 1, 48)
        img[h // 2:h // 2 + ny, w // 3:w // 3 + nx] += rng.normal(0, 0.15, (ny, nx, 3))
    return np.clip(img, 0, 1)


def to8(f):
    return np.round(f * 255).astype(np.uint8)


def to16(f):
    return np.round(f * 65535).astype(np.uint16)


# ---- a small PNG writer (every colour type, bit depth, filter, Adam7, tRNS) ------------------

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_rows(samples, bit_depth):
    """samples [h, w*channels] integers -> list of raw row bytes."""
    h = samples.shape[0]
    if bit_depth == 16:
        return [samples[r].astype(">u2").tobytes() for r in range(h)]
    if bit_depth == 8:
        return [samples[r].astype(np.uint8).tobytes() for r in range(h)]
    per = 8 // bit_depth
    rows = []
    for r in range(h):
        s = samples[r].astype(np.uint8)
        pad = (-len(s)) % per
        s = np.concatenate([s, np.zeros(pad, np.uint8)]).reshape(-1, per)
        shifts = np.array([8 - bit_depth * (i + 1) for i in range(per)], np.uint8)
        rows.append((s << shifts).sum(axis=1).astype(np.uint8).tobytes())
    return rows


def filter_rows(rows, bpp, choice):
    out = b""
    prev = np.zeros(len(rows[0]), np.int32) if rows else None
    for i, raw in enumerate(rows):
        cur = np.frombuffer(raw, np.uint8).astype(np.int32)
        left = np.concatenate([np.zeros(bpp, np.int32), cur[:-bpp]]) if len(cur) > bpp else np.zeros(len(cur), np.int32)
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]]) if len(cur) > bpp else np.zeros(len(cur), np.int32)
        ft = choice(i)
        if ft == 0:
            f = cur
        elif ft == 1:
            f = cur - left
        elif ft == 2:
            f = cur - prev
        elif ft == 3:
            f = cur - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            f = cur - pred
        out += bytes([ft]) + (f & 0xFF).astype(np.uint8).tobytes()
        prev = cur
    return out


def write_png(path, samples, bit_depth, color_type, palette=None, trns=None, interlace=False, filters=None,
              extra_chunks=()):
    """samples: [h, w, channels] (or [h, w]) unsigned integers already at bit_depth."""
    if samples.ndim == 2:
        samples = samples[:, :, None]
    h, w, ch = samples.shape
    assert ch == CHANNELS[color_type]
    bpp = max(1, ch * bit_depth // 8)
    if filters is None:  # every filter type on small images; Paeth (compact) on large ones
        filters = "mixed" if h * w <= 40000 else 4
    choice = (lambda i: i % 5) if filters == "mixed" else (lambda i, f=filters: f)

    def encode(sub):
        rows = pack_rows(sub.reshape(sub.shape[0], -1), bit_depth)
        return filter_rows(rows, bpp, choice)

    if interlace:
        raw = b""
        for xs, ys, dx, dy in ADAM7:
            sub = samples[ys::dy, xs::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += encode(sub)
    else:
        raw = encode(samples)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0,
                                                               1 if interlace else 0))
    for c in extra_chunks:
        png += c
    if palette is not None:
        png += chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    png += chunk(b"IDAT", zlib.compress(raw, 9))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


# ---- the image list --------------------------------------------------------------------------

def make_images():
    """Returns [(file name, extra resize sizes)] after writing each file into OUT."""
    made = []

    def add(name, extra=()):
        made.append((name, list(extra)))

    def png_rgb8(name, w, h, seed, extra=(), levels=None, **kw):
        f = scene(h, w, seed)
        if levels:  # posterised: large files stay small
            f = np.floor(f * levels) / levels
        write_png(os.path.join(OUT, name), to8(f), 8, 2, **kw)
        add(name, extra)

    def save_pil(name, im, extra=(), **kw):
        im.save(os.path.join(OUT, name), **kw)
        add(name, extra)

    # PNG, 8-bit RGB: sizes around 224, tiny, odd margins, extreme aspect, large.
    png_rgb8("png_rgb8_640x480.png", 640, 480, 1, levels=64, extra=[(224, 224), (37, 91), (300, 17), (1, 1), (513, 257)])
    png_rgb8("png_rgb8_480x640.png", 480, 640, 2, levels=64, extra=[(224, 224), (640, 480)])
    png_rgb8("png_rgb8_224x224.png", 224, 224, 3, extra=[(224, 224), (225, 223), (112, 448)])
    png_rgb8("png_rgb8_225x301.png", 225, 301, 4, extra=[(224, 224)])
    png_rgb8("png_rgb8_1x1.png", 1, 1, 5, extra=[(3, 2)])
    png_rgb8("png_rgb8_3x5.png", 3, 5, 6, extra=[(224, 224), (2, 2)])
    png_rgb8("png_rgb8_5x3.png", 5, 3, 7)
    png_rgb8("png_rgb8_2x150.png", 2, 150, 8, extra=[(224, 224)])
    png_rgb8("png_rgb8_100x67.png", 100, 67, 9, extra=[(224, 224), (1000, 670)])
    png_rgb8("png_rgb8_67x100.png", 67, 100, 10)
    png_rgb8("png_rgb8_223x224.png", 223, 224, 11)
    png_rgb8("png_rgb8_1000x999.png", 1000, 999, 12, levels=24, extra=[(224, 224), (999, 1000)])
    png_rgb8("png_rgb8_301x1201.png", 301, 1201, 13, levels=32)
    png_rgb8("png_rgb8_2304x1536.png", 2304, 1536, 14, levels=12, extra=[(224, 224), (2048, 2049)])
    png_rgb8("png_rgb8_interlaced_333x250.png", 333, 250, 15, interlace=True, extra=[(224, 224)])
    png_rgb8("png_rgb8_interlaced_7x3.png", 7, 3, 16, interlace=True)
    png_rgb8("png_rgb8_interlaced_1x1.png", 1, 1, 17, interlace=True)
    png_rgb8("png_rgb8_trns_200x120.png", 200, 120, 18, trns=struct.pack(">HHH", 10, 20, 30))
    # EXIF orientation must not be applied (Pillow's open does not).
    exif_chunk = chunk(b"eXIf", b"MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00"
                                b"\x00\x00\x00\x00")
    png_rgb8("png_rgb8_exif_rot_160x90.png", 160, 90, 19, extra_chunks=[exif_chunk])

    # PNG, other colour types and depths.
    f = np.floor(scene(300, 400, 20) * 48) / 48
    a = np.linspace(0, 1, 400)[None, :].repeat(300, 0)
    write_png(os.path.join(OUT, "png_rgba8_400x300.png"), np.dstack([to8(f), to8(a)]), 8, 6)
    add("png_rgba8_400x300.png", [(224, 224)])
    f = scene(75, 100, 21)
    write_png(os.path.join(OUT, "png_rgba16_100x75.png"), np.dstack([to16(f), to16(f[:, :, :1])]), 16, 6)
    add("png_rgba16_100x75.png")
    write_png(os.path.join(OUT, "png_rgb16_240x160.png"), to16(np.floor(scene(160, 240, 22) * 64) / 64), 16, 2)
    add("png_rgb16_240x160.png", [(224, 224)])
    write_png(os.path.join(OUT, "png_rgb16_interlaced_99x101.png"), to16(scene(101, 99, 23)), 16, 2, interlace=True)
    add("png_rgb16_interlaced_99x101.png")
    g = scene(400, 300, 24)[:, :, 1]
    write_png(os.path.join(OUT, "png_gray8_300x400.png"), to8(g), 8, 0)
    add("png_gray8_300x400.png", [(224, 224)])
    write_png(os.path.join(OUT, "png_gray8_trns_64x64.png"), to8(scene(64, 64, 25)[:, :, 0]), 8, 0,
              trns=struct.pack(">H", 7))
    add("png_gray8_trns_64x64.png")
    # 16-bit gray: Pillow opens "I;16" and convert("RGB") clips at 255 (not a scale): keep a
    # quarter of the image below 256 so both branches show.
    g16 = to16(scene(256, 256, 26)[:, :, 2])
    g16[:128, :128] = (g16[:128, :128] // 256).astype(np.uint16)
    write_png(os.path.join(OUT, "png_gray16_256x256.png"), g16, 16, 0)
    add("png_gray16_256x256.png", [(224, 224)])
    write_png(os.path.join(OUT, "png_gray16_interlaced_45x30.png"),
              (to16(scene(30, 45, 27)[:, :, 0]) // 128).astype(np.uint16), 16, 0, interlace=True)
    add("png_gray16_interlaced_45x30.png")
    for bd, (w, h) in [(1, (97, 61)), (2, (64, 48)), (4, (100, 77))]:
        q = (scene(h, w, 28 + bd)[:, :, 0] * ((1 << bd) - 1) + 0.5).astype(np.uint8)
        name = f"png_gray{bd}_{w}x{h}.png"
        write_png(os.path.join(OUT, name), q, bd, 0)
        add(name)
    q = (scene(33, 55, 32)[:, :, 0] * 15 + 0.5).astype(np.uint8)
    write_png(os.path.join(OUT, "png_gray4_interlaced_55x33.png"), q, 4, 0, interlace=True)
    add("png_gray4_interlaced_55x33.png")
    f = scene(250, 150, 33)
    write_png(os.path.join(OUT, "png_la8_150x250.png"), np.dstack([to8(f[:, :, 0]), to8(f[:, :, 1])]), 8, 4)
    add("png_la8_150x250.png")
    f = scene(90, 120, 34)
    write_png(os.path.join(OUT, "png_la16_120x90.png"), np.dstack([to16(f[:, :, 0]), to16(f[:, :, 2])]), 16, 4)
    add("png_la16_120x90.png")

    # Palette images (indices quantised from a scene).
    rng = np.random.RandomState(35)
    for bd, (w, h), ncolors in [(8, (320, 240), 256), (4, (200, 100), 16), (2, (55, 33), 4), (1, (129, 65), 2)]:
        pal = rng.randint(0, 256, (ncolors, 3))
        idx = (scene(h, w, 36 + bd)[:, :, 0] * (ncolors - 1) + 0.5).astype(np.uint8)
        name = f"png_p{bd}_{w}x{h}.png"
        write_png(os.path.join(OUT, name), idx, bd, 3, palette=pal)
        add(name, [(224, 224)] if bd == 8 else [])
    pal = rng.randint(0, 256, (256, 3))
    idx = (scene(200, 300, 45)[:, :, 1] * 255 + 0.5).astype(np.uint8)
    trns = bytes(rng.randint(0, 256, 200).astype(np.uint8))
    write_png(os.path.join(OUT, "png_p8_trns_300x200.png"), idx, 8, 3, palette=pal, trns=trns)
    add("png_p8_trns_300x200.png")
    # A PLTE with 10 entries but indices up to 15: Pillow shows the missing entries as black.
    pal = rng.randint(0, 256, (10, 3))
    idx = (scene(40, 60, 46)[:, :, 0] * 15 + 0.5).astype(np.uint8)
    write_png(os.path.join(OUT, "png_p4_short_palette_60x40.png"), idx, 4, 3, palette=pal)
    add("png_p4_short_palette_60x40.png")
    idx = (scene(77, 81, 47)[:, :, 2] * 255 + 0.5).astype(np.uint8)
    write_png(os.path.join(OUT, "png_p8_interlaced_81x77.png"), idx, 8, 3, palette=rng.randint(0, 256, (256, 3)),
              interlace=True)
    add("png_p8_interlaced_81x77.png")

    # JPEG (Pillow's own encoder: libjpeg-turbo).
    def jpg(name, w, h, seed, mode="RGB", extra=(), **kw):
        im = Image.fromarray(to8(scene(h, w, seed)))
        if mode != "RGB":
            im = im.convert(mode)
        save_pil(name, im, extra, **kw)

    jpg("jpg_baseline_640x480.jpg", 640, 480, 50, quality=90, extra=[(224, 224), (37, 91)])
    jpg("jpg_baseline_444_500x375.jpg", 500, 375, 51, quality=92, subsampling=0)
    jpg("jpg_baseline_422_401x299.jpg", 401, 299, 52, quality=85, subsampling=1, extra=[(224, 224)])
    jpg("jpg_progressive_800x600.jpg", 800, 600, 53, quality=88, progressive=True, extra=[(224, 224)])
    jpg("jpg_progressive_333x517.jpg", 333, 517, 54, quality=80, progressive=True)
    jpg("jpg_gray_300x300.jpg", 300, 300, 55, mode="L", quality=90)
    jpg("jpg_gray_progressive_257x129.jpg", 257, 129, 56, mode="L", quality=90, progressive=True)
    jpg("jpg_cmyk_320x240.jpg", 320, 240, 57, mode="CMYK", quality=90, extra=[(224, 224)])
    jpg("jpg_cmyk_progressive_121x93.jpg", 121, 93, 58, mode="CMYK", quality=90, progressive=True)
    jpg("jpg_1x1.jpg", 1, 1, 59, quality=95)
    jpg("jpg_3x5.jpg", 3, 5, 60, quality=95)
    jpg("jpg_224x224.jpg", 224, 224, 61, quality=90)
    jpg("jpg_odd_17x1023.jpg", 17, 1023, 62, quality=90)
    jpg("jpg_large_2560x1440.jpg", 2560, 1440, 63, quality=75, extra=[(224, 224)])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display: must NOT be applied
    jpg("jpg_exif_orientation6_200x100.jpg", 200, 100, 64, quality=90, exif=exif.tobytes())
    jpg("jpg_restart_300x200.jpg", 300, 200, 65, quality=90, restart_marker_blocks=3)

    # WebP (Pillow's libwebp).
    def webp(name, w, h, seed, alpha=False, extra=(), **kw):
        arr = to8(scene(h, w, seed))
        if alpha:
            a = to8(np.linspace(0, 1, w)[None, :].repeat(h, 0))
            im = Image.fromarray(np.dstack([arr, a]))
        else:
            im = Image.fromarray(arr)
        save_pil(name, im, extra, **kw)

    webp("webp_lossy_640x480.webp", 640, 480, 70, quality=80, extra=[(224, 224)])
    webp("webp_lossless_300x200.webp", 300, 200, 71, lossless=True)
    webp("webp_lossy_alpha_320x240.webp", 320, 240, 72, alpha=True, quality=80)
    webp("webp_lossless_alpha_150x150.webp", 150, 150, 73, alpha=True, lossless=True)
    webp("webp_lossy_333x221.webp", 333, 221, 74, quality=70)
    frames = [Image.fromarray(to8(scene(90, 120, 75 + i))) for i in range(2)]
    frames[0].save(os.path.join(OUT, "webp_animated_120x90.webp"), save_all=True, append_images=frames[1:],
                   duration=100, quality=80)
    add("webp_animated_120x90.webp")
    return made


# ---- references ------------------------------------------------------------------------------

def sha(b):
    return hashlib.sha256(b).hexdigest()


def sample_points(w, h, n=6, seed=0):
    pts = [(0, 0), (w - 1, h - 1), (w // 2, h // 2)]
    rng = np.random.RandomState(seed + w * 7 + h)
    while len(pts) < n:
        pts.append((int(rng.randint(0, w)), int(rng.randint(0, h))))
    return pts


def pixel_record(kind, name, arr, extra_fields):
    h, w = arr.shape[:2]
    pts = " ".join(f"{x},{y},{arr[y, x, 0]},{arr[y, x, 1]},{arr[y, x, 2]}" for x, y in sample_points(w, h))
    return f"{kind} {name} {extra_fields} {sha(np.ascontiguousarray(arr).tobytes())} {pts}"


def tensor_record(name, mode, size, t):
    t = np.ascontiguousarray(t, dtype=np.float32)
    rng = np.random.RandomState(size)
    pts = [(0, 0, 0), (2, size - 1, size - 1), (1, size // 2, size // 2)]
    pts += [(int(rng.randint(0, 3)), int(rng.randint(0, size)), int(rng.randint(0, size))) for _ in range(9)]
    vals = " ".join(f"{c},{y},{x},{float(t[c, y, x])!r}" for c, y, x in pts)
    return f"tensor {name} {mode} {size} {sha(t.tobytes())} {vals}"


def clip_processor(size):
    return CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": size}, resample=Image.BICUBIC,
        do_center_crop=True, crop_size={"height": size, "width": size},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)


def clip_tensor(im, size):
    # input_data_format is given because transformers guesses channels-first for an image whose
    # height is 1 or 3; PickScore's images are never that small.
    out = clip_processor(size)(images=im, return_tensors="np", input_data_format=ChannelDimension.LAST)
    return out["pixel_values"][0]


def resize_mode_tensor(rgb_im, size):
    """Pillow resize to size x size, then transformers' rescale + normalize."""
    from transformers.image_transforms import normalize, rescale
    arr = np.array(rgb_im.resize((size, size), Image.BICUBIC))
    arr = rescale(arr, 1 / 255, input_data_format=ChannelDimension.LAST)
    arr = normalize(arr, CLIP_MEAN, CLIP_STD, input_data_format=ChannelDimension.LAST)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith((".png", ".jpg", ".webp", ".npy")) or f == "expected.txt":
            os.remove(os.path.join(OUT, f))
    made = make_images()
    lines = [f"# generated by tools/gen_image_fixtures.py with {HAVE}"]
    decoded = {}
    full_tensor_files = {"png_rgb8_640x480.png", "png_rgb8_3x5.png", "jpg_cmyk_320x240.jpg",
                         "png_gray16_256x256.png", "webp_lossy_alpha_320x240.webp", "png_rgb8_2x150.png"}
    for name, extra in made:
        path = os.path.join(OUT, name)
        with Image.open(path) as im:
            mode = im.mode
            rgb = im.convert("RGB")
        arr = np.array(rgb)
        decoded[name] = arr
        w, h = rgb.size
        lines.append(pixel_record("decode", name, arr, f"{mode} {w} {h}"))
        short, long = min(w, h), max(w, h)
        nl = int(224 * long / short)
        sizes = [(224, nl) if w <= h else (nl, 224)] + [tuple(s) for s in extra]
        for sw, sh in sizes:
            r = np.array(rgb.resize((sw, sh), Image.BICUBIC))
            lines.append(pixel_record("resize", name, r, f"{sw} {sh}"))
        lines.append(tensor_record(name, "pickscore", 224, clip_tensor(rgb if mode != "RGB" else rgb, 224)))
        # The processor converts to RGB itself: feed it the opened image too, to prove the
        # conversion path is the same.
        with Image.open(path) as im:
            t_direct = clip_tensor(im, 224)
        assert np.array_equal(t_direct, clip_tensor(rgb, 224)), name
        if name in full_tensor_files:
            for mode_name, size, t in [("pickscore", 32, clip_tensor(rgb, 32)),
                                       ("resize", 24, resize_mode_tensor(rgb, 24))]:
                npy = f"{os.path.splitext(name)[0]}.{mode_name}{size}.npy"
                np.save(os.path.join(OUT, npy), np.ascontiguousarray(t, np.float32))
                lines.append(f"full {name} {mode_name} {size} {npy}")
        if name in ("png_rgb8_640x480.png", "jpg_baseline_640x480.jpg", "png_rgb8_3x5.png"):
            lines.append(tensor_record(name, "resize", 224, resize_mode_tensor(rgb, 224)))
    with open(os.path.join(OUT, "expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.makedirs(os.path.dirname(DECODED_NPZ), exist_ok=True)
    np.savez(DECODED_NPZ, **{k.replace(".", "__"): v for k, v in decoded.items()})
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"{len(made)} images, {len(lines) - 1} records, {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
