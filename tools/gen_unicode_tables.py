#!/usr/bin/env python3
"""Generates the Unicode and text-fixing tables of the CLIP tokenizer (include/pickscore/io/detail/).

    python3 -m venv /tmp/venv-tok && /tmp/venv-tok/bin/pip install -r tools/requirements-tokenizer.txt
    /tmp/venv-tok/bin/pip install --no-deps open_clip_torch==3.3.0
    /tmp/venv-tok/bin/python tools/gen_unicode_tables.py          # writes both headers
    /tmp/venv-tok/bin/python tools/gen_unicode_tables.py --check  # only verifies, writes nothing

Two references, each with its own Unicode versions (found by comparing the references with the
Unicode Character Database of several versions, code point by code point):

Hugging Face `tokenizers` 0.23.3 (the Rust library behind CLIPTokenizer(Fast)):
  * NFC: the `unicode-normalization-alignments` crate, whose tables are Unicode 9.0 (its NFD and
    combining classes equal Python 3.6's unicodedata 9.0.0 on every code point). Python 3.11 has
    14.0; by Unicode's normalization stability policy the 9.0 data are the 14.0 data restricted to
    the characters that existed in 9.0. No PyPI package gives the age of a character, so which
    characters the crate knows is read off the crate itself (its NFD of each code point).
  * \\p{L}, \\p{N}, \\s in the Split regex and the Replace(\\s+) normalizer: Oniguruma (onig_sys),
    Unicode 16.0: the categories come from `unicodedata2==16.0.0` and are verified against
    tokenizers' regex on every code point.
  * Lowercase: Rust's `char::to_lowercase` (full mapping, no context: Σ is always σ, İ is
    "i̇"), Unicode 17.0 in the Rust that built the wheel. No PyPI package carries 17.0 case
    mappings, so the table is read off the Lowercase normalizer itself, and checked against
    Python's str.lower (14.0) on every character both know.
open_clip 3.3.0 (SimpleTokenizer: ftfy.fix_text, html.unescape twice, str.split/strip, str.lower,
then the `regex` module with IGNORECASE):
  * NFC (inside ftfy), lowercase (with the Final_Sigma rule), Cased/Case_Ignorable, isspace:
    Python 3.11's own Unicode 14.0.
  * \\p{L}, \\p{N}: the `regex` module 2026.11.19, Unicode 18.0 (read off the module).
  * ftfy 6.3.1's tables (HTML entities incl. its upper-case variants, control characters,
    ligatures, character widths) and Python's html.entities.html5 and invalid-charref tables.
"""
import argparse
import html
import html.entities
import os
import sys
import unicodedata

import regex
import tokenizers
import unicodedata2
from tokenizers import Regex, normalizers, pre_tokenizers

import ftfy
from ftfy import chardata

EXPECT = {"tokenizers": "0.23.3", "regex": "2026.11.19", "unicodedata2": "16.0.0", "ftfy": "6.3.1"}
MAXCP = 0x110000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def case_ranges(mapping):
    """Single-code-point mappings as (lo, hi, delta, stride): c in [lo,hi], (c-lo)%stride==0."""
    items = sorted((c, m - c) for c, m in mapping.items())
    out = []
    for c, d in items:
        if out:
            lo, hi, dd, st = out[-1]
            if dd == d and ((st in (0, 1) and c == hi + 1) or (st in (0, 2) and c == hi + 2)):
                out[-1] = [lo, c, d, c - hi]
                continue
        out.append([c, c, d, 0])
    return [[lo, hi, d, st or 1] for lo, hi, d, st in out]


def octal(s):
    b = s.encode("utf-8")
    return "".join(chr(x) if 0x20 <= x < 0x7F and chr(x) not in '"\\?' else "\\%03o" % x for x in b)


