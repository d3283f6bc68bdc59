#!/usr/bin/env python3
"""Builds the tokenizer parity fixtures under tests/data/tokenizer/.

    python3 -m venv /tmp/venv-tok
    /tmp/venv-tok/bin/pip install -r tools/requirements-tokenizer.txt
    /tmp/venv-tok/bin/pip install --no-deps open_clip_torch==3.3.0
    /tmp/venv-tok/bin/python tools/gen_tokenizer_corpus.py [--vocab ../shared/data/bpe_simple_vocab_16e6.txt.gz]

References (versions pinned in tools/requirements-tokenizer.txt):
  hf   transformers 5.24.0 CLIPTokenizer, the tokenizers-backed class that transformers 4 called
       CLIPTokenizerFast, built from vocab.json/merges.txt derived from the .gz exactly as open_clip
       derives its vocabulary (the Hugging Face hub cannot be reached here). Called as PickScore's
       processor does: padding="max_length", truncation=True, max_length=77.
  oc   open_clip 3.3.0 SimpleTokenizer()(text). open_clip's package __init__ imports torch and the
       models; only open_clip/tokenizer.py is loaded, from the installed wheel, with a tiny numpy
       stand-in for the three torch calls it makes (zeros, tensor, long).
  ocx  the same open_clip tokenizer with ftfy.fix_text(..., fix_encoding=False): what pickscore's
       openclip mode implements (it leaves out ftfy's mojibake repair). Stored only where it differs.

Output:
  corpus.jsonl.gz        one JSON object per line: {"s": text} or {"b": hex bytes (invalid UTF-8,
                         given to the references as bytes.decode("utf-8", "replace"))}, "hf": the
                         framed ids up to and including the first 49407 (padding left out),
                         "oc"/"ocx" when they differ from "hf"/"oc", "hf_full": untruncated ids of
                         long texts, "cat": the corpus section.
  small/                 a 2,000-merge vocabulary in all three formats (bpe .gz, vocab.json +
                         merges.txt, tokenizer.json written by tokenizers itself) and small.jsonl
                         with the hf ids that vocabulary gives.
  reference_differences.md  every string where hf and oc differ, with the reason.
"""
import argparse
import gzip
import html
import importlib.util
import io
import json
import os
import random
import sys
import types
import unicodedata
import warnings

import numpy as np

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")


