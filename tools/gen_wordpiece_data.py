#!/usr/bin/env python3
"""Generates the BERT WordPiece tokenizer's Unicode table and its parity fixture.

    python3 -m venv /tmp/venv-q && /tmp/venv-q/bin/pip install -r tools/requirements-scorers.txt
    /tmp/venv-q/bin/python tools/gen_wordpiece_data.py            # writes everything below
    /tmp/venv-q/bin/python tools/gen_wordpiece_data.py --check    # verifies the committed files

The reference is Hugging Face's BertTokenizerFast (transformers, on the Rust `tokenizers`): the
tokenizer ImageReward's BLIP uses ("bert-base-uncased" with "[DEC]" and "[ENC]" added as special
tokens). Its pipeline: special tokens found in the raw text; BertNormalizer(clean_text,
handle_chinese_chars, strip_accents = lowercase = True); BertPreTokenizer (split on whitespace,
isolate punctuation); WordPiece (greedy longest match, "##" continuations, words over 100
characters -> [UNK]); [CLS] ... [SEP].

BertNormalizer works character by character: cleaning drops NUL, U+FFFD and "other" characters and
turns whitespace into a space, CJK ideographs get a space on each side, accents are stripped (NFD,
then the nonspacing marks removed) and the result is lowercased, all without context (the
canonical reordering of NFD moves only marks, which are removed). So the whole normalizer is a map
from one code point to a short string, and the pre-tokenizer's classes are a set per code point.
Both are read off the reference itself for every code point (whatever Unicode versions its Rust
crates were built with) and written as ranges to include/pickscore/io/detail/bert_tables.hpp;
Hangul syllables (NFD to 2-3 jamo) are checked against the algorithmic decomposition and left to
code. The per-character assumption is checked here on every corpus string.

The fixture (tests/data/tokenizer/wordpiece/):
  vocab.txt        a WordPiece vocabulary built from the tokenizer corpus (see build_vocab; about
                   4,000 ids, alphabet limited so that [UNK] occurs), laid out like bert-base-uncased's:
                   [PAD] 0, [unused0..98], [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, then the rest.
                   The real bert-base-uncased vocab.txt (30,522 ids) is not redistributed here;
                   the algorithm does not depend on it.
  expected.jsonl.gz  one line per string: {"i": line of tests/data/tokenizer/corpus.jsonl.gz} or
                   {"s": text} for the extra BERT cases below, with "ids": BertTokenizerFast's full
                   encoding (no truncation) with [DEC]/[ENC] added after the vocabulary like BLIP's
                   init_tokenizer; "slow": the slow BertTokenizer's ids where they differ.
  tokenizer.json   the same tokenizer saved by `tokenizers` (the other file format a model may ship).
  differences.md   where the slow BertTokenizer (what ImageReward calls) differs from the fast one.
Truncation is checked here too: for every string, the call ImageReward makes (padding="max_length",
truncation=True, max_length=35) equals the first 34 ids of the full encoding + [SEP], padded with 0.
"""
import argparse
import collections
import gzip
import io
import json
import os
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "data", "tokenizer", "corpus.jsonl.gz")
OUT_DIR = os.path.join(ROOT, "tests", "data", "tokenizer", "wordpiece")
HEADER = os.path.join(ROOT, "include", "pickscore", "io", "detail", "bert_tables.hpp")
PINNED = {"tokenizers": "0.22.2", "transformers": "4.57.6"}
MAXCP = 0x110000
MAX_LENGTH = 35

EXTRA = [
    "[CLS] hello [SEP]", "[cls] hello [sep]", "x[MASK]y", "[MASK][MASK]", "[UNK]", "[ENC] a cat", "[DEC]",
    "[enc]", "a [PAD] b", "[CLS", "CLS]", "[ CLS ]",
    "Café déjà vu naïve façade Ångström Øresund İstanbul ΣΊΣΥΦΟΣ ﬁne ﬂow",
    "北京欢迎你 東京タワー 서울특별시 漢字かな混じり文",
    "हिन्दी भाषा का विकास ক্রিকেট தமிழ் ภาษาไทย",
    "tab\there\nnewline\r\ncarriage\u00a0nbsp\u2003emsp\u200bzwsp\u200dzwj\ufeffbom",
    "ctrl\x00nul\x07bel\x1fus\x7fdel\u0085nel\ue000pua\U000f0000pua",
    "ﬀ ﬃ ㎏ ① Ⅻ ½ ² ℃ ™ Ω Å K",
    "a" * 100, "b" * 101, "élan" + "é" * 97, "x" * 99 + "é", "antidisestablishmentarianism " * 3,
    "hyper-realistic, 8k; (masterpiece:1.2) [detailed] {art} <lora:x> --ar 16:9 --v 5.2 #art @user $5 100%",
    "don't you'll I'm they're rock'n'roll “quoted” ‘single’ «guillemets» — dash – en … ellipsis",
    "emoji 😀🎨🖌️👩‍🎨 flags 🇯🇵 keycap 1️⃣",
    "", " ", "\t\n", "?", "...", "a",
    "a photo of an astronaut riding a horse on the moon, highly detailed, trending on artstation, " * 2,
]


