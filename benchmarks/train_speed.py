"""Training speed and memory: `prefcli train` against TRL's DPOTrainer, and MC-PO's cost over DPO.

Setup (the issue's): a generated tiny Llama (hidden 256, 4 layers; its BPE tokenizer, trained on the synthetic
corpus with a 2,048 target, has 611 tokens: 4.5M parameters; the script prints both), 256 synthetic
records with 4 candidates each (a pair's rejected is the first), batch 8, max length 256, 20 optimizer steps, fp32.
Each run is its own subprocess (fresh interpreter, same thread count). Measured per run: the whole process's wall
time (interpreter start to exit: imports, tokenization, model loading, reference log-probs, steps, saving), every
optimizer step's time (median), prefcli's start-up and reference seconds (from its summary) and peak RSS.

Like with like: TRL 1.16's DPOConfig defaults to bf16 and gradient checkpointing, which on a CPU run ~14x slower;
both are turned off here (``bf16=False, gradient_checkpointing=False``), so both trainers run fp32 without
recomputation. TRL gets the reference as a separate model (its default with ``ref_model`` given) and computes
reference log-probs every step (``precompute_ref_log_probs=False``, its default); prefcli scores them once, for the
rows the run reaches, into a fresh cache (a second prefcli run then reuses it: "warm cache").

The machine is shared and noisy: rounds are interleaved (TRL, prefcli fresh, prefcli warm in each round) and the
ratio is taken within each round (TRL and prefcli run minutes apart, under about the same load); the median and
range of the per-round ratios are reported. Goals (issue 11): whole process >= 2x TRL with a fresh cache, median
step >= 2.5x.

Work per step (``--flops``, one extra untimed run of each trainer under torch's profiler): the matmul FLOPs per
optimizer step, counted by the profiler (``aten::mm``/``addmm``/``bmm``; attention kernels are not counted) —
TRL's (policy forward + backward + reference forward) against prefcli's (policy forward + backward, plus its
reference pass spread over the steps). Their ratio is the per-step speed-up a trainer reaches by doing less work at
the same matmul efficiency: the ceiling for the per-step ratio.

Run: python benchmarks/train_speed.py [--rounds 3] [--steps 20] [--threads N] [--mcpo] [--flops] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefcli.train.summary import process_age

STARTED = time.perf_counter() - process_age()  # this process's start, on the perf_counter clock

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


def describe_model(path: Path) -> str:
    """``hidden 256, 4 layers, vocab 611, 4.51M parameters`` of the model at ``path``."""
    from safetensors import safe_open

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    with safe_open(str(path / "model.safetensors"), "pt") as weights:
        parameters = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return (f"hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, vocab {config['vocab_size']}, "
            f"{parameters / 1e6:.2f}M parameters")


# ---- workers (run in their own process) -------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def matmul_gflop(function, *args, **kwargs) -> tuple[object, float]:
    """``function(*args, **kwargs)`` and the GFLOPs of the matmuls it ran (torch profiler's count)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as profiler:
        result = function(*args, **kwargs)
    return result, sum(event.flops for event in profiler.key_averages() if event.key in MATMUL_OPS) / 1e9


def count_prefcli_flops(args) -> dict:
    """Matmul GFLOPs of prefcli's optimizer steps and of its reference pass, per optimizer step."""
    import prefcli.train.loop as loop

    counted = {}

    def counting(name, original):
        def wrapper(*inner, **kwargs):
            result, counted[name] = matmul_gflop(original, *inner, **kwargs)
            return result
        return wrapper

    loop.run_steps = counting("steps", loop.run_steps)
    loop.setup_reference = counting("reference", loop.setup_reference)
    worker_prefcli(args)
    return {"step_gflop": counted["steps"] / args.steps, "reference_gflop": counted["reference"] / args.steps}


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
            "startup_seconds": summary["startup_seconds"], "reference": summary["reference"],
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
                       precompute_ref_log_probs=False, beta=0.1, disable_tqdm=True, gradient_checkpointing=False)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=[StepClock()])
    if args.flops:
        return {"step_gflop": matmul_gflop(trainer.train)[1] / args.steps, "reference_gflop": 0.0}
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"step_seconds": times["last"] - times["first"], "steps": steps, "reference_seconds": 0.0,
            "startup_seconds": times["first"] - STARTED, "reference": "every step",
            "peak_rss_mb": peak_rss_mb(), "final_loss": losses[-1] if losses else None}


