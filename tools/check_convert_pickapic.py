#!/usr/bin/env python3
"""Check tools/convert_pickapic.py end to end on a tiny Pick-a-Pic-like parquet file made here.

    python tools/check_convert_pickapic.py --cli build/examples/pickscore --vocab ../shared/data/bpe_simple_vocab_16e6.txt.gz

1. Writes WORK/train-00000-of-00001.parquet with Pick-a-Pic v1's columns (PNG images drawn here,
   labels with a tie and a null, an HF Image struct column), in row groups of 3 rows.
2. Converts it with convert_pickapic.py (2 rows per batch, so batches cross row groups), and
   re-reads the shard with the script's own reader (--check) and field by field here.
3. With --cli: runs `pickscore train` on the shard for 2 steps with the small preset, so the C++
   reader (data/shard.hpp: header, index and record CRCs) and the loader (PNG decode, labels,
   num_example_per_prompt) read what Python wrote; then flips one byte of a record and checks that
   the C++ loader skips that record (a corrupt-record message) instead of training on it.
Exit status 0 when everything matched. Needs pyarrow (tools/requirements-data.txt).
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_pickapic  # noqa: E402


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A minimal 8-bit RGB PNG of one colour with a lighter square in the middle."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            inner = width // 4 <= x < 3 * width // 4 and height // 4 <= y < 3 * height // 4
            rows += bytes(min(255, c + 60) if inner else c for c in rgb)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b"")


def make_parquet(path: Path, rows: int) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    colours = [(200, 40, 40), (40, 160, 60), (40, 60, 200), (220, 200, 40)]
    names = ["red", "green", "blue", "yellow"]
    data = []
    for i in range(rows):
        a, b = i % 4, (i + 1) % 4
        label = [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)][i % 3]
        data.append({
            "caption": f"a {names[a]} square, número {i}",
            "jpg_0": png(32, 32, colours[a]),
            "jpg_1": {"bytes": png(32, 32, colours[b]), "path": f"{i}_1.png"},
            "label_0": None if i == 4 else label[0],
            "label_1": None if i == 4 else label[1],
            "has_label": True,
            "are_different": i % 5 != 0,
            "num_example_per_prompt": 1 + i % 3,
            "ranking_id": 1000 + i,
            "user_id": None if i == 2 else 7 * i,
            "image_0_uid": f"uid0-{i}",
            "image_1_uid": f"uid1-{i}",
            "model_0": "sd-1.5",
            "model_1": "sdxl",
            "best_image_uid": f"uid0-{i}",
            "created_at": "2023-04-01 12:00:00",
        })
    schema = pa.schema([
        ("caption", pa.string()), ("jpg_0", pa.binary()),
        ("jpg_1", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("label_0", pa.float64()), ("label_1", pa.float64()), ("has_label", pa.bool_()),
        ("are_different", pa.bool_()), ("num_example_per_prompt", pa.int64()), ("ranking_id", pa.int64()),
        ("user_id", pa.int64()), ("image_0_uid", pa.string()), ("image_1_uid", pa.string()),
        ("model_0", pa.string()), ("model_1", pa.string()), ("best_image_uid", pa.string()),
        ("created_at", pa.string()),
    ])
    pq.write_table(pa.Table.from_pylist(data, schema=schema), path, row_group_size=3)
    assert pq.ParquetFile(path).num_row_groups > 1
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cli", type=Path, help="the pickscore program: also check that its loader reads the shard")
    ap.add_argument("--vocab", type=Path, help="CLIP's bpe_simple_vocab_16e6.txt.gz (for --cli)")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="pickscore-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    failures = []

    def expect(cond: bool, what: str):
        print(("ok    " if cond else "FAIL  ") + what)
        if not cond:
            failures.append(what)

    try:
        src = work / "train-00000-of-00001.parquet"
        rows = make_parquet(src, 10)
        out = work / "shards"
        rc = convert_pickapic.main([str(src), "--out", str(out), "--rows-per-batch", "2", "--check", "--overwrite"])
        expect(rc == 0, "convert_pickapic.py --check")
        shard = out / "train-00000-of-00001.pshard"
        recs = convert_pickapic.read_shard(shard)
        expect(len(recs) == 10, "10 records")
        ok = True
        for i, (r, d) in enumerate(zip(recs, rows)):
            meta = json.loads(r["meta"])
            ok &= r["caption"] == d["caption"]
            ok &= r["image_0"] == d["jpg_0"] and r["image_1"] == d["jpg_1"]["bytes"]
            ok &= (r["label_0"], r["label_1"]) == ((0.5, 0.5) if i == 4 else (d["label_0"], d["label_1"]))
            ok &= r["split"] == "train" and r["are_different"] == d["are_different"] and r["has_label"]
            ok &= r["num_example_per_prompt"] == d["num_example_per_prompt"] and r["ranking_id"] == 1000 + i
            ok &= r["user_id"] == (-1 if i == 2 else 7 * i)
            ok &= meta["image_0_uid"] == f"uid0-{i}" and meta["model_1"] == "sdxl"
        expect(ok, "every field as written (null labels -> 0.5/0.5, null user_id -> -1)")
        rc = convert_pickapic.main([str(src), "--out", str(out), "--limit", "4"])
        expect(rc == 0 and len(convert_pickapic.read_shard(shard)) == 10, "an existing shard is skipped")
        convert_pickapic.main([str(src), "--out", str(work / "limited"), "--limit", "4", "--check"])
        expect(len(convert_pickapic.read_shard(work / "limited" / shard.name)) == 4, "--limit 4")
        expect(not list(out.glob(".*tmp*")), "no temporary file left")

        if args.cli:
            cmd = [str(args.cli), "train", "--data", str(shard), "--out", str(work / "run"), "--config-name", "small",
                   "--steps", "2", "--batch", "4", "--warmup", "1", "--lr", "1e-4", "--eval-every", "0",
                   "--workers", "1", "--no-recompute"]
            if args.vocab:
                cmd += ["--vocab", str(args.vocab)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            print(p.stdout + p.stderr)
            expect(p.returncode == 0, "pickscore train reads the converted shard (C++ loader)")
            expect("10 pairs of split train" in p.stdout, "the C++ side sees 10 train pairs")
            lines = [json.loads(x) for x in (work / "run" / "metrics.jsonl").read_text().splitlines()]
            expect([x["step"] for x in lines] == [1, 2] and all(x["examples"] == 4 for x in lines),
                   "2 steps of 4 examples")

            # Damage one record's image bytes: the C++ loader must skip it by its CRC, not train on it.
            damaged = work / "damaged.pshard"
            shutil.copy(shard, damaged)
            raw = bytearray(damaged.read_bytes())
            entry = convert_pickapic.ENTRY.unpack_from(raw, len(raw) - 10 * 64)  # record 0's index entry
            raw[entry[0] + entry[1] + 5] ^= 0xFF  # a byte inside record 0's first image
            damaged.write_bytes(bytes(raw))
            cmd[3] = str(damaged)
            cmd[5] = str(work / "run-damaged")
            cmd[cmd.index("--steps") + 1] = "1"
            cmd[cmd.index("--batch") + 1] = "10"  # one step over all 10 records
            p = subprocess.run(cmd, capture_output=True, text=True)
            lines = [json.loads(x) for x in (work / "run-damaged" / "metrics.jsonl").read_text().splitlines()]
            expect(p.returncode == 0 and [x["examples"] for x in lines] == [9] and lines[-1]["skipped_records"] == 1,
                   "a damaged record is skipped and counted by the C++ loader (9 of 10 examples)")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
