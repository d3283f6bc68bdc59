#!/usr/bin/env python3
"""pickscore's tokenizer against Hugging Face's Rust tokenizer, one core each, same corpus, same run.

    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build --target bench_tokenizer
    /tmp/venv-tok/bin/python tools/bench_tokenizer.py --binary build/benchmarks/bench_tokenizer

The corpus is tests/data/tokenizer/corpus.jsonl.gz (its valid-UTF-8 strings). Hugging Face side:
transformers' CLIPTokenizer (tokenizers 0.23.3) built from the same vocabulary, its Rust backend
called through encode_batch (the fastest way to drive it from Python: one call per pass, the loop
in Rust) with RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false, so it runs on one core like
our benchmark (which sets pickscore's thread count to 1). Both sides are timed after a warm-up
pass (both keep a word cache) and report the median of --repeats passes, in CPU time (process
time for Python, Google Benchmark's cpu_time for ours: robust when the machine is loaded) and in
wall time. Prints strings/s and tokens/s of each and the ratios ours / Hugging Face.
"""
import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def load_corpus(path):
    texts = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                if "s" in rec:
                    texts.append(rec["s"])
    return texts


def time_hf(backend, texts, repeats, truncate):
    backend.no_padding()
    if truncate:
        backend.enable_truncation(77)
        backend.enable_padding(length=77, pad_id=49407, pad_token="<|endoftext|>")
        add_special = True
    else:
        backend.no_truncation()
        add_special = False
    backend.encode_batch(texts, add_special_tokens=add_special)  # warm-up (fills the cache)
    wall, cpu, tokens = [], [], 0
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()  # process time: all threads of the process
        enc = backend.encode_batch(texts, add_special_tokens=add_special)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        tokens = sum(len(e.ids) for e in enc)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu), "tokens": tokens,
            "spread": (min(wall), max(wall))}


def run_ours(binary, repeats):
    out = subprocess.run([binary, "--benchmark_format=json", f"--benchmark_repetitions={repeats}",
                          "--benchmark_report_aggregates_only=true", "--benchmark_min_time=0.5"],
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
            # per pass over the corpus; tokens per pass from the counters (rates are per CPU second)
            res[b["run_name"]] = {"wall": b["real_time"] * scale, "cpu": b["cpu_time"] * scale,
                                  "tokens": b["tokens/s"] * b["cpu_time"] * scale}
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "benchmarks", "bench_tokenizer"))
    ap.add_argument("--corpus", default=os.path.join(ROOT, "tests", "data", "tokenizer", "corpus.jsonl.gz"))
    ap.add_argument("--vocab", default=os.path.join(ROOT, "..", "shared", "data", "bpe_simple_vocab_16e6.txt.gz"))
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    import tokenizers
    from gen_tokenizer_corpus import derive_vocab, hf_tokenizer
    texts = load_corpus(args.corpus)
    vocab, merges, _ = derive_vocab(args.vocab)
    backend = hf_tokenizer(vocab, merges).backend_tokenizer
    print(f"corpus: {len(texts)} strings; tokenizers {tokenizers.__version__}, RAYON_NUM_THREADS=1")

    # Interleave the two sides so that both see the same machine load.
    hf_full = time_hf(backend, texts, args.repeats, truncate=False)
    ours = run_ours(args.binary, args.repeats)
    hf_77 = time_hf(backend, texts, args.repeats, truncate=True)

    n = len(texts)

    def line(name, r):
        return (f"{name:<34} CPU {n / r['cpu'] / 1e3:8.1f} k strings/s {r['tokens'] / r['cpu'] / 1e6:6.2f} M tokens/s"
                f" | wall {n / r['wall'] / 1e3:8.1f} k strings/s")

    for key, hf, label in [("BM_encode/hf", hf_full, "full ids, no truncation"),
                           ("BM_tokenize77/hf", hf_77, "77 ids, framed, padded")]:
        o = ours[key]
        print(f"-- {label}")
        print(line("Hugging Face tokenizers (Rust)", hf))
        print(line("pickscore " + key, o))
        print(f"   ratio pickscore / Hugging Face: {hf['cpu'] / o['cpu']:.1f}x in CPU time, "
              f"{hf['wall'] / o['wall']:.1f}x in wall time")
    for key in ("BM_encode/openclip", "BM_encode_cold"):
        if key in ours:
            print(line("pickscore " + key, ours[key]))

if __name__ == "__main__":
    main()