# ----------------------------------------------------------------------------- references

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def derive_vocab(gz_path, num_merges=48894):
    lines = gzip.open(gz_path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:num_merges + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {v: i for i, v in enumerate(vocab)}, merges, lines[0]


def hf_tokenizer(vocab, merges):
    from transformers import CLIPTokenizer
    return CLIPTokenizer(vocab=vocab, merges=list(merges))


def load_open_clip_tokenizer():
    torch = types.ModuleType("torch")
    torch.long = np.int64
    torch.LongTensor = np.ndarray
    torch.Tensor = np.ndarray
    torch.zeros = lambda *shape, dtype=None: np.zeros(shape, dtype=dtype or np.float32)
    torch.tensor = lambda x, dtype=None: np.asarray(x, dtype=dtype)
    sys.modules.setdefault("torch", torch)
    spec = importlib.util.find_spec("open_clip")
    assert spec and spec.submodule_search_locations, "pip install --no-deps open_clip_torch==3.3.0"
    path = os.path.join(list(spec.submodule_search_locations)[0], "tokenizer.py")
    mod_spec = importlib.util.spec_from_file_location("open_clip_tokenizer", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- corpus

SUBJECTS = """a cat|an astronaut riding a horse|a cyberpunk city at night|portrait of an old fisherman|a bowl of ramen
|a red fox in the snow|the Eiffel Tower|a medieval castle on a hill|a cute corgi puppy|an owl wearing glasses|a steampunk
airship|two robots playing chess|a lighthouse in a storm|a field of sunflowers|an ancient Greek temple|a samurai warrior
|a dragon made of crystal|a cozy cabin in the woods|a futuristic sports car|a bouquet of roses|a koi pond|a jellyfish
|an elephant in the savanna|a wizard's tower|a bustling Tokyo street|a teapot shaped like a mushroom|a polar bear
|a victorian woman in a garden|a spaceship above Saturn|a pirate ship|a tiny frog on a leaf|the Mona Lisa|a waterfall
|a neon sign that says "OPEN"|a loaf of sourdough bread|a girl with a pearl earring|a Formula 1 car|a Shiba Inu
|a hummingbird|a snowy mountain peak|a desert oasis|a haunted house|a bowl of fruit|a violin on a chair|an underwater
city|a T-rex|Darth Vader|Pikachu|a McDonald's burger|a 1960s diner|New York City skyline|a coffee cup|Mount Fuji""".replace("\n", "").split("|")
STYLES = """oil painting|watercolor|digital art|concept art|photorealistic|studio ghibli style|pixel art|3D render
|unreal engine 5|octane render|pencil sketch|ukiyo-e|art nouveau|low poly|cinematic|anime|by Greg Rutkowski
|by Alphonse Mucha|by Van Gogh|in the style of Picasso|trending on ArtStation|vaporwave|synthwave|charcoal drawing
|isometric|matte painting|polaroid photo|35mm film|macro photography|hyperrealistic|impressionism|cel shaded""".replace("\n", "").split("|")
MODIFIERS = """highly detailed|8k|4K UHD|masterpiece|best quality|sharp focus|dramatic lighting|golden hour|volumetric
light|bokeh|f/1.8|85mm lens|ISO 100|HDR|intricate|elegant|soft lighting|rim light|depth of field|award-winning
|(masterpiece:1.2)|[blurry]|((ultra detailed))|{high contrast}|trending|4k wallpaper|1920x1080|RTX on|--ar 16:9
|--v 5.2|#art|@artist|100% quality|vivid colors|pastel colors|dark & moody|black-and-white|it's beautiful
|don't crop|you're amazing|I'm happy|we've arrived|she'll win|he'd go|they're here|rock'n'roll""".replace("\n", "").split("|")

MULTILINGUAL = [
    "Café naïve résumé à la carte", "Straße Größe Übermaß ẞ", "Zażółć gęślą jaźń", "Tiếng Việt có dấu: Phở bò",
    "İstanbul ve Iğdır ışık", "ΑΣ ΣΑΣ Οδυσσεύς ΛΌΓΟΣ", "Σίσυφος ΣΊΣΥΦΟΣ σ ς Σ.", "Москва ЁЛКА ёжик",
    "Հայաստան Երևան", "ქართული ენა", "שָׁלוֹם עוֹלָם", "مرحبا بالعالم العربي", "اَلْعَرَبِيَّةُ", "नमस्ते दुनिया",
    "ভাষা বাংলা", "தமிழ் மொழி", "ภาษาไทย สวัสดี", "ພາສາລາວ", "བོད་ཡིག", "မြန်မာဘာသာ", "ភាសាខ្មែរ", "አማርኛ ቋንቋ",
    "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ", "ᠮᠣᠩᠭᠣᠯ", "한국어 텍스트 안녕하세요", "日本語のテキスト、カタカナ、ひらがな", "中文简体字 繁體中文",
    "𠀀𠀁𪚥 CJK extension B", "සිංහල", "ગુજરાતી", "తెలుగు", "ಕನ್ನಡ", "മലയാളം", "ਪੰਜਾਬੀ", "ଓଡ଼ିଆ", "ދިވެހި",
    "ᚠᛇᚻ᛫ᛒᛦᚦ", "𐌰𐌱𐌲 Gothic", "ⲘⲉⲧⲢⲉⲙ̀ⲛⲭⲏⲙⲓ", "Ꭰ Ꮳ Ᏼ", "ǅemal ǈuba Ǉ ǋ", "ﬁnancial ﬂow ﬃ", "Ĳsselmeer ĳs",
    "K Å Ω (Kelvin, Angstrom, Ohm signs)", "ſtraße 'ſ ſ", "ﾊﾝｶｸ ｶﾀｶﾅ", "ＦＵＬＬＷＩＤＴＨ　ＴＥＸＴ　１２３",
    "𝐁𝐨𝐥𝐝 𝑰𝒕𝒂𝒍𝒊𝒄 𝔉𝔯𝔞𝔨𝔱𝔲𝔯", "ℌ𝔢𝔩𝔩𝔬 ℭ𝔬𝔡𝔢", "Ⓐⓑⓒ ①②③", "ǰ̌ ΐ ΰ", "ŉ apostrophe n", "Ꙋ ꙋ ᲀ ᲈ",
    "Ա ա Ꭰ ꭰ", "𐐀𐐨 Deseret", "𞤀𞤢 Adlam", "𖹀𖹠 Medefaidrin", "𐲀𐳀 Old Hungarian", "Ⴀ ⴀ Ნ ნ",
]
EMOJI = [
    "😀 smile", "👍🏽 thumbs up", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "🇯🇵🇺🇸🇩🇪 flags", "1️⃣ keycap", "❤️ heart",
    "🏴󠁧󠁢󠁥󠁮󠁧󠁿 England", "👩🏾‍🚀 astronaut", "🧑‍🤝‍🧑", "🐈‍⬛ black cat", "😶‍🌫️", "✌🏿", "🫠🫶🪿", "👁️‍🗨️",
    "a 🐱 and a 🐶 on a 🛋️", "🔥🔥🔥 fire", "☕️ coffee ☕︎", "©️®️™️", "🤖🎨✨", "🧜‍♀️ mermaid",
]
HTML_CASES = [
    "Tom &amp; Jerry", "&lt;b&gt;bold&lt;/b&gt;", "it&#39;s", "it&#x27;s", "a&nbsp;b", "caf&eacute;", "CAF&EACUTE;",
    "BUNDESSTRA&SZLIG;E", "&amp;amp;", "&amp;amp;amp;lt;", "&notit; &not; &notin;", "&#128;uro", "&#0;", "&#xD800;",
    "&#1114112;", "&#12abc;", "&#x;", "&#;", "&bogus;", "&AMP;", "&copy 2024", "&copyright", "<b>&amp;</b>",
    "a < b &amp; c", "line1 &amp;\nline2 <x> &amp;\nline3 &amp;", "&Jscr;ohn &HilbertSpace;ancock", "&checkmark;",
    "&#9731; snowman", "&#x1F600;", "&#65;&#66;&#67;", "&NewLine;x", "&Tab;y", "&quot;quoted&quot;", "&apos;single&apos;",
    "5 &gt; 3 &amp;&amp; 2 &lt; 4", "&ampx", "&&amp;", "&#x41", "&#65", "&lt", "&gtx", "&#13;", "&#10;new", "&#x85;",
    "&#xFFFE;", "&#x10FFFF;", "&#99999999999999999999;", "&frac12; cup", "&hellip;", "&mdash;&ndash;", "&lsquo;hi&rsquo;",
]
WHITESPACE = [
    "tab\tseparated\tvalues", "new\nline", "windows\r\nline", "old mac\rline", "vertical\x0btab", "form\x0cfeed",
    "file\x1csep\x1dgroup\x1erecord\x1funit", "next\x85line", "no\xa0break", "en\u2002em\u2003thin\u2009hair\u200a",
    "line\u2028sep", "para\u2029sep", "narrow\u202fnbsp", "math\u205fspace", "ideographic\u3000space",
    "zero\u200bwidth", "mongolian\u180evowel", "\ufeffBOM at start", "  leading and trailing  ", "\t\n\r ",
    "multiple     spaces", "ogham\u1680space", "a \u00a0 \u2000 b", "\n\n\nnewlines\n\n", "x\u200cy\u200dz",
    "rtl\u200fmark\u200e", "word\u2060joiner", "soft\u00adhyphen",
]
DIGITS = [
    "12345", "3.14159", "1,000,000", "٣٤٥ Arabic-Indic", "१२३ Devanagari", "１２３ fullwidth", "Ⅻ Roman", "½ ¼ ¾",
    "x² y³ z¹", "① ② ⑳", "10:30pm", "2024-01-15", "+1 (555) 123-4567", "0x1F 0b1010", "1e10 6.02e23", "$99.99",
    "٠١٢٣٤٥٦٧٨٩", "〇一二三", "𝟘𝟙𝟚", "⁰¹²³⁴⁵⁶⁷⁸⁹", "₀₁₂", "v1.2.3-beta", "IPv4 192.168.0.1", "100%", "#1",
]
APOSTROPHES = [
    "don't", "DON'T", "I'm", "you're", "we've", "she'll", "he'd", "it's", "IT'S", "'s'", "''", "'''s", "'ſ", "'ſt",
    "’s curly", "it’s", "rock'n'roll", "o'clock", "'tis", "'twas", "Y'ALL'D'VE", "'re're", "'ll'll", "ma'am",
    "the dogs' bones", "'", "' s", "'S", "'M'D'T", "‘quoted’", "“double”", "ʼn", "l'été", "dell'arte", "can't won't",
]
SPECIALS = [
    "<|startoftext|>", "<|endoftext|>", "<|ENDOFTEXT|>", "<|endoftext|>>", "<<|endoftext|>", "a<|endoftext|>b",
    "text <|endoftext|> more text", "<|startoftext|><|endoftext|>", "<start_of_text>", "<end_of_text>",
    "<END_OF_TEXT>", "<ſtart_of_text>", "x<start_of_text>y", "<|endoftext", "endoftext|>", "< |endoftext| >",
    "<|EndOfText|> mixed", " <|endoftext|> ", "<|startoftext|>hello<|endoftext|>", "!<|endoftext|>",
]
FTFY_CASES = [
    "ﬂuﬃeﬆ", "curly ‘single’ and “double” quotes", "C1 \x80 \x93 \x9d controls", "\x1b[31mred\x1b[0m text",
    "\x1b[1;32mgreen", "\x1b[;mx", "\x1b[١m", "ctrl\x00\x01\x07chars", "del\x7fchar", "\u206aarabic deprecated\u206f",
    "annotation\ufff9x\ufffay\ufffbz", "object\ufffcrepl", "cafÃ© mojibake", "donâ€™t", "Ã¡Ã©Ã­", "â€œquoteâ€\x9d",
    "sÃ³", "voilÃ le travail", "ÃƒÂ©", "â˜ƒ", "Ã\xa0 la", "ＬＯＵＤ　ＮＯＩＳＥＳ", "Ｕﾀｰﾝ", "½ ligature ﬆ", "ĲǄǅǆ",
    "\r\n\r\nHi.", "What is this \x85 I don't even", "tag chars 🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    "emoji with vs16 ❤\ufe0f", "\ufeff\ufeffdouble bom", "musical \U0001d173\U0001d174", "\u0085\u2028\u2029",
]
LONG_WORDS = ["a" * 300, "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
              "x" * 1000, "ab" * 200, "!" * 200, "?!" * 100, "1234567890" * 10, "ﬀ" * 50, "日本" * 100,
              "https://example.com/path?query=1&other=two#frag", "user.name+tag@example.co.uk",
              "def f(x):\n    return x ** 2  # comment", "**bold** _italic_ `code` [link](http://a.b)",
              "C:\\Users\\name\\file.txt", "SELECT * FROM t WHERE a='b';", "ÀÁÂÃÄÅ" * 30]


def unicode_version_cases(rng):
    """Characters on which the references' Unicode versions disagree."""
    import regex
    out = []
    # letters new in Unicode 17/18 (regex knows them, tokenizers' Oniguruma 16.0 does not)
    new_letters = [cp for cp in range(0x10000, 0x32000) if regex.match(r"\p{L}", chr(cp)) and
                   unicodedata.category(chr(cp)) == "Cn"]
    for _ in range(20):
        cps = rng.sample(new_letters, 3)
        out.append("new " + "".join(map(chr, cps)) + " letters")
    out += ["\u1c89\u1c8a Cyrillic TJE", "\ua7cb\ua7cc\ua7cd\ua7da\ua7db\ua7dc", "\ua7ce\ua7cf\ua7d2\ua7d4",
            "\U00010d50\U00010d51\U00010d65 Garay", "\U00011935\U00011930 Dives Akuru", "\U00011938",
            "\U000116d0\U000116d9 Myanmar Pao digits", "\U00010d40\U00010d49", "\U00016d40\U00016d41\U00016d6b",
            "\U0001e5d0\U0001e5d1", "\U00011f00\U00011f41", "\U0001e030\U0001e08f\U0001e4d0", "\u0c5d\u0cdd\u0cf3",
            "\U00011b00\U00011b09", "\U0001da00\U0001da36 signwriting", "\U00010efd\U00010efe\U00010eff",
            "\u088f\u0c5c\u0cdc", "\U000e0100\U000e01ef variation"]
    return out


def combining_cases(rng):
    marks = [cp for cp in range(0x300, 0x370)] + [0x483, 0x591, 0x5B0, 0x5C1, 0x64B, 0x670, 0x93C, 0x94D, 0x1AB0,
                                                   0x1DC0, 0x1DFF, 0x20D0, 0x20E3, 0x302A, 0x3099, 0xFE20, 0x1D165,
                                                   0x1D16D, 0x0F71, 0x0F72, 0x0F80, 0x0E38, 0x0E48, 0x1039, 0x0345,
                                                   0x0334, 0x0316, 0x0323, 0x031B, 0x0328, 0x0327]
    bases = "aeiouAEIOUnNcCsSzZyYgGhHwWxX" + "αεηιουωΑΕΗΙΟΥΩ" + "аеиоуАЕИОУ" + "ᄀᄁ가" + "ɑɛ"
    out = []
    for _ in range(160):
        s = ""
        for _ in range(rng.randint(1, 4)):
            s += rng.choice(bases) + "".join(chr(rng.choice(marks)) for _ in range(rng.randint(0, 4)))
        out.append(s)
    words = ["Café", "naïve", "Ångström", "Phở", "Đà Nẵng", "ṩ", "ḍ̇", "q̣̇", "Ǻ", "ǖ", "Ứng", "Ễ", "ΐ", "ὦ", "ᾏ", "Ḱ"]
    for w in words:
        out.append(unicodedata.normalize("NFD", w))
        out.append(unicodedata.normalize("NFKD", w))
    # Hangul: conjoining jamo sequences (compose under NFC), and syllables plus trailing jamo
    for _ in range(30):
        s = ""
        for _ in range(rng.randint(1, 3)):
            s += chr(0x1100 + rng.randrange(19)) + chr(0x1161 + rng.randrange(21))
            if rng.random() < 0.5:
                s += chr(0x11A8 + rng.randrange(27))
        out.append(s)
    out += ["\uac00\u11a8", "\uac01\u11a8", "\u1100\u1161\u11a8\u11a8", "\u1100\u0301\u1161", "\u1161\u1100"]
    # singletons and composition exclusions
    out += ["\u2126 \u212b \u0340\u0341 \u0958 \u0344 \u0f73 \u2adc", "\u1e9b\u0323", "\u0385 \u1fee \u1fc1"]
    return out


def prompt(rng, long=False):
    parts = [rng.choice(SUBJECTS)]
    for _ in range(rng.randint(0, 2)):
        parts.append(rng.choice(STYLES))
    for _ in range(rng.randint(0, 5) + (40 if long else 0)):
        parts.append(rng.choice(MODIFIERS + STYLES))
    sep = rng.choice([", ", ", ", " ", ". ", " | ", ",", "; "])
    s = sep.join(parts)
    r = rng.random()
    if r < 0.1:
        s = s.upper()
    elif r < 0.2:
        s = s.title()
    elif r < 0.25:
        s = "  " + s + "\n"
    return s


def random_strings(rng, n):
    pools = [(0x20, 0x7F), (0xA0, 0x250), (0x370, 0x530), (0x590, 0x700), (0x900, 0xE00), (0x1100, 0x1200),
             (0x1E00, 0x2000), (0x2000, 0x2070), (0x3000, 0x3100), (0x4E00, 0x4F00), (0xAC00, 0xAD00),
             (0xFB00, 0xFB50), (0xFF00, 0xFFF0), (0x1F300, 0x1F700), (0x10000, 0x10100), (0x1D400, 0x1D800),
             (0x300, 0x370), (0x0, 0x20), (0x80, 0xA0), (0x20000, 0x20100)]
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        cps = []
        for _ in range(k):
            lo, hi = rng.choice(pools)
            cp = rng.randrange(lo, hi)
            if 0xD800 <= cp < 0xE000:
                cp = 0x41
            cps.append(cp)
        out.append("".join(map(chr, cps)))
    return out


def invalid_utf8_cases(rng):
    fixed = [b"\xff", b"\xc3", b"caf\xc3", b"\xc3\x28", b"\xe2\x82", b"\xe2\x82\x28", b"\xf0\x9f\x98", b"\xf0\x9f\x98\x28",
             b"\xed\xa0\x80 surrogate", b"\xc0\xaf overlong", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80 too big",
             b"\xf8\x88\x80\x80\x80", b"\x80\x80\x80 continuation", b"ok \xfe\xfe ok", b"a\xe2\x28\xa1b",
             b"\xf1\x80\x80", b"mixed \xc3\xa9 and \xc3 end", b"\xef\xbb\xbfBOM", b"\xc2\xa0nbsp"]
    out = list(fixed)
    for _ in range(20):
        out.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 24))))
    return out


