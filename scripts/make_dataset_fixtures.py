#!/usr/bin/env python3
"""Text data set fixtures for Tests/SwiftletTests/TextDataset*Tests.swift.

Writes small data files under Tests/SwiftletTests/Fixtures/datasets/ and `expected.json`: the input_ids and
labels TRL's own SFTTrainer dataset preparation (`SFTTrainer._prepare_dataset`: add_eos, tokenize_fn with
`_tokenize` / `apply_chat_template(return_assistant_tokens_mask=...)`, build_labels, truncate + drop fully
masked) produces for each case, run on the tokenizer fixtures with a one-layer random Llama (only the data
preparation is used), plus `trl.data_utils.pack_dataset(..., strategy="bfd")` results.

Run: python scripts/make_dataset_fixtures.py   (transformers 5.x, trl 1.16)
"""
import csv, io, json, os, tempfile, warnings

import torch
from datasets import Dataset
import transformers, trl
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import SFTConfig, SFTTrainer
from trl.data_utils import pack_dataset

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()
ROOT = os.path.join(os.path.dirname(__file__), "..", "Tests", "SwiftletTests", "Fixtures")
OUT = os.path.join(ROOT, "datasets")
TOK = os.path.join(ROOT, "tokenizers")
os.makedirs(OUT, exist_ok=True)

def write_jsonl(name, rows):
    with open(os.path.join(OUT, name), "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

# --- data files ---------------------------------------------------------------------------------
text_rows = [
    {"text": "Hello world, this is a test."},
    {"text": "The quick brown fox jumps over the lazy dog. " * 3},
    {"text": "Already ends with eos</s>"},
    {"text": "Ünïcödé and emoji 🙂 text"},
    {"text": "Short"},
]
write_jsonl("text.jsonl", text_rows)

alpaca_rows = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, and exercise."},
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "Summarize the text.", "input": "Cats sleep a lot, often sixteen hours a day.", "output": "Cats sleep most of the day."},
    {"instruction": "Say hi.", "output": "Hi!"},
]
write_jsonl("alpaca.jsonl", alpaca_rows)

messages_rows = [
    {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is 4."}]},
    {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"},
                  {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name a color"},
                  {"role": "assistant", "content": "Blue"}]},
    {"messages": [{"role": "user", "content": "Count: one, two"}, {"role": "assistant", "content": "three, four, five"}]},
]
write_jsonl("messages.jsonl", messages_rows)

sharegpt_rows = [
    {"conversations": [{"from": "human", "value": "Tell me a joke"}, {"from": "gpt", "value": "Why did the chicken cross the road?"}]},
    {"conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi, friend!"}]},
]
with open(os.path.join(OUT, "sharegpt.json"), "w") as f:
    json.dump(sharegpt_rows, f, indent=1)
with open(os.path.join(OUT, "alpaca_wrapped.json"), "w") as f:
    json.dump({"data": alpaca_rows[:2], "version": "1.0"}, f, indent=1)

