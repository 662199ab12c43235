"""Issue 7's table from RESULT lines (bench/issue7.sh's log, or any file of them): each Swiftlet run beside
the HF + PEFT baseline of the same architecture, 4-bit setting and checkpointing (offload compares with
checkpointing on: the baseline has no offload), the speed and memory ratios, and each row's targets.
Memory is peak allocated bytes on both sides: torch's max_memory_allocated, and Swiftlet's requests
rounded to 512 (peak_requested_gib; peak_gib, its allocator's bins, where a run predates that field).
A row's target is met when one Swiftlet configuration meets both its speed and its memory target.

    python3 bench/issue7_table.py LOG [LOG ...]
"""
import json
import sys

# (arch, fourbit): (speed ≥, memory ≤), from issue 7
TARGETS = {
    ("llama2-7b", 0): (2.0, 0.9),
    ("llama2-7b", 1): (3.0, 0.6),
    ("tinyllama", 0): (2.5, 0.6),
    ("tinyllama", 1): (3.5, 0.25),
    ("mistral-7b", 1): (3.0, 0.6),
}


def results(paths):
    """Each file's RESULT lines, in order, with the file's index (baselines pair within their own call)."""
    for index, path in enumerate(paths):
        for line in open(path):
            if "RESULT" in line:
                try:
                    row = json.loads(line.split("RESULT", 1)[1])
                except json.JSONDecodeError:
                    continue
                row["_call"] = index
                yield row


def table(rows):
    """Markdown lines, a summary per target row, and whether every target row that has runs is met.
    A Swiftlet run pairs with the latest baseline before it in the same file (bench/issue7.sh runs each
    baseline just before the Swiftlet runs it stands beside)."""
    baselines = {}
    lines = ["| config | checkpointing | HF + PEFT tok/s | HF peak GiB | Swiftlet tok/s | Swiftlet peak GiB | speed | memory | target | |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    met = {}
    for r in rows:
        if r.get("system") == "hf+peft" and r.get("bsz") == 2 and r.get("seq") == 2048:
            baselines[(r["_call"], r["arch"], r.get("fourbit", 0), r["gc"])] = r
            continue
        if not r.get("system", "").startswith("swiftlet") or r.get("objective", "sft") != "sft":
            continue
        key = (r["arch"], r.get("fourbit", 0))
        base = baselines.get((r["_call"],) + key + (r["gc"],))
        if base is None:
            continue
        speed = r["tok_s"] / base["tok_s"]
        peak = r.get("peak_requested_gib", r["peak_gib"])
        memory = peak / base["peak_gib"]
        mode = "offload" if r.get("offload") else ("on" if r["gc"] else "off")
        target = TARGETS.get(key)
        ok = target is not None and speed >= target[0] and memory <= target[1]
        if target is not None and r["gc"]:
            met[key] = met.get(key, False) or ok
        name = f"{r['arch']} {'QLoRA' if key[1] else 'bf16'}"
        goal = f"{target[0]}x / {target[1]}x" if target else "-"
        lines.append(f"| {name} | {mode} | {base['tok_s']:,.0f} | {base['peak_gib']} | {r['tok_s']:,.0f} | {peak} | "
                     f"{speed:.2f}x | {memory:.3f}x | {goal} | {'met' if ok else ''} |")
    summary = [f"{arch} {'QLoRA' if four else 'bf16'}: {'met' if ok else 'NOT met'}" for (arch, four), ok in met.items()]
    return lines, summary, bool(met) and all(met.values())


if __name__ == "__main__":
    lines, summary, all_met = table(list(results(sys.argv[1:])))
    print("\n".join(lines))
    print("targets (with checkpointing): " + "; ".join(summary))
    sys.exit(0 if all_met else 1)
