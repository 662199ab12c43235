#!/usr/bin/env python3
"""Make the DPO reference fixture for the Swiftlet tests (Tests/SwiftletTests/Fixtures/dpo).

Requirements:  pip install torch transformers peft trl safetensors   (made with trl 1.16)

Usage:
    python scripts/make_dpo_fixtures.py [--fixtures Tests/SwiftletTests/Fixtures]

The model is the llama_gqa fixture (base + its PEFT adapter, whose A and B are both non-zero).
Preference pairs are token ids (prompt_ids / chosen_ids / rejected_ids, what TRL's tokenize_fn
produces); the batch is made by TRL's own DataCollatorForPreference (max_length, keep_start), so
the chosen rows come first, then the rejected rows, right-padded. The loss is TRL 1.16's
DPOTrainer._compute_loss reproduced in torch on that batch (TRL's version calls the model with
a fused LM head that only its patched models accept): per-sequence sums of completion log-probs,
the reference from the same PEFT model under disable_adapter(), the per-type loss and the
metrics with TRL's names. For "sigmoid" with label_smoothing > 0 the formula is the
conservative-DPO one of TRL < 1.0 (1.16's "sigmoid" ignores label_smoothing; with 0 they agree).

Writes dpo/pairs.json, dpo/expected.json (per variant: loss, metrics, per-sequence log-probs)
and dpo/expected.safetensors (<variant>.grad.<LoRA key>, dL/dW of the mean loss over pairs).
"""

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
import trl
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
from peft import PeftModel
from trl.trainer.dpo_trainer import DataCollatorForPreference

VARIANTS = {
    "sigmoid": dict(loss_type="sigmoid", beta=0.1, label_smoothing=0.0),
    "sigmoid_smoothed": dict(loss_type="sigmoid", beta=0.5, label_smoothing=0.1),
    "ipo": dict(loss_type="ipo", beta=0.1, label_smoothing=0.0),
    "hinge": dict(loss_type="hinge", beta=2.0, label_smoothing=0.0),
}
MAX_LENGTH = 13


def make_pairs(g, vocab):
    r = lambda n: torch.randint(1, vocab, (n,), generator=g).tolist()
    # lengths: short, one that max_length truncates inside the completion, and unequal completions
    return [
        dict(prompt_ids=r(4), chosen_ids=r(5), rejected_ids=r(3)),
        dict(prompt_ids=r(6), chosen_ids=r(9), rejected_ids=r(4)),
        dict(prompt_ids=r(3), chosen_ids=r(2), rejected_ids=r(7)),
    ]


def sequence_logps(model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tok = torch.gather(logp, 2, batch["input_ids"][:, 1:, None]).squeeze(2)
    return (tok * batch["completion_mask"][:, 1:]).sum(dim=1)


def dpo_loss(v, logps, ref_logps, completion_mask):
    beta, eps = v["beta"], v["label_smoothing"]
    chosen, rejected = logps.chunk(2)
    ref_chosen, ref_rejected = ref_logps.chunk(2)
    chosen_lr, rejected_lr = chosen - ref_chosen, rejected - ref_rejected
    delta = chosen_lr - rejected_lr
    if v["loss_type"] == "sigmoid":
        per = -(1 - eps) * F.logsigmoid(beta * delta) - eps * F.logsigmoid(-beta * delta)
    elif v["loss_type"] == "hinge":
        per = torch.relu(1 - beta * delta)
    elif v["loss_type"] == "ipo":
        cm, rm = completion_mask.chunk(2)
        d = chosen_lr / cm.sum(dim=1).clamp(min=1.0) - rejected_lr / rm.sum(dim=1).clamp(min=1.0)
        per = (d - 1 / (2 * beta)) ** 2
    loss = per.mean()
    cr, rr = beta * chosen_lr.detach(), beta * rejected_lr.detach()
    metrics = {
        "rewards/chosen": cr.mean().item(), "rewards/rejected": rr.mean().item(),
        "rewards/accuracies": (cr > rr).float().mean().item(), "rewards/margins": (cr - rr).mean().item(),
        "logps/chosen": chosen.detach().mean().item(), "logps/rejected": rejected.detach().mean().item(),
    }
    return loss, metrics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="Tests/SwiftletTests/Fixtures")
    args = ap.parse_args()
    root = Path(args.fixtures)
    base_dir = root / "llama_gqa"
    out = root / "dpo"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, base_dir / "adapter", is_trainable=True)
    model.train()  # lora_dropout is 0: train and eval agree
    params = {n.replace(".default.", "."): p for n, p in model.named_parameters() if "lora_" in n}

    pairs = make_pairs(torch.Generator().manual_seed(2024), model.config.vocab_size)
    collator = DataCollatorForPreference(pad_token_id=0, max_length=MAX_LENGTH, truncation_mode="keep_start")
    batch = collator([dict(p) for p in pairs])

    with torch.no_grad(), model.disable_adapter():
        ref_logps = sequence_logps(model, batch)
    expected = {"max_length": MAX_LENGTH, "pad_token_id": 0, "trl": trl.__version__,
                "model": "llama_gqa", "ref_logps": ref_logps.tolist(),
                "input_ids": batch["input_ids"].tolist(), "completion_mask": batch["completion_mask"].tolist(),
                "attention_mask": batch["attention_mask"].tolist(), "variants": {}}
    tensors = {}
    for name, v in VARIANTS.items():
        model.zero_grad(set_to_none=True)
        logps = sequence_logps(model, batch)
        loss, metrics = dpo_loss(v, logps, ref_logps, batch["completion_mask"])
        loss.backward()
        expected["variants"][name] = dict(v, loss=loss.item(), metrics=metrics, logps=logps.tolist())
        for key, p in params.items():
            tensors[f"{name}.grad.{key}"] = p.grad.detach().clone().contiguous()
    (out / "pairs.json").write_text(json.dumps(pairs) + "\n")
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    save_file(tensors, out / "expected.safetensors")
    for name, v in expected["variants"].items():
        print(name, v["loss"], v["metrics"])


if __name__ == "__main__":
    main()