def build_corpus(rng):
    cats = []
    for _ in range(1150):
        cats.append(("prompt", prompt(rng)))
    for _ in range(80):
        cats.append(("long prompt", prompt(rng, long=True)))
    for group, items in [("multilingual", MULTILINGUAL), ("emoji", EMOJI), ("html", HTML_CASES),
                         ("whitespace", WHITESPACE), ("digits", DIGITS), ("apostrophes", APOSTROPHES),
                         ("special tokens", SPECIALS), ("ftfy", FTFY_CASES), ("long words", LONG_WORDS)]:
        for s in items:
            cats.append((group, s))
    for s in MULTILINGUAL + EMOJI:  # inside prompts, in both cases
        cats.append(("multilingual", prompt(rng) + ", " + s))
        cats.append(("multilingual", s.upper() + " " + s.lower()))
    for s in HTML_CASES + FTFY_CASES + APOSTROPHES:
        cats.append(("mixed", rng.choice(SUBJECTS) + " " + s + " " + rng.choice(STYLES)))
    for s in unicode_version_cases(rng):
        cats.append(("unicode versions", s))
    for s in combining_cases(rng):
        cats.append(("combining marks", s))
    for s in random_strings(rng, 260):
        cats.append(("random", s))
    for s in ["", " ", "\n", "a", "A", "!", "'", "1", ".", "é", "ß", "İ", "Σ", "ΑΣ", "ΑΣ.", "Σ΄Α", "ΑΣ΄", "ǅ", "ẞ", "ῼ",
              "ﬀ", "K", "Å"]:
        cats.append(("single", s))
    return cats


