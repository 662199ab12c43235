#!/usr/bin/env python3
"""Make the ORPO reference fixtures for the Swiftlet tests (Tests/SwiftletTests/Fixtures/orpo).

Requirements:  pip install torch transformers peft trl datasets safetensors   (made with trl 1.16)

Usage:
    python scripts/make_orpo_fixtures.py [--fixtures Tests/SwiftletTests/Fixtures]

1. Loss: the llama_gqa fixture model with its PEFT adapter (A and B non-zero) on token-id pairs, one
   of them with chosen and rejected prompts one token apart (as TRL's build_tokenized_answer can
   make them). The batch is TRL's own DPODataCollatorWithPadding + ORPOTrainer.concatenated_inputs,
   and the loss, metrics and gradients are TRL 1.16's own ORPOTrainer.get_batch_loss_metrics, run on
   a trainer object that carries only the attributes that method reads (building a whole trainer
   needs a dataset and an accelerator for nothing more). Writes orpo/pairs.json, orpo/expected.json
   (per beta: loss, metrics) and orpo/expected.safetensors (<variant>.grad.<LoRA key>).
2. Tokenization: TRL 1.16's ORPOTrainer built on the dpo/preference_*.jsonl rows with the fixture
   tokenizers and templates; its prepared train_dataset (chosen/rejected input_ids and labels) goes to
   orpo/tokenized.json.
"""

import argparse
import json
import os
import tempfile
import types
from pathlib import Path

import torch
import transformers
import trl
from datasets import Dataset
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl.experimental.orpo import ORPOConfig, ORPOTrainer
from trl.experimental.utils import DPODataCollatorWithPadding

transformers.logging.set_verbosity_error()
VARIANTS = {"beta0.1": 0.1, "beta1": 1.0}


def orpo_features(prompt, chosen, rejected, rejected_prompt=None):
    rejected_prompt = prompt if rejected_prompt is None else rejected_prompt
    f = {}
    for side, p, c in [("chosen", prompt, chosen), ("rejected", rejected_prompt, rejected)]:
        f[f"{side}_input_ids"] = p + c
        f[f"{side}_attention_mask"] = [1] * len(p + c)
        f[f"{side}_labels"] = [-100] * len(p) + c
    return f


def loss_fixture(root):
    base_dir = root / "llama_gqa"
    out = root / "orpo"
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, base_dir / "adapter", is_trainable=True)
    model.train()  # lora_dropout is 0: train and eval agree
    params = {n.replace(".default.", "."): p for n, p in model.named_parameters() if "lora_" in n}

    g = torch.Generator().manual_seed(7)
    r = lambda n: torch.randint(3, model.config.vocab_size, (n,), generator=g).tolist()
    p2 = [1] + r(5)
    pairs = [
        dict(prompt_ids=[1] + r(3), chosen_ids=r(5) + [2], rejected_ids=r(3) + [2]),
        # the rejected prompt's last token differs (merged with its completion)
        dict(prompt_ids=p2, chosen_ids=r(8) + [2], rejected_ids=r(4) + [2], rejected_prompt_ids=p2[:-1] + r(1)),
        dict(prompt_ids=[1] + r(2), chosen_ids=r(2) + [2], rejected_ids=r(6) + [2]),
    ]
    collator = DPODataCollatorWithPadding(pad_token_id=0)
    batch = collator([orpo_features(p["prompt_ids"], p["chosen_ids"], p["rejected_ids"], p.get("rejected_prompt_ids"))
                      for p in pairs])

    trainer = ORPOTrainer.__new__(ORPOTrainer)
    trainer.is_encoder_decoder = False
    trainer.padding_value = 0
    trainer.aux_loss_enabled = False
    trainer.accelerator = types.SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x)
    expected = {"trl": trl.__version__, "model": "llama_gqa", "variants": {}}
    tensors = {}
    for name, beta in VARIANTS.items():
        trainer.beta = beta
        model.zero_grad(set_to_none=True)
        loss, metrics = trainer.get_batch_loss_metrics(model, batch)
        loss.backward()
        expected["variants"][name] = dict(beta=beta, loss=loss.item(), metrics=metrics)
        for key, p in params.items():
            tensors[f"{name}.grad.{key}"] = p.grad.detach().clone().contiguous()
    (out / "pairs.json").write_text(json.dumps(pairs) + "\n")
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    save_file(tensors, out / "expected.safetensors")
    for name, v in expected["variants"].items():
        print(name, v["loss"], v["metrics"])


def trl_prepare(fixtures, tokenizer, data, template=None, max_length=None):
    tok = AutoTokenizer.from_pretrained(os.path.join(fixtures, "tokenizers", tokenizer))
    if template is not None:
        tok.chat_template = open(os.path.join(fixtures, "datasets", template)).read()
    rows = [json.loads(line) for line in open(os.path.join(fixtures, "dpo", data))]
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        args = ORPOConfig(output_dir=d, max_length=max_length, report_to=[], use_cpu=True, bf16=False)
        trainer = ORPOTrainer(model=LlamaForCausalLM(cfg), args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tok)
        keys = ["chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"]
        return [{k: list(map(int, r[k])) for k in keys} for r in trainer.train_dataset]


def tokenization_fixture(root):
    cases = []
    def case(name, tokenizer, data, template=None, max_length=1024):
        cases.append({"name": name, "tokenizer": tokenizer, "data": data, "template": template, "max_length": max_length,
                      "expected": trl_prepare(str(root), tokenizer, data, template, max_length)})
    for t in ["byte_bpe", "spm_bpe"]:
        case(f"text_{t}", t, "preference_text.jsonl")
    case("text_max_length_byte_bpe", "byte_bpe", "preference_text.jsonl", max_length=40)
    for t, tpl in [("byte_bpe", "chatml_generation.jinja"), ("spm_bpe", "inst_generation.jinja")]:
        case(f"chat_{t}", t, "preference_chat.jsonl", template=tpl)
        case(f"implicit_{t}", t, "preference_implicit.jsonl", template=tpl)
    case("chat_max_length_byte_bpe", "byte_bpe", "preference_chat.jsonl", template="chatml_generation.jinja", max_length=40)
    with open(root / "orpo" / "tokenized.json", "w") as f:
        json.dump({"transformers": transformers.__version__, "trl": trl.__version__, "cases": cases}, f)
    print("wrote", len(cases), "tokenization cases")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="Tests/SwiftletTests/Fixtures")
    root = Path(ap.parse_args().fixtures)
    (root / "orpo").mkdir(parents=True, exist_ok=True)
    loss_fixture(root)
    tokenization_fixture(root)


if __name__ == "__main__":
    main()