def probe_hf():
    """What tokenizers' own normalizers and regex do, for every code point."""
    nfd, low = normalizers.NFD(), normalizers.Lowercase()
    space = normalizers.Replace(Regex(r"\s+"), " ")
    letter = pre_tokenizers.Split(Regex(r"\p{L}"), behavior="removed")
    number = pre_tokenizers.Split(Regex(r"\p{N}"), behavior="removed")
    out = {"nfd": {}, "lower": {}, "space": set(), "L": set(), "N": set()}
    for cp in cps():
        c = chr(cp)
        d = nfd.normalize_str(c)
        if d != c:
            out["nfd"][cp] = d
        lc = low.normalize_str(c)
        if lc != c:
            out["lower"][cp] = lc
        if space.normalize_str(c) == " ":
            out["space"].add(cp)
        if len(letter.pre_tokenize_str("!" + c + "!")) == 2:
            out["L"].add(cp)
        if len(number.pre_tokenize_str("!" + c + "!")) == 2:
            out["N"].add(cp)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="verify only, write nothing")
    args = ap.parse_args()
    got = {"tokenizers": tokenizers.__version__, "regex": regex.__version__,
           "unicodedata2": unicodedata2.unidata_version, "ftfy": ftfy.__version__}
    for k, v in EXPECT.items():
        if got[k] != v:
            sys.exit(f"{k} {got[k]} installed, {v} expected (tools/requirements-tokenizer.txt)")
    if sys.version_info[:2] != (3, 11):
        sys.exit("run with Python 3.11 (its unicodedata is the 14.0 that open_clip sees)")
    assert unicodedata.unidata_version == "14.0.0"
    assert unicodedata2.unidata_version == "16.0.0"

    hf = probe_hf()
    problems = []

    # --- HF: letters and numbers are Unicode 16.0 categories.
    hf_L = {cp for cp in cps() if unicodedata2.category(chr(cp))[0] == "L"}
    hf_N = {cp for cp in cps() if unicodedata2.category(chr(cp))[0] == "N"}
    if hf_L != hf["L"] or hf_N != hf["N"]:
        problems.append("tokenizers' \\p{L}/\\p{N} are not Unicode 16.0's")
    white_space = {0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                   0x2028, 0x2029, 0x202F, 0x205F, 0x3000}
    if hf["space"] != white_space:
        problems.append("tokenizers' \\s is not White_Space")

    # --- HF lowercase: read off the normalizer; single code points except U+0130.
    hf_lower_multi = {cp: s for cp, s in hf["lower"].items() if len(s) != 1}
    if hf_lower_multi != {0x130: "i\u0307"}:
        problems.append(f"unexpected multi-code-point lowercase in tokenizers: {hf_lower_multi}")
    hf_lower = {cp: ord(s) for cp, s in hf["lower"].items() if len(s) == 1}
    for cp in cps():
        if unicodedata.category(chr(cp)) != "Cn":
            py = chr(cp).lower()
            if py != hf["lower"].get(cp, chr(cp)):
                problems.append(f"lowercase of U+{cp:04X} differs between Rust and Python 14.0")

    # --- open_clip (Python 3.11 + regex)
    # open_clip's pattern is compiled with IGNORECASE: probe its character classes as written.
    ic = regex.IGNORECASE
    oc_L = {cp for cp in cps() if regex.fullmatch(r"[\p{L}]", chr(cp), ic)}
    oc_N = {cp for cp in cps() if regex.fullmatch(r"[\p{N}]", chr(cp), ic)}
    oc_other = {cp for cp in cps() if regex.fullmatch(r"[^\s\p{L}\p{N}]", chr(cp), ic)}
    oc_regex_space = {cp for cp in cps() if regex.match(r"\s", chr(cp))}
    # Characters no alternative matches (findall skips them like spaces): \s, and U+0345, which
    # caselessly is neither outside [\s\p{L}\p{N}] (its case partner Ι is a letter) nor in [\p{L}].
    oc_skip = {cp for cp in cps() if cp not in oc_L and cp not in oc_N and cp not in oc_other}
    if oc_skip != oc_regex_space | {0x345} or oc_L & oc_N:
        problems.append("open_clip's pattern classes are not what the tokenizer assumes")
    for ch in "strevmldaofxn_<>":
        folds = {cp for cp in cps() if regex.fullmatch(regex.escape(ch), chr(cp), ic)}
        if folds - {ord(ch), ord(ch.upper())} - ({0x17F} if ch == "s" else set()):
            problems.append(f"unexpected caseless matches of {ch!r} in open_clip's pattern")
    py_space = {cp for cp in cps() if chr(cp).isspace()}
    if not oc_regex_space <= py_space:
        problems.append("regex's \\s has characters str.split() keeps")
    oc_lower_multi, oc_lower = {}, {}
    for cp in cps():
        if cp == 0x3A3:
            continue  # capital sigma: context dependent, handled in code
        s = chr(cp).lower()
        if s != chr(cp):
            (oc_lower if len(s) == 1 else oc_lower_multi)[cp] = ord(s) if len(s) == 1 else s
    if oc_lower_multi != {0x130: "i\u0307"}:
        problems.append(f"unexpected multi-code-point lowercase in Python: {oc_lower_multi}")
    # Final_Sigma: Python skips Case_Ignorable characters and then asks Cased.
    ignorable, cased = set(), set()
    for cp in cps():
        c = chr(cp)
        if ("A" + c + "\u03a3").lower()[-1] == "\u03c2" and (c + "\u03a3").lower()[-1] != "\u03c2":
            ignorable.add(cp)
        elif (c + "\u03a3").lower()[-1] == "\u03c2":
            cased.add(cp)

    # --- normalization: 14.0 decompositions; which of them the HF crate (9.0) knows.
    hf_nfd = hf["nfd"]
    decomp = []  # (cp, first, second, flags)
    for cp in cps():
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert len(parts) in (1, 2)
        flags = 0
        if cp in hf_nfd:
            flags |= 1
        if len(parts) == 2 and unicodedata.normalize("NFC", chr(cp)) == chr(cp):
            flags |= 2
        decomp.append((cp, parts[0], parts[1] if len(parts) == 2 else 0, flags))
    hangul = set(range(0xAC00, 0xD7A4))
    known = {cp for cp, _, _, f in decomp if f & 1} | hangul
    if set(hf_nfd) != known:
        problems.append("tokenizers decomposes characters that Python 14.0 does not")
    ccc = {cp: unicodedata.combining(chr(cp)) for cp in cps() if unicodedata.combining(chr(cp))}
    # Which combining classes the crate knows: a mark reorders against U+0334 (ccc 1) or U+0345 (240).
    nfd = normalizers.NFD()

    def hf_nonzero(c):
        return (nfd.normalize_str("a" + c + "\u0334") != "a" + c + "\u0334" or
                nfd.normalize_str("a\u0345" + c) != "a\u0345" + c)
    hf_ccc = {cp for cp in ccc if hf_nonzero(chr(cp))}
    # A decomposed table is only right if our NFD of every character equals the reference's.
    dmap = {cp: (a, b) for cp, a, b, f in decomp}

    def full_decomp(cp, hf_mode):
        if 0xAC00 <= cp < 0xD7A4:
            return list(unicodedata.normalize("NFD", chr(cp)))
        e = dmap.get(cp)
        if e is None or (hf_mode and cp not in known):
            return [chr(cp)]
        out = full_decomp(e[0], hf_mode)
        if e[1]:
            out += full_decomp(e[1], hf_mode)
        return out

    def reorder(chars, cls):
        chars = list(chars)
        i = 0
        while i < len(chars):
            if cls(chars[i]) == 0:
                i += 1
                continue
            j = i
            while j < len(chars) and cls(chars[j]) != 0:
                j += 1
            chars[i:j] = sorted(chars[i:j], key=cls)
            i = j
        return "".join(chars)

    hf_cls = lambda c: ccc.get(ord(c), 0) if ord(c) in hf_ccc else 0  # noqa: E731
    py_cls = lambda c: ccc.get(ord(c), 0)  # noqa: E731
    for cp in cps():
        if reorder(full_decomp(cp, True), hf_cls) != hf_nfd.get(cp, chr(cp)):
            problems.append(f"HF NFD of U+{cp:04X}")
        if reorder(full_decomp(cp, False), py_cls) != unicodedata.normalize("NFD", chr(cp)):
            problems.append(f"Python NFD of U+{cp:04X}")
    if problems:
        sys.exit("verification failed:\n  " + "\n  ".join(problems[:50]))
    print("verified: tables equal both references on every code point")
    if args.check:
        return

    w = []
    w.append("// GENERATED by tools/gen_unicode_tables.py -- do not edit by hand.\n")
    w.append("// Unicode data of the CLIP tokenizer's two cleaning modes (see the generator's docstring):\n")
    w.append("//   hf_*: Hugging Face tokenizers 0.23.3 -- normalization Unicode 9.0, \\p{L}/\\p{N}/\\s 16.0,\n")
    w.append("//         lowercase 17.0 (Rust char::to_lowercase);\n")
    w.append("//   oc_*: open_clip 3.3.0 on Python 3.11 -- normalization, case and isspace 14.0,\n")
    w.append("//         \\p{L}/\\p{N} of the regex module 2026.11.19 (Unicode 18.0).\n")
    w.append("// Sets are sorted inclusive ranges; each table is a function-local static (no globals).\n")
    w.append("#pragma once\n\n#include <cstdint>\n#include <span>\n\n")
    w.append("namespace pickscore::io::unicode_data {\n\n")
    w.append("struct Range { char32_t lo, hi; };\n")
    w.append("// lower(c) = c + delta for c in [lo, hi] with (c - lo) % stride == 0.\n")
    w.append("struct CaseRange { char32_t lo, hi; std::int32_t delta; std::uint8_t stride; };\n")
    w.append("// One canonical decomposition step: cp -> first (+ second). flags: 1 = the HF crate (9.0)\n")
    w.append("// knows it, 2 = primary composite (NFC composes first + second back into cp).\n")
    w.append("struct Decomposition { char32_t cp, first, second; std::uint8_t flags; };\n")
    w.append("// Canonical combining class; hf = 0 when the HF crate (9.0) does not know the character.\n")
    w.append("struct CombiningClass { char32_t lo, hi; std::uint8_t ccc, hf; };\n\n")

    def emit_ranges(name, members, comment):
        rs = ranges(members)
        w.append(f"// {comment} ({len(members)} code points, {len(rs)} ranges)\n")
        w.append(f"inline std::span<const Range> {name}() {{\n    static constexpr Range t[] = {{")
        for i, (lo, hi) in enumerate(rs):
            w.append(("\n        " if i % 6 == 0 else " ") + f"{{0x{lo:X}, 0x{hi:X}}},")
        w.append("\n    };\n    return t;\n}\n\n")

    def emit_case(name, mapping, comment):
        rs = case_ranges(mapping)
        w.append(f"// {comment} ({len(mapping)} mappings, {len(rs)} ranges)\n")
        w.append(f"inline std::span<const CaseRange> {name}() {{\n    static constexpr CaseRange t[] = {{")
        for i, (lo, hi, d, st) in enumerate(rs):
            w.append(("\n        " if i % 4 == 0 else " ") + f"{{0x{lo:X}, 0x{hi:X}, {d}, {st}}},")
        w.append("\n    };\n    return t;\n}\n\n")

    emit_ranges("hf_letter", hf_L, "\\p{L}, Unicode 16.0 (Oniguruma in tokenizers)")
    emit_ranges("hf_number", hf_N, "\\p{N}, Unicode 16.0")
    emit_ranges("hf_space", white_space, "\\s = White_Space")
    emit_case("hf_lower", hf_lower, "Rust char::to_lowercase, Unicode 17.0, single code points (U+0130 in code)")
    emit_ranges("oc_letter", oc_L, "[\\p{L}] of the regex module (IGNORECASE), Unicode 18.0")
    emit_ranges("oc_number", oc_N, "[\\p{N}] of the regex module (IGNORECASE), Unicode 18.0")
    emit_ranges("oc_split_skip", oc_skip, "what open_clip's split pattern never matches: regex's \\s and U+0345")
    emit_ranges("oc_space", py_space, "Python str.isspace (str.split, str.strip), Unicode 14.0")
    emit_case("oc_lower", oc_lower, "Python str.lower, Unicode 14.0 (U+0130 and final sigma in code)")
    emit_ranges("oc_decimal", {cp for cp in cps() if unicodedata.category(chr(cp)) == "Nd"},
                "Python re's \\d (category Nd), Unicode 14.0 (ftfy's terminal-escape pattern)")
    emit_ranges("oc_cased", cased, "Cased and not Case_Ignorable, Unicode 14.0 (Final_Sigma rule)")
    emit_ranges("oc_case_ignorable", ignorable, "Case_Ignorable, Unicode 14.0 (Final_Sigma rule)")

    w.append(f"// Canonical decompositions, Unicode 14.0 ({len(decomp)} entries; Hangul syllables in code)\n")
    w.append("inline std::span<const Decomposition> decompositions() {\n    static constexpr Decomposition t[] = {")
    for i, (cp, a, b, f) in enumerate(decomp):
        w.append(("\n        " if i % 4 == 0 else " ") + f"{{0x{cp:X}, 0x{a:X}, 0x{b:X}, {f}}},")
    w.append("\n    };\n    return t;\n}\n\n")
    cr = []
    for cp in sorted(ccc):
        v, h = ccc[cp], int(cp in hf_ccc)
        if cr and cr[-1][1] == cp - 1 and cr[-1][2] == v and cr[-1][3] == h:
            cr[-1][1] = cp
        else:
            cr.append([cp, cp, v, h])
    w.append(f"// Canonical combining classes, Unicode 14.0 ({len(ccc)} code points, {len(cr)} ranges)\n")
    w.append("inline std::span<const CombiningClass> combining_classes() {\n"
             "    static constexpr CombiningClass t[] = {")
    for i, (lo, hi, v, h) in enumerate(cr):
        w.append(("\n        " if i % 4 == 0 else " ") + f"{{0x{lo:X}, 0x{hi:X}, {v}, {h}}},")
    w.append("\n    };\n    return t;\n}\n\n")
    w.append("}  // namespace pickscore::io::unicode_data\n")
    out = os.path.join(ROOT, "include/pickscore/io/detail/unicode_tables.hpp")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("".join(w))
    print("wrote", out, os.path.getsize(out), "bytes")

    # ---------------------------------------------------------------- ftfy and html tables
    w = []
    w.append("// GENERATED by tools/gen_unicode_tables.py -- do not edit by hand.\n")
    w.append("// Tables of open_clip's text cleaning: ftfy 6.3.1 (fix_text's table-driven fixes) and\n")
    w.append("// Python 3.11's html.unescape (html.entities.html5, invalid character references).\n")
    w.append("// Strings are UTF-8 (octal escapes).\n")
    w.append("#pragma once\n\n#include <cstdint>\n#include <span>\n\n")
    w.append("namespace pickscore::io::ftfy_data {\n\n")
    w.append("struct Entity { const char* name; const char* value; };\n")
    w.append("struct CharMap { char32_t cp; const char* value; };\n\n")
    ents = sorted(html.entities.html5.items())
    w.append(f"// html.entities.html5: name (with its ';' where it has one) -> text; sorted by name ({len(ents)})\n")
    w.append("inline std::span<const Entity> html5_entities() {\n    static constexpr Entity t[] = {")
    for k, v in ents:
        w.append(f'\n        {{"{octal(k)}", "{octal(v)}"}},')
    w.append("\n    };\n    return t;\n}\n\n")
    html5_semicolon = {"&" + k: v for k, v in html.entities.html5.items() if k.endswith(";")}
    extra = sorted((k, v) for k, v in chardata.HTML_ENTITIES.items() if k not in html5_semicolon)
    assert all(chardata.HTML_ENTITIES[k] == v for k, v in html5_semicolon.items())
    assert len(html5_semicolon) + len(extra) == len(chardata.HTML_ENTITIES)
    w.append("// ftfy's extra all-caps entities (\"&EACUTE;\" -> \"\\u00c9\"), name without '&', with ';'; sorted\n")
    w.append(f"// ({len(extra)}). ftfy also decodes every html5 name that ends in ';'.\n")
    w.append("inline std::span<const Entity> ftfy_upper_entities() {\n    static constexpr Entity t[] = {")
    for k, v in extra:
        w.append(f'\n        {{"{octal(k[1:])}", "{octal(v)}"}},')
    w.append("\n    };\n    return t;\n}\n\n")

    def emit_charmap(name, m, comment):
        w.append(f"// {comment} ({len(m)})\n")
        w.append(f"inline std::span<const CharMap> {name}() {{\n    static constexpr CharMap t[] = {{")
        for i, (cp, v) in enumerate(sorted(m.items())):
            w.append(("\n        " if i % 4 == 0 else " ") + f'{{0x{cp:X}, "{octal(v)}"}},')
        w.append("\n    };\n    return t;\n}\n\n")
    emit_charmap("ligatures", chardata.LIGATURES, "ftfy fix_latin_ligatures")
    emit_charmap("width_map", chardata.WIDTH_MAP, "ftfy fix_character_width")
    c1 = {b: bytes([b]).decode("latin-1").encode("latin-1").decode("sloppy-windows-1252")
          for b in range(0x80, 0xA0)}
    assert all(html._invalid_charrefs[b] == c1[b] for b in c1)
    emit_charmap("c1_cp1252", c1, "C1 controls read as Windows-1252 (ftfy fix_c1_controls, html charrefs)")
    ctrl = sorted(chardata.CONTROL_CHARS)
    w.append(f"// ftfy remove_control_chars ({len(ctrl)} code points)\n")
    w.append("inline std::span<const char32_t> control_chars() {\n    static constexpr char32_t t[] = {")
    for i, cp in enumerate(ctrl):
        w.append(("\n        " if i % 10 == 0 else " ") + f"0x{cp:X},")
    w.append("\n    };\n    return t;\n}\n\n")
    inv = sorted(html._invalid_codepoints)
    w.append(f"// html.unescape: numeric references to these code points give '' ({len(inv)})\n")
    w.append("inline std::span<const char32_t> html_invalid_codepoints() {\n    static constexpr char32_t t[] = {")
    for i, cp in enumerate(inv):
        w.append(("\n        " if i % 10 == 0 else " ") + f"0x{cp:X},")
    w.append("\n    };\n    return t;\n}\n\n")
    w.append("}  // namespace pickscore::io::ftfy_data\n")
    out = os.path.join(ROOT, "include/pickscore/io/detail/ftfy_tables.hpp")
    with open(out, "w") as f:
        f.write("".join(w))
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