def versions():
    import importlib.metadata as md
    got = {k: md.version(k) for k in PINNED}
    for k, v in PINNED.items():
        if got[k] != v:
            print(f"warning: {k} {got[k]} is not the pinned {v}; the tables may differ", file=sys.stderr)
    return got


def cps():
    for cp in range(MAXCP):
        if not 0xD800 <= cp < 0xE000:
            yield cp


def ranges(members):
    out = []
    for cp in sorted(members):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def hangul_nfd(cp):
    s = cp - 0xAC00
    l, v, t = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, 0x11A7 + s % 28
    return chr(l) + chr(v) + (chr(t) if t != 0x11A7 else "")


def read_tables():
    from tokenizers import normalizers, pre_tokenizers
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    removed, space, cjk, mapped = [], [], [], {}
    for cp in cps():
        c = chr(cp)
        r = norm.normalize_str(c)
        if r == c:
            continue
        if r == "":
            removed.append(cp)
        elif r == " ":
            space.append(cp)
        elif r == " " + c + " ":
            cjk.append(cp)
        elif 0xAC00 <= cp < 0xD7A4:
            assert r == hangul_nfd(cp), f"Hangul U+{cp:04X}: {r!r}"
        else:
            mapped[cp] = r
    assert max(len(r) for r in mapped.values()) <= 3
    punct, ws = [], []
    for cp in cps():
        c = chr(cp)
        toks = [t for t, _ in pre.pre_tokenize_str("a" + c + "b")]
        if toks == ["a", c, "b"]:
            punct.append(cp)
        elif toks == ["a", "b"]:
            ws.append(cp)
        else:
            assert toks == ["a" + c + "b"], f"U+{cp:04X}: {toks}"
    # After the normalizer only U+0020 of the pre-tokenizer's whitespace can be left.
    for cp in ws:
        if cp != 0x20:
            r = norm.normalize_str(chr(cp))
            assert r in ("", " "), f"whitespace U+{cp:04X} survives the normalizer as {r!r}"
    return dict(removed=removed, space=space, cjk=cjk, mapped=mapped, punct=punct)


