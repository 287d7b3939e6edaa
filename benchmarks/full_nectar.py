"""Full-size data: time to the first optimizer step and peak memory of `prefcli train` on a 183k-row Nectar-shaped
file, cold and with a warm cache, beside TRL 1.16's DPOTrainer tokenizing the same pairs (its `datasets.map`).

Assets (made once, untimed, kept under --work): the benchmark model of `train_speed.py` (a random Llama, hidden 256,
4 layers, a 611-token BPE vocabulary, 4.5M parameters), `prefcli fixtures nectar --rows 183000` (about 1 GB) →
`prefcli prepare nectar` → `nectar-183k.jsonl`, and the same pairs (prompt messages, chosen, rejected) as
conversational rows for TRL.

Measured, each run its own process, started and timed from here:

- prefcli: the real command line, `prefcli train --model M --data nectar-183k.jsonl --loss mcpo --negatives 4
  --batch-size 4 --max-steps 2 --max-length 512 --output runs/x`, its stderr read as a log (not a terminal): the
  first optimizer step is the moment its `train: 1/2` progress line arrives. Cold = no `.prefcli-cache` beside the
  data (record index, token cache and reference cache all rebuilt); warm = the cache the cold run left.
- TRL: `datasets.load_dataset("json")` of the pairs + `DPOTrainer(...).train()` with `max_steps=2`, batch 4,
  `max_length=512`, fp32, no gradient checkpointing; the first step is its first `on_step_end`. Cold = an empty
  `HF_DATASETS_CACHE`; warm = the cache the cold run left (its `map` results are reused by fingerprint).
- A `--max-steps 200` prefcli run on the warm cache: its peak RSS against the 2-step run's.

Peak RSS is the child's own `ru_maxrss` (``os.wait4``). Rounds interleave prefcli and TRL so machine noise hits
both; the best of the rounds is reported. The machine may be shared: run it under `nice` and read ratios, not
absolute times, as the comparable figures.

prefcli runs in its default reference mode: the reference log-probs of the examples the run's steps reach (2 or
200 batches, not 183k records) are scored before the first step and cached beside the data, so the warm run loads
them. `--no-precompute-ref` scores the frozen reference on every step instead, as TRL does by default.

Run: nice -n 5 python benchmarks/full_nectar.py [--work DIR] [--rows 183000] [--rounds 1] [--long-steps 200]
     [--skip-trl] [--no-precompute-ref]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BATCH, MAX_LENGTH, NEGATIVES, STEPS = 4, 512, 4, 2
GOALS = {"cold_s": 120.0, "warm_s": 15.0, "rss_mb": 2048.0}


def _env(**extra) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TRANSFORMERS_VERBOSITY": "error", **extra}


def _prefcli(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefcli", *args]


def make_assets(work: Path, rows: int) -> dict:
    from prefcli.fixtures import build_tiny_model

    work.mkdir(parents=True, exist_ok=True)
    model = work / "model"
    if not (model / "config.json").is_file():
        build_tiny_model(model, hidden_size=256, num_layers=4, vocab_size=2048)
    raw, data = work / f"nectar-raw-{rows}.jsonl", work / "data" / f"nectar-{rows}.jsonl"
    if not data.is_file():
        data.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(_prefcli("fixtures", "nectar", str(raw), "--rows", str(rows)), check=True, env=_env(),
                       stdout=subprocess.DEVNULL)
        subprocess.run(_prefcli("prepare", "nectar", "--input", str(raw), "--output", str(data)), check=True,
                       env=_env(), stdout=subprocess.DEVNULL)
        raw.unlink()
    pairs = work / f"trl-pairs-{rows}.jsonl"
    if not pairs.is_file():
        with data.open(encoding="utf-8") as source, pairs.open("w", encoding="utf-8") as sink:
            for line in source:
                record = json.loads(line)
                sink.write(json.dumps({"prompt": record["prompt"],
                                       "chosen": [{"role": "assistant", "content": record["chosen"]}],
                                       "rejected": [{"role": "assistant", "content": record["rejected"]}]},
                                      ensure_ascii=False) + "\n")
    return {"model": model, "data": data, "pairs": pairs}


def timed(command: list[str], env: dict, data_ready_marker: tuple[str, ...], first_step_marker: str) -> dict:
    """Run ``command``; seconds from launch to the first stderr line holding ``data_ready_marker`` (the training
    data is tokenized; every part of the tuple), to the first holding ``first_step_marker`` and to exit, and the
    child's peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    data_ready = first_step = None
    tail: list[str] = []
    for line in process.stderr:
        if data_ready is None and all(part in line for part in data_ready_marker):
            data_ready = time.perf_counter() - started
        if first_step is None and first_step_marker in line:
            first_step = time.perf_counter() - started
        tail = (tail + [line])[-40:]
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}\n{''.join(tail)}")
    return {"data_ready_s": data_ready, "first_step_s": first_step, "total_s": time.perf_counter() - started,
            "peak_rss_mb": usage.ru_maxrss / 1024, "log": "".join(tail)}


