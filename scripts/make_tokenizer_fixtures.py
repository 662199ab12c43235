#!/usr/bin/env python3
"""Make the tokenizer fixtures for the Swiftlet tokenizer tests (Tests/SwiftletTests/TokenizerTests.swift).

Requirements: pip install tokenizers transformers   (made with tokenizers 0.23.3, transformers 5.24.0)

Usage:
    python scripts/make_tokenizer_fixtures.py [--out Tests/SwiftletTests/Fixtures/tokenizers]

No download: every tokenizer is TRAINED here on a small unicode-heavy corpus written in this file, then
re-loaded from the tokenizer.json just written, so the expected outputs describe exactly the saved files.

Every fixture is a folder <out>/<name>/:
    tokenizer.json          the `tokenizers` file (post-processed where noted)
    tokenizer_config.json   a transformers-style config (bos/eos/pad/unk, add_bos_token, chat_template)
    cases.json              [{"text", "ids", "ids_no_special", "decoded", "decoded_skip"}] from the
                            `tokenizers` library: Tokenizer.from_file(tokenizer.json)
                            ids = encode(text, add_special_tokens=True).ids, ids_no_special = ...False,
                            decoded = decode(ids, skip_special_tokens=False), decoded_skip = ...True
    transformers_cases.json {"texts", "ids", "ids_no_special"} from transformers' AutoTokenizer loading the
                            folder (tokenizer.json + tokenizer_config.json: the add_bos/add_eos rule)

Fixtures:
    spm_bpe        Llama-2 style: normalizer Sequence[Prepend(▁), Replace(' ', ▁)], no pre-tokenizer,
                   BPE byte_fallback + <0xXX> vocab, decoder Sequence[Replace, ByteFallback, Fuse, Strip],
                   TemplateProcessing "<s> $A"; merges saved as "a b" strings; a normalized added token.
    spm_metaspace  older style: pre_tokenizer Metaspace(prepend_scheme first, split true), decoder
                   Sequence[ByteFallback, Metaspace]; merges saved as ["a", "b"] pairs; config adds eos too.
    byte_bpe       Llama-3 style: Split(llama-3 regex, Isolated) + ByteLevel(use_regex false), ignore_merges,
                   <|begin_of_text|> / <|im_start|> / <|im_end|> ..., Sequence[ByteLevel, TemplateProcessing].
    qwen_bpe       Qwen2 style: NFC normalizer, Split(qwen2 regex) + ByteLevel, no post-processor.
    gpt2_bpe       plain ByteLevel(add_prefix_space true, use_regex true) pre-tokenizer and post-processor.
"""

import argparse
import json
import random
import shutil
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer, AddedToken, Regex
from tokenizers import models, normalizers, pre_tokenizers, decoders, processors, trainers

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

PROSE = """The quick brown fox jumps over the lazy dog. It's a truth universally acknowledged, that a single man
in possession of a good fortune, must be in want of a wife. We'll see; they've said I'd go, you're right.
DON'T SHOUT! She said: "I can't believe it's already 2024-03-15 at 10:45pm." Prices rose 3.14159% to $1,234,567.89.
Tokenizers split text into pieces, and byte pair encoding merges the most frequent pairs first.
In the beginning the Universe was created. This has made a lot of people very angry and been widely regarded as a bad move.
"""

CODE = """def fibonacci(n: int) -> int:
\t\"\"\"Return the n-th Fibonacci number.\"\"\"
\tif n < 2:
\t\treturn n
\treturn fibonacci(n - 1) + fibonacci(n - 2)

for (int i = 0; i < 10; ++i) {
    printf("%d\\n", i * i);    // squares
}
let x = [1, 2, 3].map { $0 * 2 }  // Swift closure
SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;
"""

MULTI = """日本語のテキストを分割します。東京は日本の首都です。
中文分词是一个有趣的问题。我们今天去公园散步吧！
한국어 문장도 포함합니다. 안녕하세요, 만나서 반갑습니다.
Русский текст: Съешь же ещё этих мягких французских булок, да выпей чаю.
Ελληνικά: Το γρήγορο καφέ αλεπού πηδάει.
العربية: مرحبا بالعالم، كيف حالك اليوم؟
עברית: שלום עולם, מה שלומך היום?
हिन्दी: नमस्ते दुनिया, आप कैसे हैं?
Emoji: 😀 😂 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷 🧑🏿‍💻 ✨🎉
Combining: e\u0301 a\u0308 n\u0303 café naïve Zoë Ångström ﬁ ﬂ Å
Whitespace:   three spaces,\ttab, \u00a0nbsp, \u3000ideographic, \u2003em space.
Windows line\r\nendings\r\nand old mac\rlines.
"""


