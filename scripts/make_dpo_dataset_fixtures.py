#!/usr/bin/env python3
"""Make the DPO data-set tokenization fixture for the Swiftlet tests (Tests/SwiftletTests/Fixtures/dpo).

Requirements:  pip install torch transformers trl datasets   (made with trl 1.16)

Usage:
    python scripts/make_dpo_dataset_fixtures.py [--fixtures Tests/SwiftletTests/Fixtures]

Writes preference rows (text, conversational with an explicit prompt, conversational with the prompt
implicit in chosen/rejected) as dpo/preference_*.jsonl, builds TRL 1.16's own DPOTrainer on each with
a fixture tokenizer (and chat template), and records its prepared train_dataset — prompt_ids,
chosen_ids, rejected_ids after extract_prompt, add_eos, tokenize_fn and the max_length filter — in
dpo/tokenized.json.
"""

import argparse
import json
import os
import tempfile

import torch
import transformers
import trl
from datasets import Dataset
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import DPOConfig, DPOTrainer

transformers.logging.set_verbosity_error()

p = argparse.ArgumentParser()
p.add_argument("--fixtures", default="Tests/SwiftletTests/Fixtures")
FIX = p.parse_args().fixtures
OUT = os.path.join(FIX, "dpo")
TOK = os.path.join(FIX, "tokenizers")
DATASETS = os.path.join(FIX, "datasets")

text_rows = [
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    {"prompt": "Q: 2+2?\nA:", "chosen": " 4", "rejected": " five, surely"},
    {"prompt": "Ends with eos", "chosen": " done<|eot_id|>", "rejected": " not done"},
    {"prompt": "A long prompt that fills the whole max_length on its own, and then some more words", "chosen": " yes",
     "rejected": " no"},
]
U = lambda s: {"role": "user", "content": s}
A = lambda s: {"role": "assistant", "content": s}
S = lambda s: {"role": "system", "content": s}
chat_rows = [
    {"prompt": [U("What color is the sky?")], "chosen": [A("Blue.")], "rejected": [A("Green.")]},
    {"prompt": [S("Be brief."), U("Hi"), A("Hello!"), U("Count to 3")], "chosen": [A("1 2 3")], "rejected": [A("one, two")]},
    {"prompt": [U("A long prompt that fills the whole max_length on its own, and then some more words")],
     "chosen": [A("yes")], "rejected": [A("no")]},
]
implicit_rows = [
    {"chosen": [U("What is 1+1?"), A("2")], "rejected": [U("What is 1+1?"), A("3")]},
    {"chosen": [S("Be kind."), U("Hello"), A("Hi, friend!")], "rejected": [S("Be kind."), U("Hello"), A("Go away.")]},
]


def write_jsonl(name, rows):
    with open(os.path.join(OUT, name), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


write_jsonl("preference_text.jsonl", text_rows)
write_jsonl("preference_chat.jsonl", chat_rows)
write_jsonl("preference_implicit.jsonl", implicit_rows)


def trl_prepare(tokenizer, rows, template=None, max_length=None):
    tok = AutoTokenizer.from_pretrained(os.path.join(TOK, tokenizer))
    if template is not None:
        tok.chat_template = open(os.path.join(DATASETS, template)).read()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with tempfile.TemporaryDirectory() as d:
        args = DPOConfig(output_dir=d, max_length=max_length, report_to=[], use_cpu=True, bf16=False)
        trainer = DPOTrainer(model=model, ref_model=LlamaForCausalLM(cfg), args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
        return [{k: list(map(int, r[k])) for k in ["prompt_ids", "chosen_ids", "rejected_ids"]}
                for r in trainer.train_dataset]


cases = []
def case(name, tokenizer, data, rows, template=None, max_length=None):
    cases.append({"name": name, "tokenizer": tokenizer, "data": data, "template": template, "max_length": max_length,
                  "expected": trl_prepare(tokenizer, rows, template, max_length)})

for t in ["byte_bpe", "spm_bpe"]:
    case(f"text_{t}", t, "preference_text.jsonl", text_rows)
case("text_max_length_byte_bpe", "byte_bpe", "preference_text.jsonl", text_rows, max_length=40)
for t, tpl in [("byte_bpe", "chatml_generation.jinja"), ("spm_bpe", "inst_generation.jinja")]:
    case(f"chat_{t}", t, "preference_chat.jsonl", chat_rows, template=tpl)
    case(f"implicit_{t}", t, "preference_implicit.jsonl", implicit_rows, template=tpl)
case("chat_max_length_byte_bpe", "byte_bpe", "preference_chat.jsonl", chat_rows, template="chatml_generation.jinja",
     max_length=40)

with open(os.path.join(OUT, "tokenized.json"), "w") as f:
    json.dump({"transformers": transformers.__version__, "trl": trl.__version__, "cases": cases}, f)
print("wrote", len(cases), "cases")
