"""LoRA fine-tuning of the shipped SmolLM2 on CPU: seconds per step and peak RSS.

For torch threads 1 and 2, in a fresh subprocess each (so RSS is the
measurement's own):

- baseline: a plain forward pass of the same example through the base model
  (no adapter, no gradients): what reading one example costs at all;
- LoRA step: what `homeo train lora` does per step (peft rank 8 on the 7
  projections; forward, backward and an AdamW step on the adapter only).

The de-quantized base is taken from the cache `homeo train lora` fills (made
here once if missing). Figures are medians over --steps after one warm-up.

    .venv/bin/python bench/lora.py
    .venv/bin/python bench/lora.py --steps 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _common import machine, table

CHILD = r"""
import json, resource, sys, time
mode, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import torch
torch.set_num_threads(threads)
from transformers import AutoModelForCausalLM, AutoTokenizer
from homeo.evolve.lora import PROJECTIONS, cached_base, default_cache_dir
from homeo.llm.providers.local import default_model_path
base = cached_base(default_model_path(), default_cache_dir())
tokenizer = AutoTokenizer.from_pretrained(base)
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
messages = [{"role": "user", "content": "How do I export the monthly sales report as CSV?"},
            {"role": "assistant", "content": "Open Reports, pick Monthly sales, then choose "
             "Export and CSV. The file downloads at once; large reports arrive by email."}]
ids = torch.tensor([tokenizer(tokenizer.apply_chat_template(messages, tokenize=False),
                              add_special_tokens=False)["input_ids"]])
if mode == "lora":
    import peft
    model = peft.get_peft_model(model, peft.LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=list(PROJECTIONS),
        task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward(); optimizer.step(); optimizer.zero_grad()
else:
    model.eval()
    def step():
        with torch.no_grad():
            model(input_ids=ids)
seconds = []
for i in range(steps + 1):
    began = time.perf_counter(); step(); seconds.append(time.perf_counter() - began)
print(json.dumps({"seconds": seconds[1:], "tokens": ids.shape[1],
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(mode: str, threads: int, steps: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(threads), str(steps)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="measured steps per row")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(machine())
    rows = []
    for threads in args.threads:
        for mode, label in (("forward", "baseline: forward pass"), ("lora", "LoRA step")):
            figures = measure(mode, threads, args.steps)
            rows.append([label, threads, figures["tokens"],
                         f"{statistics.median(figures['seconds']):.3f}",
                         f"{max(figures['seconds']):.3f}", f"{figures['rss_mib']:.0f}"])
    print(table(["what", "threads", "tokens", "s/step (median)", "s/step (max)",
                 "peak RSS MiB"], rows))


if __name__ == "__main__":
    main()