def corpus():
    rng = random.Random(1234)
    lines = (PROSE + CODE + MULTI).splitlines(keepends=True)
    out = []
    for _ in range(40):
        rng.shuffle(lines)
        out.extend(lines)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    for i in range(300):
        out.append(" ".join(rng.choice(words) for _ in range(8)) + f" {i * 37} {rng.randint(0, 10 ** 6)}\n")
    return out


CASES = [
    "", " ", "  ", "   ", "\n", "\n\n\t", "\t", "\r\n", "\r\n\r\n", " \n ", "a", "Hello", "hello world",
    " hello", "hello ", "  leading two", "trailing two  ", "  both  ", "Hello, world!", "Hello,  world!",
    "DON'T", "don't", "it'ſ", "it'ſſ", "IT'LL", "'Re 'VE 'D 'M", "I'M HERE", "we'll", "They'RE", "you've", "He'd", "it's", "'s", "'", "''", "' s",
    "The quick brown fox jumps over the lazy dog.", "DON'T SHOUT! I CAN'T HEAR YOU.",
    "1", "12", "123", "1234", "12345678901234567890", "3.14159", "$1,234,567.89", "2024-03-15", "10:45pm",
    "-42", "+1 (555) 010-9999", "0x1F600", "1e-9",
    "日本語", "東京は日本の首都です。", "中文分词", "한국어", "안녕하세요", "Съешь ещё", "Ελληνικά",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते", "ไทย ภาษา", "ᚠᚢᚦᚨᚱᚲ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𠀀𠀁",
    "😀", "😂😂😂", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇫🇷🇩🇪", "🧑🏿‍💻 coding", "✨🎉 party",
    "e\u0301", "cafe\u0301", "café", "naïve Zoë", "Ångström", "Å", "ﬁ ﬂ", "a\u0308\u0301\u0323",
    "\u00a0nbsp", "x\u3000y", "em\u2003space", "zero\u200bwidth", "\u200d", "\ufeffbom", "\u2028line",
    "\x00nul", "\x7fdel", "\x1b[31mred\x1b[0m",
    "def f(x):\n\treturn x * 2\n", "    indented\n        more", "if (a && b) { return; }",
    "for (int i = 0; i < 10; ++i) {}", "SELECT * FROM t;", "a\tb\tc", "\t\tdouble tab", "x  =  1",
    "line1\nline2\n\nline4", "crlf\r\nline\r\n", "old\rmac", "end with newline\n", "\n\nstart",
    "trailing spaces   \n", "  \n  \n", "a \n b", "!!!", "...", "?!?", "--", "->", "=>", "::", "#include <stdio.h>",
    "<s>", "</s>", "<unk>", "<s>hello</s>", "hello<s>world", " <s> spaced </s> ",
    "<|begin_of_text|>", "<|im_start|>user\nhi<|im_end|>", "hi<|im_end|>there", "<|im_start|><|im_end|>",
    "text <|im_end|> text", "<|im_end|><|im_end|>", "<|im_", "<|eot_id|>", "<tool>", "a<tool>b", " <tool> ",
    "xyzzy", "xyzzy!", "axyzzy", "the xyzzy cave", "<mask>", "a <mask> b", "a<mask>b", "a  <mask>  b",
    "▁", "▁▁hello", "hello▁world", "<0x41>", "<0xE6>", "\ufffd", "Ĉ", "Ġhello", "ĊĊ",
    "Mixed: English, 日本語, русский, عربى, and emoji 🎉!",
    "αβγ ΑΒΓ", "ÀÉÎÕÜ àéîõü", "İstanbul ıi", "straße STRASSE", "ſ's and K's", "ǅ ǈ", "Ⅻ ⅻ ① ½ ²",
    "٣٤٥ ۱۲۳", "१२३", "ＡＢＣ１２３", "ｶﾀｶﾅ",
    "a" * 60, "ab" * 40, " " * 17, "\n" * 9, "!" * 21, "1" * 25, "日" * 30,
    "The year 1999 was followed by 2000, 2001 and 2002.",
    "It's 5 o'clock somewhere; isn't it? 'Quoted' and \"double\".",
    "mailto:someone@example.com https://example.org/path?q=1&r=2#frag",
    "CamelCaseIdentifier snake_case_identifier kebab-case-identifier",
    "Whitespace:   three spaces,\ttab, \u00a0nbsp, \u3000ideographic.",
    "Windows line\r\nendings\r\nand old mac\rlines.",
]