# ----------------------------------------------------------------------------- reasons

def reason(s):
    """Why the two references give different ids for s (the first cause found, in this order)."""
    import ftfy
    import regex
    import unicodedata2  # 16.0: tokenizers' \p{L}/\p{N}
    from tokenizers import normalizers
    if regex.search(r"<\|startoftext\|>|<\|endoftext\|>|(?i)<(start|end)_of_text>", s):
        return ("special-token strings differ (HF: <|startoftext|>/<|endoftext|> in the raw text; "
                "open_clip 3.3.0: <start_of_text>/<end_of_text> after cleaning)")
    fixed = ftfy.fix_text(s)
    if fixed != ftfy.fix_text(s, fix_encoding=False):
        return "ftfy repairs mojibake (open_clip only; not implemented by pickscore)"
    if fixed != s:
        fixers = ["unescape_html", "fix_c1_controls", "fix_latin_ligatures", "fix_character_width", "uncurl_quotes",
                  "fix_line_breaks", "remove_terminal_escapes", "remove_control_chars"]
        which = [f for f in fixers if ftfy.fix_text(s, **{f: False}) != fixed]
        if not which and any(0x80 <= ord(c) <= 0x9F for c in s):
            which = ["fix_c1_controls"]
        return "ftfy (open_clip only): " + (", ".join(which) if which else "NFC")
    if html.unescape(s) != s:
        return "html.unescape (open_clip only)"
    if "\u03a3" in s:
        return "final sigma: Python's str.lower gives ς at the end of a word, Rust's to_lowercase always σ"
    if "\u017f" in s:
        return "open_clip's pattern is case-insensitive: 'ſ matches 's"
    if "\u0345" in s:
        return ("U+0345: open_clip's case-insensitive pattern matches it with no alternative (it is dropped); "
                "for tokenizers it is punctuation")
    if any(0x1C <= ord(c) <= 0x1F for c in s):
        return "U+001C..U+001F: whitespace to Python's str.split, not to \\s"
    for c in s:
        if regex.match(r"\p{L}|\p{N}", c) and unicodedata2.category(c)[0] not in "LN":
            return "a letter/number of Unicode 17/18 (regex module) that tokenizers' Unicode 16.0 does not know"
    nfc14 = unicodedata.normalize("NFC", s)
    if normalizers.NFC().normalize_str(s) != nfc14:
        return "NFC: tokenizers uses Unicode 9.0 data, Python 14.0"
    if normalizers.Lowercase().normalize_str(nfc14) != nfc14.lower():
        return "lowercase: Rust's char::to_lowercase (Unicode 17.0) vs Python's str.lower (14.0)"
    return "other (see the ids)"


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", default=os.path.join(ROOT, "..", "shared", "data", "bpe_simple_vocab_16e6.txt.gz"))
    args = ap.parse_args()
    import transformers
    import tokenizers
    import ftfy
    print("transformers", transformers.__version__, "tokenizers", tokenizers.__version__, "ftfy", ftfy.__version__)

    vocab, merges, header = derive_vocab(args.vocab)
    hf = hf_tokenizer(vocab, merges)
    ocm = load_open_clip_tokenizer()
    oc = ocm.SimpleTokenizer(bpe_path=args.vocab)
    real_fix_text = ocm.ftfy.fix_text

    def hf_ids(s):
        enc = hf(s, padding="max_length", truncation=True, max_length=77)
        return enc["input_ids"][:sum(enc["attention_mask"])]  # padding left out

    def oc_ids(s, fix_encoding=True):
        ocm.ftfy.fix_text = real_fix_text if fix_encoding else (lambda t: real_fix_text(t, fix_encoding=False))
        try:
            return [int(x) for x in oc(s)[0]]
        finally:
            ocm.ftfy.fix_text = real_fix_text

    def trim(ids, eot=49407):
        """open_clip's row without its padding: up to the last end token (the framing one)."""
        return ids[:len(ids) - ids[::-1].index(eot)]

    rng = random.Random(20240601)
    corpus = build_corpus(rng)
    for b in invalid_utf8_cases(rng):
        corpus.append(("invalid utf-8", b))
    os.makedirs(OUT, exist_ok=True)
    lines, diffs = [], []
    n_ocx = 0
    for cat, item in corpus:
        rec = {"cat": cat}
        if isinstance(item, bytes):
            rec["b"] = item.hex()
            s = item.decode("utf-8", errors="replace")
        else:
            rec["s"] = item
            s = item
        h = hf_ids(s)
        assert h[0] == 49406 and h[-1] == 49407
        o = oc_ids(s)
        ox = oc_ids(s, fix_encoding=False)
        rec["hf"] = h
        # padding differs by convention only; compare the framed ids
        if trim(o) != h:
            rec["oc"] = trim(o)
            diffs.append((s, reason(s)))
        if ox != o:
            rec["ocx"] = trim(ox)
            n_ocx += 1
        full = hf(s, add_special_tokens=False)["input_ids"]
        if len(full) > 75:
            rec["hf_full"] = full
        lines.append(json.dumps(rec, ensure_ascii=False))
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    with open(os.path.join(OUT, "corpus.jsonl.gz"), "wb") as f:
        f.write(gzip.compress(raw, compresslevel=9, mtime=0))
    print(f"{len(lines)} strings, {len(diffs)} where hf != oc, {n_ocx} where mojibake repair matters; "
          f"{len(raw)} bytes, {os.path.getsize(os.path.join(OUT, 'corpus.jsonl.gz'))} gzipped")

    # ---- the list of reference differences
    with open(os.path.join(OUT, "reference_differences.md"), "w") as f:
        f.write("# Where the two reference tokenizers differ on the corpus\n\n")
        f.write("Generated by tools/gen_tokenizer_corpus.py. hf = transformers 5.24.0 CLIPTokenizer (tokenizers "
                "0.23.3), oc = open_clip 3.3.0 SimpleTokenizer; framed ids compared, padding convention aside.\n"
                "pickscore's hf mode matches hf on every string, its openclip mode matches oc on every string "
                "except the ones marked 'ftfy repairs mojibake' (not implemented; see "
                "include/pickscore/io/detail/text_clean.hpp).\n\n")
        counts = {}
        for _, r in diffs:
            counts[r] = counts.get(r, 0) + 1
        f.write("| reason | strings |\n|---|---|\n")
        for r, c in sorted(counts.items(), key=lambda x: -x[1]):
            f.write(f"| {r} | {c} |\n")
        f.write(f"\n{len(diffs)} of {len(lines)} strings differ.\n\n## Every string\n\n")
        for s, r in diffs:
            f.write(f"- `{json.dumps(s, ensure_ascii=True)[1:-1].replace('`', chr(92) + 'x60')}`: {r}\n")

    # ---- a small vocabulary in the three formats
    small_dir = os.path.join(OUT, "small")
    os.makedirs(small_dir, exist_ok=True)
    n_small = 2000
    svocab, smerges, _ = derive_vocab(args.vocab, n_small)
    lines_gz = [header] + [" ".join(m) for m in smerges]
    with open(os.path.join(small_dir, "bpe_small.txt.gz"), "wb") as f:
        f.write(gzip.compress(("\n".join(lines_gz) + "\n").encode("utf-8"), compresslevel=9, mtime=0))
    with open(os.path.join(small_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(svocab, f, ensure_ascii=False)
    with open(os.path.join(small_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in smerges) + "\n")
    shf = hf_tokenizer(svocab, smerges)
    with open(os.path.join(small_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(shf.backend_tokenizer.to_str())  # compact; written by tokenizers itself
    with open(os.path.join(small_dir, "small.jsonl"), "w", encoding="utf-8") as f:
        for cat, item in corpus[::7]:
            if isinstance(item, bytes):
                continue
            enc = shf(item, padding="max_length", truncation=True, max_length=77)
            ids = enc["input_ids"][:sum(enc["attention_mask"])]
            f.write(json.dumps({"s": item, "hf": ids}, ensure_ascii=False) + "\n")
    print("small vocabulary:", n_small, "merges")


if __name__ == "__main__":
    main()
