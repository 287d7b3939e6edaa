"""Training speed and memory: `prefcli train` against TRL's DPOTrainer, and MC-PO's cost over DPO.

Setup (the issue's): a generated tiny Llama (hidden 256, 4 layers, vocab 2048, ~3.2M parameters), 256 synthetic
records with 4 candidates each (a pair's rejected is the first), batch 8, max length 256, 20 optimizer steps.
Each run is its own subprocess (fresh interpreter, same thread count); we time every optimizer step and compare
median step times (robust to a noisy shared machine), also printing the total step time, and read the process's
peak RSS.

- prefcli dpo vs TRL DPOTrainer (separate reference model, as TRL runs it by default with a ref model given):
  pairs/s ratio (target >= 2x) and peak RSS (target <= TRL's). prefcli's one-off reference precompute is timed
  apart and also reported folded into the step time.
- prefcli mcpo --negatives 1 and --negatives 4: time per step relative to prefcli dpo (targets <= 1.6x, 2.5x).

Run: python benchmarks/train_speed.py [--steps 20] [--threads N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH, MAX_LENGTH, MAX_PROMPT_LENGTH, RECORDS, CANDIDATES = 8, 256, 128, 256, 4
LR = 1e-6


def make_assets(root: Path, seed: int = 0) -> tuple[Path, Path]:
    from prefcli.fixtures import build_tiny_model, synthetic_sentence

    model = build_tiny_model(root / "model", hidden_size=256, num_layers=4, vocab_size=2048)
    rng = random.Random(seed)

    def paragraph(low: int, high: int) -> str:
        return " ".join(synthetic_sentence(rng, 6, 14) for _ in range(rng.randint(low, high)))

    data = root / "records.jsonl"
    with data.open("w", encoding="utf-8") as handle:
        for index in range(RECORDS):
            candidates = [paragraph(4, 12) for _ in range(CANDIDATES)]
            record = {"id": index, "prompt": [{"role": "user", "content": paragraph(2, 5)}],
                      "chosen": paragraph(4, 12), "rejected": candidates[0], "candidates": candidates, "meta": {}}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return model, data


# ---- workers (run in their own process) -------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_prefcli(args) -> dict:
    from prefcli.train import TrainConfig, train

    extra = {"negatives": args.negatives} if args.loss != "dpo" else {}
    config = TrainConfig(model=args.model, data=args.data, output=args.output, loss=args.loss, batch_size=BATCH,
                         max_steps=args.steps, max_length=MAX_LENGTH, max_prompt_length=MAX_PROMPT_LENGTH, lr=LR,
                         scheduler="linear", warmup=0, seed=0, ref_cache_dir=args.cache, **extra)
    summary = train(config)
    from prefcli.train.metrics import read_metrics

    steps = [line["step_seconds"] for line in read_metrics(Path(args.output) / "metrics.jsonl")]
    return {"step_seconds": summary["train_seconds"], "steps": steps, "reference_seconds": summary["reference_seconds"],
            "peak_rss_mb": peak_rss_mb(), "final_loss": summary["final_loss"]}


def worker_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    rows = []
    for line in Path(args.data).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        rows.append({"prompt": record["prompt"], "chosen": [{"role": "assistant", "content": record["chosen"]}],
                     "rejected": [{"role": "assistant", "content": record["rejected"]}]})
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    ref_model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    times: dict[str, float] = {}
    steps: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            times["begin"] = time.perf_counter()
            times.setdefault("first", times["begin"])

        def on_step_end(self, *_, **__):
            times["last"] = time.perf_counter()
            steps.append(times["last"] - times["begin"])

    config = DPOConfig(output_dir=args.output, per_device_train_batch_size=BATCH, max_steps=args.steps,
                       learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0, max_length=MAX_LENGTH,
                       logging_steps=1, save_strategy="no", report_to=[], seed=0, bf16=False, fp16=False,
                       use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
                       precompute_ref_log_probs=False, beta=0.1, disable_tqdm=True)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=[StepClock()])
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"step_seconds": times["last"] - times["first"], "steps": steps, "reference_seconds": 0.0, "peak_rss_mb": peak_rss_mb(),
            "final_loss": losses[-1] if losses else None}


def run_worker(kind: str, threads: int, **kwargs) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--threads", str(threads)]
    for key, value in kwargs.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", type=Path, default=None, help="write assets and runs here (kept)")
    parser.add_argument("--worker", choices=("prefcli", "trl"), default=None)
    parser.add_argument("--model"), parser.add_argument("--data"), parser.add_argument("--output")
    parser.add_argument("--cache"), parser.add_argument("--loss", default="dpo")
    parser.add_argument("--negatives", type=int, default=1)
    args = parser.parse_args()

    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        result = worker_prefcli(args) if args.worker == "prefcli" else worker_trl(args)
        print(json.dumps(result))
        return

    root = args.keep or Path(tempfile.mkdtemp(prefix="prefcli-train-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    model, data = make_assets(root)
    common = {"model": model, "data": data, "steps": args.steps}
    print(f"tiny Llama (hidden 256, 4 layers, vocab 2048), {RECORDS} records x {CANDIDATES} candidates, batch "
          f"{BATCH}, max length {MAX_LENGTH}, {args.steps} steps, {args.threads} threads")
    results = {
        "trl dpo": run_worker("trl", args.threads, output=root / "trl", **common),
        "prefcli dpo": run_worker("prefcli", args.threads, output=root / "dpo", cache=root / "cache-dpo",
                                  loss="dpo", **common),
        "prefcli mcpo K=1": run_worker("prefcli", args.threads, output=root / "mcpo1", cache=root / "cache-mcpo1",
                                       loss="mcpo", negatives=1, **common),
        "prefcli mcpo K=4": run_worker("prefcli", args.threads, output=root / "mcpo4", cache=root / "cache-mcpo4",
                                       loss="mcpo", negatives=4, **common),
    }
    for result in results.values():
        result["median"] = statistics.median(result["steps"])
    print(f"\n{'run':<18}{'median s/step':>14}{'pairs/s':>9}{'total steps s':>15}{'ref precompute s':>18}"
          f"{'peak RSS MB':>13}{'final loss':>12}")
    for name, result in results.items():
        print(f"{name:<18}{result['median']:>14.3f}{BATCH / result['median']:>9.1f}{result['step_seconds']:>15.1f}"
              f"{result['reference_seconds']:>18.2f}{result['peak_rss_mb']:>13.0f}{result['final_loss']:>12.4f}")
    trl, dpo = results["trl dpo"], results["prefcli dpo"]
    speedup = trl["median"] / dpo["median"]
    with_precompute = trl["step_seconds"] / (dpo["step_seconds"] + dpo["reference_seconds"])
    print(f"\nprefcli dpo vs TRL DPOTrainer: {speedup:.2f}x pairs/s (median step; target >= 2x: "
          f"{'met' if speedup >= 2 else 'NOT met'}); {trl['step_seconds'] / dpo['step_seconds']:.2f}x on total "
          f"step time; {with_precompute:.2f}x counting the one-off reference precompute of all {RECORDS} records")
    print(f"peak RSS: prefcli {dpo['peak_rss_mb']:.0f} MB vs TRL {trl['peak_rss_mb']:.0f} MB "
          f"(target <= TRL: {'met' if dpo['peak_rss_mb'] <= trl['peak_rss_mb'] else 'NOT met'})")
    for negatives, target in ((1, 1.6), (4, 2.5)):
        ratio = results[f"prefcli mcpo K={negatives}"]["median"] / dpo["median"]
        print(f"mcpo --negatives {negatives} step time / dpo step time: {ratio:.2f}x (median step; target <= "
              f"{target}x: {'met' if ratio <= target else 'NOT met'})")

if __name__ == "__main__":
    main()
