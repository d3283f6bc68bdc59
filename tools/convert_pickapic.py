#!/usr/bin/env python3
"""Convert Pick-a-Pic parquet files into pickscore shards (.pshard) for `pickscore train`.

    python tools/convert_pickapic.py pickapic_v1/data/ --out shards/
    python tools/convert_pickapic.py data/validation_unique-00000-of-00001.parquet --out shards/
    python tools/convert_pickapic.py data/train-00000-of-00645.parquet --out sample/ --limit 64

Each parquet file becomes one shard, OUT/<file stem>.pshard, in the format that
include/pickscore/data/shard.hpp reads (described at the top of that file; version 1, little
endian): a 64-byte header, the records' bytes (caption, image 0, image 1, a JSON object of string
ids) back to back, then one 64-byte index entry per record, with CRC-32s of the header, the index
and each record's data (zlib's CRC-32, as the C++ reader checks them).

Memory: the file is read one row group at a time and handed over in batches of --rows-per-batch
rows (pyarrow's iter_batches over the needed columns; 32 rows by default); each record's bytes are
written as soon as they are read, and only the index (64 bytes per record) stays in memory until
the end. Measured: the same peak resident size (370 MB) for a 0.6 GB and a 1.2 GB file of 30 MB
row groups; it does not grow with the file. A shard is written to a temporary file beside its
destination, fsynced and renamed into place, so an interrupted conversion leaves no half shard;
existing shards are skipped (run it again to continue), unless --overwrite.

The split of each file comes from its name (train-*, validation-*, validation_unique-*, test-*,
test_unique-*), or from --split. Columns (Pick-a-Pic v1): caption, jpg_0, jpg_1, label_0, label_1,
has_label, are_different, num_example_per_prompt, ranking_id, user_id, image_0_uid, image_1_uid,
model_0, model_1, best_image_uid, created_at. Only caption, jpg_0, jpg_1, label_0 and label_1 are
required; the others default to has_label = are_different = true, num_example_per_prompt = 1,
ids -1 and empty strings. Image columns may hold bytes or Hugging Face Image structs ({bytes, path}).

Needs pyarrow (tools/requirements-data.txt). `--check` re-reads each written shard with this
script's own reader (read_shard) and compares it with the parquet rows.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import zlib
from pathlib import Path

MAGIC = b"PICKSHRD"
VERSION = 1
HEADER_SIZE = 64
ENTRY_SIZE = 64
# data_offset, caption/image0/image1/meta sizes, label_0, label_1, num_example_per_prompt, split,
# flags, 0, ranking_id, user_id, data_crc32, 0
ENTRY = struct.Struct("<QIIIIffIBBHqqII")
# magic, version, header_size, record_count, index_offset, file_size, index_entry_size, index_crc32,
# flags, 0, 0 (the header CRC-32 over these 60 bytes follows)
HEADER = struct.Struct("<8sIIQQQIIIII")
assert ENTRY.size == ENTRY_SIZE and HEADER.size == HEADER_SIZE - 4

SPLITS = {"train": 0, "validation": 1, "test": 2, "validation_unique": 3, "test_unique": 4, "other": 255}
META_COLUMNS = ["image_0_uid", "image_1_uid", "model_0", "model_1", "best_image_uid", "created_at"]
REQUIRED = ["caption", "jpg_0", "jpg_1", "label_0", "label_1"]
OPTIONAL = ["has_label", "are_different", "num_example_per_prompt", "ranking_id", "user_id"] + META_COLUMNS


def split_of(path: Path) -> str:
    """The split a Pick-a-Pic file name starts with (the longest match: validation_unique before validation)."""
    name = path.name
    for s in sorted(SPLITS, key=len, reverse=True):
        if s != "other" and (name == s or name.startswith(s + "-") or name.startswith(s + "_") or name.startswith(s + ".")):
            return s
    raise SystemExit(f"{path}: cannot tell the split from the file name; give --split")


def image_bytes(v, where: str) -> bytes:
    if isinstance(v, dict):  # Hugging Face Image feature: {"bytes": ..., "path": ...}
        v = v.get("bytes")
    if v is None:
        raise ValueError(f"{where}: no image bytes")
    return bytes(v)


def as_str(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


class ShardWriter:
    """Streams records into OUT.pshard (through a temporary file, renamed by finish())."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
        self.f = open(self.tmp, "wb")
        self.f.write(b"\0" * HEADER_SIZE)
        self.offset = HEADER_SIZE
        self.index = bytearray()
        self.count = 0

    def add(self, caption: str, image0: bytes, image1: bytes, meta: str, label0: float, label1: float,
            num_example_per_prompt: int, split: int, has_label: bool, are_different: bool, ranking_id: int,
            user_id: int) -> None:
        parts = [caption.encode("utf-8"), image0, image1, meta.encode("utf-8")]
        for p, what in zip(parts, ("caption", "image 0", "image 1", "meta")):
            if len(p) > 0xFFFFFFFF:
                raise ValueError(f"record {self.count}: {what} of {len(p)} bytes exceeds 4 GiB")
        crc = 0
        for p in parts:
            crc = zlib.crc32(p, crc)
            self.f.write(p)
        flags = (1 if has_label else 0) | (2 if are_different else 0)
        self.index += ENTRY.pack(self.offset, len(parts[0]), len(parts[1]), len(parts[2]), len(parts[3]),
                                 float(label0), float(label1), num_example_per_prompt & 0xFFFFFFFF, split, flags, 0,
                                 ranking_id, user_id, crc & 0xFFFFFFFF, 0)
        self.offset += sum(len(p) for p in parts)
        self.count += 1

    def finish(self) -> None:
        index_offset = self.offset
        self.f.write(self.index)
        file_size = index_offset + len(self.index)
        head = HEADER.pack(MAGIC, VERSION, HEADER_SIZE, self.count, index_offset, file_size, ENTRY_SIZE,
                           zlib.crc32(self.index) & 0xFFFFFFFF, 0, 0, 0)
        head += struct.pack("<I", zlib.crc32(head) & 0xFFFFFFFF)
        self.f.seek(0)
        self.f.write(head)
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.dest)
        dfd = os.open(self.dest.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def abort(self) -> None:
        if not self.f.closed:
            self.f.close()
        if self.tmp.exists():
            self.tmp.unlink()


def convert_file(src: Path, dest: Path, split: str, rows_per_batch: int, limit: int | None) -> int:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(src)
    names = set(pf.schema_arrow.names)
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise SystemExit(f"{src}: missing column(s) {', '.join(missing)} (has: {', '.join(sorted(names))})")
    columns = REQUIRED + [c for c in OPTIONAL if c in names]
    code = SPLITS[split]
    w = ShardWriter(dest)
    try:
        done = 0
        for batch in pf.iter_batches(batch_size=rows_per_batch, columns=columns):
            cols = {c: batch.column(c).to_pylist() for c in columns}
            for i in range(batch.num_rows):
                if limit is not None and done >= limit:
                    break
                where = f"{src} row {done}"

                def get(c, default=None):
                    v = cols[c][i] if c in cols else None
                    return default if v is None else v

                meta = {c: as_str(cols[c][i]) for c in META_COLUMNS if c in cols}
                w.add(caption=as_str(get("caption", "")),
                      image0=image_bytes(get("jpg_0"), where + " jpg_0"),
                      image1=image_bytes(get("jpg_1"), where + " jpg_1"),
                      meta=json.dumps(meta, ensure_ascii=False, separators=(",", ":")) if meta else "",
                      label0=float(get("label_0", 0.5)),
                      label1=float(get("label_1", 0.5)),
                      num_example_per_prompt=max(1, int(get("num_example_per_prompt", 1))),
                      split=code,
                      has_label=bool(get("has_label", True)),
                      are_different=bool(get("are_different", True)),
                      ranking_id=int(get("ranking_id", -1)),
                      user_id=int(get("user_id", -1)))
                done += 1
            del cols, batch  # one batch of rows in memory at a time
            if limit is not None and done >= limit:
                break
        w.finish()
        return done
    except BaseException:
        w.abort()
        raise


def read_shard(path: Path) -> list[dict]:
    """An independent reader of the format (for --check and tests): every record as a dict; raises on damage."""
    data = Path(path).read_bytes()
    if len(data) < HEADER_SIZE or data[:8] != MAGIC:
        raise ValueError(f"{path}: not a pickscore shard")
    (magic, version, header_size, count, index_offset, file_size, entry_size, index_crc, _flags, _a,
     _b) = HEADER.unpack_from(data, 0)
    (header_crc,) = struct.unpack_from("<I", data, 60)
    if zlib.crc32(data[:60]) & 0xFFFFFFFF != header_crc:
        raise ValueError(f"{path}: header CRC mismatch")
    if version != VERSION or header_size != HEADER_SIZE or entry_size != ENTRY_SIZE or file_size != len(data):
        raise ValueError(f"{path}: bad header")
    if index_offset != len(data) - count * ENTRY_SIZE:
        raise ValueError(f"{path}: bad index offset")
    index = data[index_offset:]
    if zlib.crc32(index) & 0xFFFFFFFF != index_crc:
        raise ValueError(f"{path}: index CRC mismatch")
    names = {v: k for k, v in SPLITS.items()}
    out = []
    for i in range(count):
        (off, ncap, n0, n1, nmeta, l0, l1, nepp, split, flags, _z, rid, uid, crc,
         _z2) = ENTRY.unpack_from(index, i * ENTRY_SIZE)
        end = off + ncap + n0 + n1 + nmeta
        if off < HEADER_SIZE or end > index_offset:
            raise ValueError(f"{path}: record {i} out of range")
        blob = data[off:end]
        if zlib.crc32(blob) & 0xFFFFFFFF != crc:
            raise ValueError(f"{path}: record {i} data CRC mismatch")
        out.append({
            "caption": blob[:ncap].decode("utf-8"),
            "image_0": blob[ncap:ncap + n0],
            "image_1": blob[ncap + n0:ncap + n0 + n1],
            "meta": blob[ncap + n0 + n1:].decode("utf-8"),
            "label_0": l0, "label_1": l1, "num_example_per_prompt": nepp, "split": names[split],
            "has_label": bool(flags & 1), "are_different": bool(flags & 2), "ranking_id": rid, "user_id": uid,
        })
    return out


def check_shard(src: Path, dest: Path, split: str, limit: int | None) -> None:
    """Compares a written shard with the parquet rows it came from (reading the parquet in batches again)."""
    import pyarrow.parquet as pq

    records = read_shard(dest)
    pf = pq.ParquetFile(src)
    n = 0
    for batch in pf.iter_batches(batch_size=32, columns=["caption", "jpg_0", "jpg_1", "label_0", "label_1"]):
        rows = batch.to_pylist()
        for r in rows:
            if limit is not None and n >= limit:
                break
            rec = records[n]
            ok = (rec["caption"] == as_str(r["caption"]) and rec["image_0"] == image_bytes(r["jpg_0"], "")
                  and rec["image_1"] == image_bytes(r["jpg_1"], "") and rec["split"] == split
                  and abs(rec["label_0"] - (0.5 if r["label_0"] is None else r["label_0"])) < 1e-6
                  and abs(rec["label_1"] - (0.5 if r["label_1"] is None else r["label_1"])) < 1e-6)
            if not ok:
                raise SystemExit(f"{dest}: record {n} differs from {src} row {n}")
            n += 1
    if n != len(records):
        raise SystemExit(f"{dest}: {len(records)} records, expected {n}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path, help="parquet files, or folders of them")
    ap.add_argument("--out", required=True, type=Path, help="folder for the .pshard files")
    ap.add_argument("--split", choices=[s for s in SPLITS], help="the split of every input (default: from the file name)")
    ap.add_argument("--rows-per-batch", type=int, default=32, help="rows read at a time (default 32)")
    ap.add_argument("--limit", type=int, help="convert at most this many rows of each file (samples)")
    ap.add_argument("--overwrite", action="store_true", help="replace shards that exist (default: skip them)")
    ap.add_argument("--check", action="store_true", help="re-read each shard and compare it with the parquet rows")
    args = ap.parse_args(argv)
    if args.rows_per_batch < 1:
        ap.error("--rows-per-batch must be at least 1")

    files: list[Path] = []
    for p in args.inputs:
        if p.is_dir():
            files += sorted(p.glob("*.parquet"))
        elif p.exists():
            files.append(p)
        else:
            ap.error(f"{p} does not exist")
    if not files:
        ap.error("no .parquet files among the inputs")
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for i, src in enumerate(files):
        split = args.split or split_of(src)
        dest = args.out / (src.name[: -len(".parquet")] if src.name.endswith(".parquet") else src.name)
        dest = dest.with_name(dest.name + ".pshard")
        if dest.exists() and not args.overwrite:
            print(f"[{i + 1}/{len(files)}] {dest} exists, skipped", flush=True)
            continue
        n = convert_file(src, dest, split, args.rows_per_batch, args.limit)
        total += n
        print(f"[{i + 1}/{len(files)}] {src} -> {dest}: {n} records ({split}), {dest.stat().st_size / 1e6:.1f} MB",
              flush=True)
        if args.check:
            check_shard(src, dest, split, args.limit)
            print(f"    checked: {dest} matches {src}", flush=True)
    print(f"{total} records written", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