def run_worker(kind: str, threads: int, **kwargs) -> dict:
    """Run one worker process; its result plus ``wall_seconds``, the whole process from spawn to exit."""
    command = [sys.executable, __file__, "--worker", kind, "--threads", str(threads)]
    for key, value in kwargs.items():
        command += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{done.stderr[-4000:]}")
    result = {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_seconds": wall}
    Path(f"{kwargs['output']}.json").write_text(json.dumps(result), encoding="utf-8")  # for --report
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--mcpo", action="store_true", help="also time mcpo --negatives 1 and 4 (one round)")
    parser.add_argument("--flops", action="store_true", help="also count each trainer's matmul work per step")
    parser.add_argument("--keep", type=Path, default=None, help="write assets and runs here (kept)")
    parser.add_argument("--report", type=Path, default=None,
                        help="only print the comparison of the runs finished so far in this --keep directory")
    parser.add_argument("--worker", choices=("prefcli", "trl"), default=None)
    parser.add_argument("--model"), parser.add_argument("--data"), parser.add_argument("--output")
    parser.add_argument("--cache"), parser.add_argument("--loss", default="dpo")
    parser.add_argument("--negatives", type=int, default=1)
    args = parser.parse_args()

    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        if args.worker == "prefcli":
            result = count_prefcli_flops(args) if args.flops else worker_prefcli(args)
        else:
            result = worker_trl(args)
        print(json.dumps(result))
        return

    if args.report:
        report(collect(args.report), args.report)
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="prefcli-train-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    model, data = make_assets(root)
    common = {"model": model, "data": data, "steps": args.steps}
    print(f"tiny Llama ({describe_model(model)}), {RECORDS} records x {CANDIDATES} candidates, batch "
          f"{BATCH}, max length {MAX_LENGTH}, {args.steps} steps, fp32, {args.threads} threads, {args.rounds} "
          "interleaved rounds; TRL with bf16=False, gradient_checkpointing=False")
    rounds: dict[str, list[dict]] = {"trl dpo": [], "prefcli dpo (fresh cache)": [], "prefcli dpo (warm cache)": []}
    for index in range(args.rounds):
        work = root / f"round-{index}"
        rounds["trl dpo"].append(run_worker("trl", args.threads, output=work / "trl", **common))
        rounds["prefcli dpo (fresh cache)"].append(
            run_worker("prefcli", args.threads, output=work / "dpo", cache=work / "cache", loss="dpo", **common))
        rounds["prefcli dpo (warm cache)"].append(
            run_worker("prefcli", args.threads, output=work / "dpo-warm", cache=work / "cache", loss="dpo",
                       **common))
    if args.mcpo:
        for negatives in (1, 4):
            rounds[f"prefcli mcpo K={negatives}"] = [run_worker(
                "prefcli", args.threads, output=root / f"mcpo{negatives}", cache=root / f"cache-mcpo{negatives}",
                loss="mcpo", negatives=negatives, **common)]

    work = None
    if args.flops:
        for kind in ("trl", "prefcli"):
            shutil.rmtree(root / f"flops-{kind}", ignore_errors=True)
        work = {kind: run_worker(kind, args.threads, output=root / f"flops-{kind}", cache=root / "cache-flops",
                                 flops=True, **common)
                for kind in ("trl", "prefcli")}
    report(rounds, root)
    if work:
        report_work(work)


RUNS = {"trl": "trl dpo", "dpo": "prefcli dpo (fresh cache)", "dpo-warm": "prefcli dpo (warm cache)",
        "mcpo1": "prefcli mcpo K=1", "mcpo4": "prefcli mcpo K=4"}


def collect(root: Path) -> dict[str, list[dict]]:
    """The saved results of every finished worker under ``root`` (round-N/NAME.json, NAME.json)."""
    rounds: dict[str, list[dict]] = {}
    for stem, name in RUNS.items():
        for path in sorted(root.glob(f"round-*/{stem}.json")) + sorted(root.glob(f"{stem}.json")):
            rounds.setdefault(name, []).append(json.loads(path.read_text(encoding="utf-8")))
    return rounds


def round_ratios(rounds: dict[str, list[dict]], name: str, key: str) -> list[float]:
    """TRL's time over prefcli's for each round both finished: both ran minutes apart under the same load."""
    return [trl[key] / ours[key] for trl, ours in zip(rounds["trl dpo"], rounds.get(name, []))]


def spread(ratios: list[float]) -> str:
    if not ratios:
        return "n/a"
    return (f"median {statistics.median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x over "
            f"{len(ratios)} round(s)")


def report(rounds: dict[str, list[dict]], root: Path) -> None:
    best = {}
    rounds = {name: runs for name, runs in rounds.items() if runs}
    for name, runs in rounds.items():
        for run in runs:
            run["median"] = statistics.median(run["steps"])
        best[name] = {"median": min(r["median"] for r in runs), "wall": min(r["wall_seconds"] for r in runs),
                      "startup": min(r["startup_seconds"] for r in runs),
                      "reference": min(r["reference_seconds"] for r in runs),
                      "rss": max(r["peak_rss_mb"] for r in runs), "loss": runs[0]["final_loss"]}
    print(f"\n{'run (best of rounds)':<28}{'median s/step':>14}{'pairs/s':>9}{'start-up s':>11}{'reference s':>12}"
          f"{'whole process s':>16}{'peak RSS MB':>13}{'final loss':>12}")
    for name, b in best.items():
        print(f"{name:<28}{b['median']:>14.3f}{BATCH / b['median']:>9.1f}{b['startup']:>11.1f}{b['reference']:>12.2f}"
              f"{b['wall']:>16.1f}{b['rss']:>13.0f}{b['loss']:>12.4f}")
    print("\nper round (whole process s): " + "; ".join(
        f"{name}: " + ", ".join(f"{r['wall_seconds']:.1f}" for r in runs) for name, runs in rounds.items()))
    if "trl dpo" not in best or "prefcli dpo (fresh cache)" not in best:
        print(f"\n(no TRL / prefcli pair finished yet in {root})")
        return
    trl, fresh, warm = best["trl dpo"], best["prefcli dpo (fresh cache)"], best.get("prefcli dpo (warm cache)")
    step_ratios = round_ratios(rounds, "prefcli dpo (fresh cache)", "median")
    whole_ratios = round_ratios(rounds, "prefcli dpo (fresh cache)", "wall_seconds")
    print("\nprefcli dpo vs TRL DPOTrainer, ratio within each round (TRL time / prefcli time):")
    print(f"  per step (median step): {spread(step_ratios)} (goal >= 2.5x: "
          f"{'met' if statistics.median(step_ratios) >= 2.5 else 'NOT met'} on the median round)")
    print(f"  whole process, fresh reference cache: {spread(whole_ratios)} (goal >= 2x: "
          f"{'met' if statistics.median(whole_ratios) >= 2 else 'NOT met'} on the median round)")
    if warm is not None:
        print(f"  whole process, warm reference cache: "
              f"{spread(round_ratios(rounds, 'prefcli dpo (warm cache)', 'wall_seconds'))}")
    print(f"  peak RSS: prefcli {fresh['rss']:.0f} MB vs TRL {trl['rss']:.0f} MB")
    for negatives, target in ((1, 1.6), (4, 2.5)):
        name = f"prefcli mcpo K={negatives}"
        if name in best:
            ratio = best[name]["median"] / fresh["median"]
            print(f"mcpo --negatives {negatives} step time / dpo step time: {ratio:.2f}x (median step; target <= "
                  f"{target}x: {'met' if ratio <= target else 'NOT met'})")



def report_work(work: dict[str, dict]) -> None:
    theirs, ours, reference = (work["trl"]["step_gflop"], work["prefcli"]["step_gflop"],
                               work["prefcli"]["reference_gflop"])
    print(f"matmul work per optimizer step: TRL {theirs:.1f} GFLOP (policy + reference), prefcli {ours:.1f} GFLOP "
          f"(+ {reference:.1f} in its reference pass): {theirs / ours:.2f}x less per step, "
          f"{theirs / (ours + reference):.2f}x with the reference pass: the ratios reached at TRL's matmul efficiency")


if __name__ == "__main__":
    main()