def run_prefcli(assets: dict, output: Path, steps: int, precompute_ref: bool) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    command = _prefcli("train", "--model", str(assets["model"]), "--data", str(assets["data"]), "--loss", "mcpo",
                       "--negatives", str(NEGATIVES), "--batch-size", str(BATCH), "--max-steps", str(steps),
                       "--max-length", str(MAX_LENGTH), "--output", str(output),
                       "--precompute-ref" if precompute_ref else "--no-precompute-ref")
    return timed(command, _env(), ("tokenize: ", "(100.0%)"), f"train: 1/{steps} ")


def run_trl(assets: dict, output: Path, datasets_cache: Path) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, __file__, "--trl-worker", "--model", str(assets["model"]), "--pairs",
               str(assets["pairs"]), "--output", str(output)]
    return timed(command, _env(HF_DATASETS_CACHE=str(datasets_cache)), ("data ready",), "first optimizer step")


def trl_worker(args) -> None:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class FirstStep(TrainerCallback):
        def on_train_begin(self, *_, **__):
            print("data ready", file=sys.stderr, flush=True)

        def on_step_end(self, _args, state, *_, **__):
            if state.global_step == 1:
                print("first optimizer step", file=sys.stderr, flush=True)

    dataset = load_dataset("json", data_files=args.pairs, split="train")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    config = DPOConfig(output_dir=args.output, per_device_train_batch_size=BATCH, max_steps=STEPS,
                       max_length=MAX_LENGTH, learning_rate=1e-6, logging_steps=1, save_strategy="no", report_to=[],
                       seed=0, bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True,
                       dataloader_num_workers=0, disable_tqdm=True)
    DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
               callbacks=[FirstStep()]).train()