def write_header(t, vers, path, check):
    lines = []
    w = lines.append
    w("// GENERATED by tools/gen_wordpiece_data.py -- do not edit by hand.")
    w("// The BERT normalizer and pre-tokenizer of Hugging Face tokenizers "
      f"{vers['tokenizers']} (BertTokenizerFast,")
    w("// transformers " + vers["transformers"] + "), read off the reference code point by code point:")
    w("//   BertNormalizer(clean_text, handle_chinese_chars, strip_accents, lowercase) maps each code point")
    w("//   to a string: removed (\"\"), a space, \" c \" (CJK), a mapped string of 1-3 code points, or")
    w("//   itself (everything not listed; Hangul syllables decompose to jamo, done in code);")
    w("//   BertPreTokenizer isolates the punctuation code points (whitespace is only U+0020 by then).")
    w("// Sets are sorted inclusive ranges; each table is a function-local static (no globals).")
    w("#pragma once")
    w("")
    w("#include <cstdint>")
    w("#include <span>")
    w("")
    w("namespace pickscore::io::bert_data {")
    w("")
    w("struct Range { char32_t lo, hi; };")
    w("// cp -> out[0..n).")
    w("struct Mapping { char32_t cp; char32_t out[3]; std::uint8_t n; };")
    w("")

    def emit_ranges(name, members, what):
        rs = ranges(members)
        w(f"// {what} ({len(members)} code points, {len(rs)} ranges)")
        w(f"inline std::span<const Range> {name}() {{")
        w("    static constexpr Range t[] = {")
        row = []
        for lo, hi in rs:
            row.append(f"{{0x{lo:X}, 0x{hi:X}}}")
            if len(row) == 6:
                w("        " + ", ".join(row) + ",")
                row = []
        if row:
            w("        " + ", ".join(row) + ",")
        w("    };")
        w("    return t;")
        w("}")
        w("")

    emit_ranges("removed", t["removed"], "normalized to nothing: NUL, U+FFFD, control/format/private-use, marks")
    emit_ranges("spaces", t["space"], "normalized to one space (whitespace)")
    emit_ranges("cjk", t["cjk"], "CJK ideographs: a space before and after")
    emit_ranges("punctuation", t["punct"], "isolated by BertPreTokenizer (ASCII punctuation and Unicode P*)")
    items = sorted(t["mapped"].items())
    w(f"// other mappings: accents stripped, lowercase, CJK compatibility ideographs ({len(items)} code points)")
    w("inline std::span<const Mapping> mapped() {")
    w("    static constexpr Mapping t[] = {")
    row = []
    for cp, r in items:
        o = [f"0x{ord(ch):X}" for ch in r] + ["0"] * (3 - len(r))
        row.append(f"{{0x{cp:X}, {{{', '.join(o)}}}, {len(r)}}}")
        if len(row) == 3:
            w("        " + ", ".join(row) + ",")
            row = []
    if row:
        w("        " + ", ".join(row) + ",")
    w("    };")
    w("    return t;")
    w("}")
    w("")
    w("}  // namespace pickscore::io::bert_data")
    text = "\n".join(lines) + "\n"
    return emit(path, text, check)


def emit(path, text, check):
    data = text.encode() if isinstance(text, str) else text
    if check:
        with open(path, "rb") as f:
            same = f.read() == data
        print(("ok      " if same else "DIFFERS ") + os.path.relpath(path, ROOT))
        return same
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    print("wrote   " + os.path.relpath(path, ROOT))
    return True


def load_corpus():
    out = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            out.append(bytes.fromhex(rec["b"]).decode("utf-8", errors="replace") if "b" in rec else rec["s"])
    return out


