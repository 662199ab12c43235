#!/usr/bin/env python3
"""Make the mixture-of-experts reference fixtures (Mixtral, Qwen3-MoE) for the Swiftlet tests.

Usage:  python scripts/make_moe_fixtures.py [--out Tests/SwiftletTests/Fixtures]

Uses make_fixtures.py's initialisation, batches and forward. Each folder holds, as there: config.json +
model.safetensors (save_pretrained: transformers 4's per-expert layout, block_sparse_moe.experts.E.w1 ...
for Mixtral, mlp.experts.E.gate_proj ... for Qwen3-MoE), adapter/ (PEFT: attention LoRA in target_modules,
the 3-D expert tensors in target_parameters with gate_up_proj's doubled rank), batch.json, and
expected.json / expected.safetensors with
    loss            CE mean + router_aux_loss_coef * aux (config output_router_logits = true)
    loss_ce, aux    the two parts
    logits, grad.<peft name>          gradients of `loss`
    grad_no_aux.<peft name>           gradients of the CE alone (output_router_logits=False)
Everything fp32, CPU, eager attention. The reference is the model re-loaded from the written files.
"""

import argparse
import json
import shutil
import sys
import warnings
from pathlib import Path

import torch
import transformers
import peft
from safetensors.torch import save_file, load_file
from transformers import MixtralConfig, MixtralForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM
from peft import LoraConfig, get_peft_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as base_fixtures  # noqa: E402  (initialisation, batches, forward, reload)
from make_fixtures import COMMON, DTYPE, batch_qwen2_bias, forward, lora_params, load_reference, random_init  # noqa: E402

MOE_COMMON = dict(COMMON, intermediate_size=24)

FIXTURES = {
    # Mixtral: 4 experts, top-2 renormalised; LoRA on the attention, every expert (w1 + w3 fused into
    # gate_up_proj with rank 2r, w2) and the router (PEFT's "gate"); right padding (the aux loss masks it).
    "mixtral_moe": dict(
        seed=1129,
        model_cls=MixtralForCausalLM,
        config=lambda: MixtralConfig(
            **MOE_COMMON, head_dim=8, max_position_embeddings=64, tie_word_embeddings=False,
            num_local_experts=4, num_experts_per_tok=2, router_aux_loss_coef=0.05, output_router_logits=True,
            sliding_window=None, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3", "gate"]),
    ),
    # Qwen3-MoE: 8 experts, top-3 without renormalisation (norm_topk_prob false), q/k norms; LoRA on q, o and
    # the experts (gate_proj + up_proj fused, down_proj), not the router; tied embeddings.
    "qwen3_moe": dict(
        seed=1150,
        model_cls=Qwen3MoeForCausalLM,
        config=lambda: Qwen3MoeConfig(
            **dict(MOE_COMMON, intermediate_size=40), head_dim=16, max_position_embeddings=64, tie_word_embeddings=True,
            num_experts=8, num_experts_per_tok=3, moe_intermediate_size=24, norm_topk_prob=False,
            decoder_sparse_step=1, mlp_only_layers=[], router_aux_loss_coef=0.05, output_router_logits=True,
            attention_bias=False, use_sliding_window=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    ),
}


def gradients(model, batch):
    params = lora_params(model)
    model.zero_grad()
    out = forward(model, batch)
    out.loss.backward()
    return out, {n: p.grad.detach().clone() for n, p in params.items()}


def make_fixture(name, spec, out_root):
    folder = out_root / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    torch.manual_seed(spec["seed"])
    g = torch.Generator().manual_seed(spec["seed"])
    cfg = spec["config"]()
    cfg._attn_implementation = "eager"
    model = spec["model_cls"](cfg).to(DTYPE)
    random_init(model, g)
    model.save_pretrained(folder)
    pm = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, bias="none", **spec["lora"]))
    with torch.no_grad():
        for n, p in sorted(lora_params(pm).items()):
            p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=DTYPE))
    pm.save_pretrained(folder / "adapter", safe_serialization=True)
    (folder / "adapter" / "README.md").unlink(missing_ok=True)
    acfg_path = folder / "adapter" / "adapter_config.json"
    acfg = json.loads(acfg_path.read_text())
    for key in ("target_modules", "target_parameters"):
        if isinstance(acfg.get(key), list):
            acfg[key] = sorted(acfg[key])  # PEFT writes sets in hash order
    acfg_path.write_text(json.dumps(acfg, indent=2, sort_keys=True))
    batch = batch_qwen2_bias(g)
    del pm, model

    saved = set(load_file(folder / "adapter" / "adapter_model.safetensors").keys())
    reference = load_reference(folder)
    assert set(lora_params(reference)) == saved, sorted(set(lora_params(reference)) ^ saved)
    inner = reference.base_model.model
    inner.config.output_router_logits = True
    out, grads = gradients(reference, batch)
    inner.config.output_router_logits = False
    plain, grads_no_aux = gradients(reference, batch)
    assert float((plain.logits - out.logits).abs().max()) == 0.0
    aux = float(out.aux_loss)
    # The GPU check (swiftlet doctor --fixtures) routes from bf16 activations: a k-th and (k+1)-th router
    # logit closer than bf16's rounding could pick another expert there, so the seeds were picked (of 1101..1150)
    # for the widest smallest gap (recorded in expected.json).
    k = inner.config.num_experts_per_tok
    gap = min(float((lg.sort(dim=-1, descending=True).values[:, k - 1] - lg.sort(dim=-1, descending=True).values[:, k]).min())
              for lg in out.router_logits)
    coef = inner.config.router_aux_loss_coef
    assert abs(out.loss.item() - (plain.loss.item() + coef * aux)) < 1e-6
    for n in grads:
        assert float(grads[n].abs().max()) > 0, f"zero gradient for {n}"
    moved = [n for n in grads if not torch.equal(grads[n], grads_no_aux[n])]
    assert moved, "the aux loss changed no gradient"

    tensors = {"logits": out.logits.detach().contiguous()}
    for n in sorted(grads):
        tensors[f"grad.{n}"] = grads[n].contiguous()
        tensors[f"grad_no_aux.{n}"] = grads_no_aux[n].contiguous()
    save_file(tensors, folder / "expected.safetensors", metadata={"format": "pt"})
    with open(folder / "batch.json", "w") as f:
        json.dump({k: None if batch[k] is None else batch[k].tolist()
                   for k in ["input_ids", "labels", "attention_mask", "position_ids"]}, f)
        f.write("\n")
    expected = {
        "loss": out.loss.item(), "loss_ce": plain.loss.item(), "aux": aux, "router_aux_loss_coef": coef,
        "num_target_tokens": int((batch["labels"][:, 1:] != -100).sum()),
        "smallest_router_logit_gap": gap,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "notes": "loss = CE mean + router_aux_loss_coef * load_balancing_loss_func(router logits of every layer, "
                 "num_experts, top_k, attention_mask); grad.* of loss, grad_no_aux.* of the CE alone. "
                 f"Gradients the aux loss moves: {len(moved)} of {len(grads)} tensors.",
    }
    with open(folder / "expected.json", "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    print(f"{name}: loss={out.loss.item()!r} ce={plain.loss.item()!r} aux={aux!r} moved={len(moved)}/{len(grads)} gap={gap:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "Tests" / "SwiftletTests" / "Fixtures"))
    args = ap.parse_args()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(DTYPE)
    for name, spec in FIXTURES.items():
        make_fixture(name, spec, Path(args.out))


if __name__ == "__main__":
    main()