csv_rows = [
    {"text": "plain line", "id": "1"},
    {"text": "has, commas, inside", "id": "2"},
    {"text": "has a \"quote\" and\na newline", "id": "3"},
    {"text": "", "id": "4"},  # empty text: a bad row
]
with open(os.path.join(OUT, "text.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["id", "text"], lineterminator="\r\n")
    w.writeheader()
    for r in csv_rows:
        w.writerow(r)

# Chat templates with {% generation %} markers (TRL's assistant_only_loss needs them)
CHATML_GEN = ("{% for message in messages %}{% if message['role'] == 'assistant' %}<|im_start|>assistant\n"
              "{% generation %}{{ message['content'] }}<|im_end|>{% endgeneration %}\n{% else %}"
              "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
INST_GEN = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}"
            "{% generation %} {{ message['content'] }} {{ eos_token }}{% endgeneration %}"
            "{% elif message['role'] == 'system' %}<<SYS>> {{ message['content'] }} <</SYS>>"
            "{% else %}[INST] {{ message['content'] }} [/INST]{% endif %}{% endfor %}")
# Spans that cut tokens: "Answer: " + "It..." gives a token " It" straddling the start, content ending in "?"
# followed by "\n" a token "?\n" straddling the end; transformers marks every token overlapping a span.
STRADDLE_GEN = ("{% for m in messages %}{% if m['role'] == 'assistant' %}Answer: {% generation %}{{ m['content'] }}"
                "{% endgeneration %}{{ '\\n' }}Next.\n{% else %}Q: {{ m['content'] }}\n{% endif %}{% endfor %}")
straddle_rows = [
    {"messages": [{"role": "user", "content": "How was it?"}, {"role": "assistant", "content": "It was wonder?"},
                  {"role": "user", "content": "And then?"}, {"role": "assistant", "content": "the end was help"}]},
    {"messages": [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because?"}]},
]
write_jsonl("messages_straddle.jsonl", straddle_rows)
for name, src in [("chatml_generation.jinja", CHATML_GEN), ("inst_generation.jinja", INST_GEN),
                  ("straddle_generation.jinja", STRADDLE_GEN)]:
    with open(os.path.join(OUT, name), "w") as f:
        f.write(src)

# --- TRL ------------------------------------------------------------------------------------------
def load_tok(name, template=None):
    tok = AutoTokenizer.from_pretrained(os.path.join(TOK, name))
    if template is not None:
        tok.chat_template = template
    return tok

def trl_prepare(tok, rows, *, max_length=None, completion_only=None, assistant_only=False):
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with tempfile.TemporaryDirectory() as d:
        args = SFTConfig(output_dir=d, max_length=max_length, completion_only_loss=completion_only,
                         assistant_only_loss=assistant_only, report_to=[], use_cpu=True, bf16=False,
                         shuffle_dataset=False, eos_token=None)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
        ds = trainer.train_dataset
        return [{"input_ids": list(map(int, r["input_ids"])), "labels": list(map(int, r["labels"]))} for r in ds]

def alpaca_prompt(r):
    if r.get("input"):
        return ("Below is an instruction that describes a task, paired with an input that provides further context. "
                "Write a response that appropriately completes the request.\n\n### Instruction:\n"
                f"{r['instruction']}\n\n### Input:\n{r['input']}\n\n### Response:\n")
    return ("Below is an instruction that describes a task. Write a response that appropriately completes the request."
            f"\n\n### Instruction:\n{r['instruction']}\n\n### Response:\n")

def pc(rows):
    return [{"prompt": alpaca_prompt(r), "completion": r["output"]} for r in rows]

SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
def sharegpt_to_messages(rows):
    return [{"messages": [{"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]} for t in r["conversations"]]} for r in rows]

def texts(rows):
    return [{"text": r["text"]} for r in rows if r["text"]]

cases = []
def case(name, tokenizer, data, rows, *, template=None, train_on_responses_only=False, max_length=None, **kw):
    tok = load_tok(tokenizer, None if template is None else open(os.path.join(OUT, template)).read())
    expected = trl_prepare(tok, rows, max_length=max_length, **kw)
    cases.append({"name": name, "tokenizer": tokenizer, "data": data, "template": template,
                  "train_on_responses_only": train_on_responses_only, "max_length": max_length,
                  "expected": expected})

for t in ["byte_bpe", "spm_bpe"]:
    case(f"text_{t}", t, "text.jsonl", texts(text_rows))
    case(f"alpaca_full_{t}", t, "alpaca.jsonl", pc(alpaca_rows), completion_only=False)
    case(f"alpaca_response_{t}", t, "alpaca.jsonl", pc(alpaca_rows), completion_only=True, train_on_responses_only=True)
case("csv_text_byte_bpe", "byte_bpe", "text.csv", texts(csv_rows))
case("alpaca_truncated_spm_bpe", "spm_bpe", "alpaca.jsonl", pc(alpaca_rows), completion_only=True,
     train_on_responses_only=True, max_length=110)
case("text_truncated_byte_bpe", "byte_bpe", "text.jsonl", texts(text_rows), max_length=8)
for t, tpl in [("byte_bpe", "chatml_generation.jinja"), ("spm_bpe", "inst_generation.jinja")]:
    case(f"messages_full_{t}", t, "messages.jsonl", messages_rows, template=tpl)
    case(f"messages_assistant_{t}", t, "messages.jsonl", messages_rows, template=tpl, assistant_only=True,
         train_on_responses_only=True)
    case(f"sharegpt_assistant_{t}", t, "sharegpt.json", sharegpt_to_messages(sharegpt_rows), template=tpl,
         assistant_only=True, train_on_responses_only=True)

for t in ["byte_bpe", "spm_bpe"]:
    case(f"straddle_assistant_{t}", t, "messages_straddle.jsonl", straddle_rows, template="straddle_generation.jinja",
         assistant_only=True, train_on_responses_only=True)

# BFD packing of the byte_bpe text examples
text_examples = cases[0]["expected"]
packs = []
for seq in [16, 24, 64]:
    ds = Dataset.from_list(text_examples)
    packed = pack_dataset(ds, seq, strategy="bfd")
    packs.append({"seq_length": seq, "rows": [{"input_ids": list(map(int, r["input_ids"])),
                                              "seq_lengths": list(map(int, r["seq_lengths"]))} for r in packed]})

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump({"transformers": transformers.__version__, "trl": trl.__version__, "cases": cases, "packing": packs}, f)
print(f"{len(cases)} cases, {len(packs)} packings")
for c in cases:
    print(c["name"], [len(e["input_ids"]) for e in c["expected"]], [sum(l != -100 for l in e["labels"]) for e in c["expected"]])