def _fmt(value) -> str:
    return "-" if value is None else f"{value:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-full-nectar"))
    parser.add_argument("--rows", type=int, default=183_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--long-steps", type=int, default=200, help="0: skip the long run")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--precompute-ref", action=argparse.BooleanOptionalAction, default=True,
                        help="prefcli's default reference mode (reached rows scored once, cached); "
                             "--no-precompute-ref scores the reference every step")
    parser.add_argument("--trl-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model"), parser.add_argument("--pairs"), parser.add_argument("--output")
    args = parser.parse_args()
    if args.trl_worker:
        trl_worker(args)
        return

    assets = make_assets(args.work, args.rows)
    size_mb = assets["data"].stat().st_size / 2**20
    print(f"{args.rows:,} records ({size_mb:,.0f} MB prepared), mcpo K={NEGATIVES}, batch {BATCH}, max length "
          f"{MAX_LENGTH}, {STEPS} steps, {os.cpu_count()} cores; reference: "
          f"{'precomputed' if args.precompute_ref else 'scored each step (--no-precompute-ref)'}")
    cache = assets["data"].parent / ".prefcli-cache"
    results: dict[str, list[dict]] = {}
    datasets_cache = args.work / "hf-datasets"
    for round_ in range(args.rounds):
        shutil.rmtree(cache, ignore_errors=True)
        results.setdefault("prefcli cold", []).append(run_prefcli(assets, args.work / "runs/x", STEPS,
                                                                  args.precompute_ref))
        if not args.skip_trl:
            shutil.rmtree(datasets_cache, ignore_errors=True)
            results.setdefault("trl cold", []).append(run_trl(assets, args.work / "runs/trl", datasets_cache))
        results.setdefault("prefcli warm", []).append(run_prefcli(assets, args.work / "runs/x", STEPS,
                                                                  args.precompute_ref))
        if not args.skip_trl:
            results.setdefault("trl warm", []).append(run_trl(assets, args.work / "runs/trl", datasets_cache))
        print(f"round {round_ + 1} (data ready / first step / peak RSS): " + ", ".join(
            f"{name} {runs[-1]['data_ready_s']:.1f} s / {runs[-1]['first_step_s']:.1f} s / "
            f"{runs[-1]['peak_rss_mb']:.0f} MB" for name, runs in results.items()), flush=True)
    if args.long_steps:
        long = run_prefcli(assets, args.work / "runs/long", args.long_steps, args.precompute_ref)
        results[f"prefcli warm, {args.long_steps} steps"] = [long]
        print(f"{args.long_steps}-step run: peak RSS {long['peak_rss_mb']:.0f} MB", flush=True)

    best = {name: min(runs, key=lambda run: run["first_step_s"]) for name, runs in results.items()}
    print(f"\n{'run':<28}{'data ready s':>14}{'to 1st step s':>15}{'whole run s':>13}{'peak RSS MB':>13}")
    for name, run in best.items():
        print(f"{name:<28}{_fmt(run['data_ready_s']):>14}{_fmt(run['first_step_s']):>15}{_fmt(run['total_s']):>13}"
              f"{_fmt(run['peak_rss_mb']):>13}")
    cold, warm = best["prefcli cold"], best["prefcli warm"]
    peak = max(cold["peak_rss_mb"], warm["peak_rss_mb"])
    print(f"\ngoals (2 cores): cold <= {GOALS['cold_s']:.0f} s: {cold['first_step_s']:.1f} s "
          f"({'met' if cold['first_step_s'] <= GOALS['cold_s'] else 'NOT met'}); warm <= {GOALS['warm_s']:.0f} s: "
          f"{warm['first_step_s']:.1f} s ({'met' if warm['first_step_s'] <= GOALS['warm_s'] else 'NOT met'}); "
          f"peak RSS <= {GOALS['rss_mb']:.0f} MB: {peak:.0f} MB ({'met' if peak <= GOALS['rss_mb'] else 'NOT met'})")
    if args.long_steps:
        long = best[f"prefcli warm, {args.long_steps} steps"]
        verdict = "met" if long["peak_rss_mb"] <= warm["peak_rss_mb"] * 1.02 else "NOT met"
        print(f"{args.long_steps}-step run peak RSS {long['peak_rss_mb']:.0f} MB vs 2-step "
              f"{warm['peak_rss_mb']:.0f} MB ({verdict}: no higher, within 2% noise)")
    if not args.skip_trl:
        for mode in ("cold", "warm"):
            ours, theirs = best[f"prefcli {mode}"], best[f"trl {mode}"]
            print(f"{mode}: TRL / prefcli time to data ready {theirs['data_ready_s'] / ours['data_ready_s']:.2f}x, "
                  f"to first step {theirs['first_step_s'] / ours['first_step_s']:.2f}x; "
                  f"peak RSS TRL {theirs['peak_rss_mb']:.0f} MB vs prefcli {ours['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