def build_vocab(texts):
    """A ~4,000-id WordPiece vocabulary in bert-base-uncased's layout, built deterministically from
    the corpus (the `tokenizers` trainer breaks ties in hash-map order, so it is not reproducible):
    the 300 most frequent characters (so rarer ones give [UNK]) alone and as "##" continuations,
    the 1,500 most frequent words, and the most frequent 2-5 character word beginnings (600) and
    "##" endings (1,500); frequency ties by code point order."""
    from tokenizers import normalizers, pre_tokenizers
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words = collections.Counter()
    for t in texts:
        for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)):
            words[w] += 1
    chars = collections.Counter()
    for w, n in words.items():
        for c in w:
            chars[c] += n

    def top(counter, k):
        return [x for x, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]

    alphabet = top(chars, 300)
    common = top(words, 1500)
    starts, ends = collections.Counter(), collections.Counter()
    for w in top(words, 4000):
        for k in range(2, 6):
            if len(w) > k:
                starts[w[:k]] += words[w]
                ends["##" + w[-k:]] += words[w]
    rest = []
    seen = set(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    for t in alphabet + ["##" + c for c in alphabet] + common + top(starts, 600) + top(ends, 1500):
        if t not in seen:
            seen.add(t)
            rest.append(t)
    return ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + rest


def reference_tokenizers(vocab_path):
    from transformers import BertTokenizer, BertTokenizerFast
    out = []
    for cls in (BertTokenizerFast, BertTokenizer):
        t = cls(vocab_file=vocab_path, do_lower_case=True)
        # BLIP's init_tokenizer (ImageReward/models/BLIP/blip.py), on a local vocabulary.
        t.add_special_tokens({"bos_token": "[DEC]"})
        t.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        out.append(t)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="verify the committed files; write nothing")
    args = ap.parse_args()
    vers = versions()
    ok = True

    tables = read_tables()
    ok &= write_header(tables, vers, HEADER, args.check)

    corpus = load_corpus()
    # The per-character assumption, on every corpus string.
    from tokenizers import normalizers
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    for s in corpus + EXTRA:
        whole = norm.normalize_str(s)
        parts = "".join(norm.normalize_str(c) for c in s)
        assert whole == parts, f"BertNormalizer is not per-character on {s!r}"

    vocab_path = os.path.join(OUT_DIR, "vocab.txt")
    if args.check:
        with open(vocab_path, encoding="utf-8") as f:
            vocab = f.read().split("\n")[:-1]
    else:
        vocab = build_vocab(corpus)
        ok &= emit(vocab_path, "".join(v + "\n" for v in vocab), False)
    fast, slow = reference_tokenizers(vocab_path)
    assert fast.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [len(vocab), len(vocab) + 1]
    # The same tokenizer as Hugging Face's tokenizer.json (what a model folder may hold instead).
    tok_json = json.dumps(json.loads(fast.backend_tokenizer.to_str()), ensure_ascii=False, indent=1, sort_keys=True)
    ok &= emit(os.path.join(OUT_DIR, "tokenizer.json"), tok_json + "\n", args.check)

    records, diffs = [], collections.Counter()
    diff_lines = []
    cases = [("i", i, s) for i, s in enumerate(corpus)] + [("s", s, s) for s in EXTRA]
    unk = fast.convert_tokens_to_ids("[UNK]")
    n_unk = 0
    for key, val, s in cases:
        ids = fast(s, add_special_tokens=True)["input_ids"]
        n_unk += unk in ids
        padded = fast(s, padding="max_length", truncation=True, max_length=MAX_LENGTH)
        want = (ids[:MAX_LENGTH - 1] + [ids[-1]]) if len(ids) > MAX_LENGTH else ids
        want = want + [0] * (MAX_LENGTH - len(want))
        assert padded["input_ids"] == want, f"truncation rule broken on {s!r}"
        assert padded["attention_mask"] == [1] * min(len(ids), MAX_LENGTH) + [0] * (MAX_LENGTH - min(len(ids), MAX_LENGTH))
        rec = {key: val, "ids": ids}
        sids = slow(s, add_special_tokens=True)["input_ids"]
        if sids != ids:
            rec["slow"] = sids
            reason = classify(s)
            diffs[reason] += 1
            diff_lines.append((reason, s))
        records.append(rec)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
        for r in records:
            g.write((json.dumps(r, ensure_ascii=True, sort_keys=True) + "\n").encode())
    ok &= emit(os.path.join(OUT_DIR, "expected.jsonl.gz"), buf.getvalue(), args.check)

    md = ["# Where the slow BertTokenizer differs from BertTokenizerFast", "",
          f"Generated by tools/gen_wordpiece_data.py (transformers {vers['transformers']}, tokenizers "
          f"{vers['tokenizers']}, Python {sys.version.split()[0]} with Unicode {unicodedata.unidata_version}), "
          f"on the {len(corpus)} corpus strings and {len(EXTRA)} extra cases with the vocabulary in this folder.",
          "pickscore's WordPiece tokenizer matches BertTokenizerFast on every string; ImageReward itself calls the",
          "slow BertTokenizer, which differs on these (unusual) strings:", "",
          "| reason | strings |", "|---|---|"]
    for reason, n in diffs.most_common():
        md.append(f"| {reason} | {n} |")
    md += ["", f"{len(diff_lines)} of {len(cases)} strings differ; {n_unk} encodings contain [UNK].", "", "Strings:", ""]
    for reason, s in diff_lines:
        md.append(f"- `{json.dumps(s, ensure_ascii=True)[1:-1].replace('`', chr(92) + 'x60')}`: {reason}")
    ok &= emit(os.path.join(OUT_DIR, "differences.md"), "\n".join(md) + "\n", args.check)
    print(f"{len(cases)} strings, {len(diff_lines)} differ slow vs fast, {n_unk} with [UNK]")
    return 0 if ok else 1


def classify(s):
    """Why the slow tokenizer may differ (a best guess from the characters present)."""
    cats = {unicodedata.category(c) for c in s}
    if any(unicodedata.category(c) == "Mc" for c in s):
        return "spacing marks (Mc): the fast normalizer strips some, the slow one keeps them"
    if any(unicodedata.category(c) in ("Cn",) for c in s):
        return "unassigned code points (Python's Unicode 14.0 vs the Rust tables)"
    if unicodedata.normalize("NFC", s) != s:
        return "the slow tokenizer applies NFC first"
    if "Mn" in cats or "Me" in cats:
        return "combining marks (Unicode version of the mark tables)"
    if any(c in s for c in "\u03a3\u0130"):
        return "lowercase (final sigma / dotted I)"
    return "other (Unicode versions of the category tables)"


if __name__ == "__main__":
    sys.exit(main())