def spm_training_tokenizer(vocab_size, lines):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    data = json.loads(tok.to_str())
    # Llama layout: <unk> <s> </s>, then the 256 byte tokens <0x00>..<0xFF>, then the learned pieces.
    old = sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {}
    for t, _ in old[:3]:
        vocab[t] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t, _ in old[3:]:
        if t not in vocab:
            vocab[t] = len(vocab)
    data["model"]["vocab"] = vocab
    return data


def spm_bpe(lines):
    data = spm_training_tokenizer(900, lines)
    tok = Tokenizer.from_str(json.dumps(data))
    tok.pre_tokenizer = None
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    # a non-special, normalized added token (its content is normalized too: "▁<tool>")
    tok.add_tokens([AddedToken("<tool>", normalized=True, special=False)])
    data = json.loads(tok.to_str())
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": True, "add_eos_token": False,
              "bos_token": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False,
                            "single_word": False, "__type": "AddedToken"},
              "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
              "chat_template": "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}",
              "model_max_length": 4096}
    return data, config


def spm_metaspace(lines):
    data = spm_training_tokenizer(700, lines)
    tok = Tokenizer.from_str(json.dumps(data))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(),
                                     decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A </s> $B",
                                                       special_tokens=[("<s>", 1), ("</s>", 2)])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, normalized=False, special=True)])
    data = json.loads(tok.to_str())
    data["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m for m in data["model"]["merges"]]
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": True, "add_eos_token": True,
              "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}
    return data, config


BYTE_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>", "<|eot_id|>"]


def byte_level(lines, vocab_size, pattern, normalizer, specials, post, add_prefix_space=False, use_regex=False):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = normalizer
    if pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    if post is not None:
        tok.post_processor = post(tok)
    return tok


def byte_bpe(lines):
    def post(tok):
        return processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                          special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])])
    tok = byte_level(lines, 1500, LLAMA3_PATTERN, None, BYTE_SPECIALS, post)
    tok.add_tokens([AddedToken("xyzzy", single_word=True, normalized=False, special=False)])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    data = json.loads(tok.to_str())
    data["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m for m in data["model"]["merges"]]
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
              "eos_token": "<|eot_id|>", "pad_token": None,
              "chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"}
    return data, config


def qwen_bpe(lines):
    tok = byte_level(lines, 800, QWEN2_PATTERN, normalizers.NFC(), ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None)
    data = json.loads(tok.to_str())
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|im_end|>",
              "pad_token": "<|endoftext|>", "unk_token": None}
    return data, config


def gpt2_bpe(lines):
    tok = byte_level(lines, 600, None, None, ["<|endoftext|>"], lambda t: processors.ByteLevel(trim_offsets=True),
                     add_prefix_space=True)
    data = json.loads(tok.to_str())
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
              "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    return data, config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="Tests/SwiftletTests/Fixtures/tokenizers")
    args = ap.parse_args()
    out = Path(args.out)
    lines = corpus()
    import transformers
    from transformers import AutoTokenizer
    for name, make in [("spm_bpe", spm_bpe), ("spm_metaspace", spm_metaspace), ("byte_bpe", byte_bpe),
                       ("qwen_bpe", qwen_bpe), ("gpt2_bpe", gpt2_bpe)]:
        data, config = make(lines)
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        (d / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        (d / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        cases = []
        for text in CASES:
            ids = tok.encode(text, add_special_tokens=True).ids
            cases.append({"text": text, "ids": ids,
                          "ids_no_special": tok.encode(text, add_special_tokens=False).ids,
                          "decoded": tok.decode(ids, skip_special_tokens=False),
                          "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
        # decode of id sequences that encode never produces: lone / broken byte-fallback bytes, specials
        rng = random.Random(7)
        n = tok.get_vocab_size(with_added_tokens=True)
        extra = [[rng.randrange(n) for _ in range(rng.randint(1, 12))] for _ in range(40)]
        decode_cases = [{"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                         "decoded_skip": tok.decode(ids, skip_special_tokens=True)} for ids in extra]
        (d / "cases.json").write_text(json.dumps({"tokenizers_version": tokenizers.__version__, "cases": cases,
                                                  "decode_cases": decode_cases}, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
        hf = AutoTokenizer.from_pretrained(str(d))
        texts = ["Hello world", "", " hi<|im_end|>there", "DON'T 123456 日本語 👍🏽"]
        tcases = {"transformers_version": transformers.__version__, "texts": texts,
                  "ids": [hf(t, add_special_tokens=True)["input_ids"] for t in texts],
                  "ids_no_special": [hf(t, add_special_tokens=False)["input_ids"] for t in texts]}
        (d / "transformers_cases.json").write_text(json.dumps(tcases, ensure_ascii=False) + "\n", encoding="utf-8")
        print(name, "vocab", n, "cases", len(cases))


if __name__ == "__main__":
    main()
