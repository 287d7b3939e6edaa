"""The ground-truth testbed: does preference training improve a policy on a task whose true reward is known?

Pipeline (every step is a ``prefcli`` command, run in this process so that 2 cores are not spent importing torch
fifty times):

1. ``prefcli fixtures task sort OUT/task``: a random tiny Llama, mixed-quality demonstrations, prompts, held-out
   prompts and the reward function ``OUT/task/reward.py:reward``.
2. ``prefcli train --loss sft``: the SFT policy.
3. ``prefcli generate`` at 7 temperatures: 7 sampled candidates per preference prompt; each is scored with the true
   reward and the 7 are written as Nectar rows (rank 1 = highest reward; ties keep the sampling order);
   ``prefcli prepare nectar`` (rank 1 chosen, rank 2 dropped, the rest candidates, a seeded random rejected),
   ``prepare unpair`` (KTO, AOT-unpaired) and ``prepare noise --as-rejected`` (DPO on noise-augmented data).
4. Per seed, every method of ``METHODS``; ``onmcpo`` is ``train --online`` with the reward as judge.
5. Every model: ``eval reward`` (mean true reward of greedy outputs on the held-out prompts) and ``eval alpaca``
   against the SFT model's outputs, judged by the reward. ``eval report`` over all runs, and ``summary.json``.

Finished steps are skipped on a rerun with the same ``--output`` (delete a run's directories to redo it).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TASK = "sort"
# Seven samples per prompt, one at each temperature (as in the MC-PO paper's instruct setup, several temperatures).
TEMPERATURES = (0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4)
MAX_NEW_TOKENS = 16
MAX_LENGTH = 48


@dataclass(frozen=True)
class Settings:
    """Sizes and optimisation settings of one testbed run (full or ``--quick``)."""

    preference_prompts: int
    heldout: int
    sft_steps: int
    sft_lr: float
    steps: int
    batch_size: int
    lr: float
    online_segments: int
    methods: tuple[str, ...]


@dataclass(frozen=True)
class Method:
    loss: str
    data: str                           # "pairs" | "unpaired" | "noisy" | "prompts" (online)
    args: tuple[str, ...] = ()
    lr_scale: float = 1.0
    online: bool = False


METHODS: dict[str, Method] = {
    "dpo": Method("dpo", "pairs"),
    "ipo": Method("ipo", "pairs"),
    "simpo": Method("simpo", "pairs"),
    "kto": Method("kto", "unpaired"),
    "aot-unpaired": Method("aot-unpaired", "unpaired"),
    "aot": Method("aot", "pairs"),
    "rnce-k1": Method("rnce", "pairs", ("--negatives", "1")),
    "rnce-k4": Method("rnce", "pairs", ("--negatives", "4")),
    "mcpo-k1": Method("mcpo", "pairs", ("--negatives", "1")),
    "mcpo": Method("mcpo", "pairs", ("--negatives", "4")),
    "mcpo-max": Method("mcpo", "pairs", ("--negatives", "1", "--sampler", "max")),
    "mcpo-min": Method("mcpo", "pairs", ("--negatives", "1", "--sampler", "min")),
    "mcpo-random": Method("mcpo", "pairs", ("--negatives", "1", "--sampler", "random")),
    "dpo-noise": Method("dpo", "noisy"),
    "onmcpo": Method("mcpo", "prompts", ("--negatives", "1"), online=True),  # online sets: 1-6 distinct texts
}

FULL = Settings(preference_prompts=512, heldout=128, sft_steps=400, sft_lr=3e-3, steps=80, batch_size=32, lr=1e-3,
                online_segments=2, methods=tuple(METHODS))
QUICK = Settings(preference_prompts=512, heldout=64, sft_steps=250, sft_lr=3e-3, steps=40, batch_size=32, lr=1e-3,
                 online_segments=2, methods=("dpo", "mcpo"))


@dataclass
class Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, what: str, started: float) -> None:
        self.seconds[what] = self.seconds.get(what, 0.0) + time.perf_counter() - started


def prefcli(*args) -> None:
    """Run one ``prefcli`` command in this process; a user error stops the testbed with its message."""
    from prefcli.cli import app
    from prefcli.errors import PrefcliError

    argv = [str(arg) for arg in args]
    print(f"\n$ prefcli {' '.join(argv)}", flush=True)
    try:
        app(args=argv, prog_name="prefcli", standalone_mode=False)
    except PrefcliError as error:
        sys.exit(f"error: {error}")


def finished_model(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def build_data(out: Path, settings: Settings, reward_spec: str, timer: Timer) -> dict[str, Path]:
    """Sample 7 candidates per prompt from the SFT policy, rank them by the reward, prepare every data format."""
    from prefcli.eval.judges.reward import load_reward_function

    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = {"pairs": data / "candidates.jsonl", "unpaired": data / "unpaired.jsonl",
             "noisy": data / "noisy.jsonl", "prompts": out / "task" / "prompts.jsonl"}
    if all(path.is_file() for path in files.values()):
        return files
    started = time.perf_counter()
    prompts = [json.loads(line)["prompt"][0]["content"]
               for line in (out / "task" / "prompts.jsonl").read_text().splitlines() if line.strip()]
    (data / "prompts.json").write_text(json.dumps([{"instruction": p} for p in prompts], indent=1))
    samples = []
    for index, temperature in enumerate(TEMPERATURES):
        path = data / f"samples-{index}-t{temperature}.json"
        prefcli("generate", "--model", out / "sft", "--instructions", data / "prompts.json", "--output", path,
                "--temperature", temperature, "--seed", index, "--max-new-tokens", MAX_NEW_TOKENS,
                "--batch-size", 128)
        samples.append({row["instruction"]: row["output"] for row in json.loads(path.read_text())})
    timer.add("sample candidates", started)
    started = time.perf_counter()
    reward = load_reward_function(reward_spec)
    rows, distinct, tied = [], 0, 0
    for row_id, prompt in enumerate(prompts):
        messages = [{"role": "user", "content": prompt}]
        texts = [sample[prompt] for sample in samples]
        scores = [reward.score(messages, text) for text in texts]
        by_text = dict(zip(texts, scores))
        distinct += len(by_text)
        tied += len(by_text) - len(set(by_text.values()))  # different texts that share a reward
        order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))
        answers = [{"answer": texts[i] if texts[i].strip() else "(empty)", "model": f"sft@t{TEMPERATURES[i]}",
                    "rank": float(rank), "reward": scores[i]} for rank, i in enumerate(order, 1)]
        rows.append({"id": row_id, "prompt": f"\n\nHuman: {prompt}\n\nAssistant:", "answers": answers,
                     "turns": 1, "num_responses": len(answers), "source": [f"testbed:{TASK}"]})
    nectar = data / "nectar.jsonl"
    nectar.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (data / "ranking.json").write_text(json.dumps({
        "prompts": len(rows), "samples_per_prompt": len(TEMPERATURES),
        "distinct_samples_per_prompt": round(distinct / len(rows), 3),
        "distinct_samples_tied_with_another": tied, "distinct_samples": distinct}, indent=1))
    prefcli("prepare", "nectar", "--input", nectar, "--output", files["pairs"], "--skip-ranks", 1, "--seed", 0,
            "--workers", 1)
    prefcli("prepare", "unpair", "--input", files["pairs"], "--output", files["unpaired"], "--seed", 0,
            "--workers", 1)
    prefcli("prepare", "noise", "--input", files["pairs"], "--output", files["noisy"], "--as-rejected",
            "--seed", 0, "--workers", 1)
    timer.add("rank and prepare", started)
    return files


def train(out: Path, name: str, seed: int, settings: Settings, files: dict[str, Path], reward_spec: str,
          timer: Timer) -> Path:
    method = METHODS[name]
    model_dir = out / "models" / f"{name}-seed{seed}"
    if finished_model(model_dir):
        return model_dir
    started = time.perf_counter()
    common = ["--model", out / "sft", "--data", files[method.data], "--loss", method.loss, "--output", model_dir,
              "--lr", settings.lr * method.lr_scale, "--batch-size", settings.batch_size,
              "--max-steps", settings.steps, "--max-length", MAX_LENGTH, "--warmup", 0.1, "--seed", seed,
              "--log-every", 1000, *method.args]
    if method.online:
        common += ["--online", "--judge", reward_spec, "--segments", settings.online_segments,
                   "--temperatures", ",".join(str(t) for t in TEMPERATURES), "--per-temperature", 1,
                   "--max-new-tokens", MAX_NEW_TOKENS]
    prefcli("train", *common)
    timer.add(f"train {name}", started)
    return model_dir


def evaluate(out: Path, run: str, model: Path, seed: int, reward_spec: str, timer: Timer) -> None:
    """``eval reward`` (greedy outputs on the held-out prompts) and ``eval alpaca`` vs the SFT outputs."""
    run_dir = out / "runs" / run
    started = time.perf_counter()
    heldout = out / "task" / "heldout.json"
    if not (run_dir / "reward" / "results.json").is_file():
        prefcli("eval", "reward", "--model", model, "--instructions", heldout, "--reward", reward_spec,
                "--output", run_dir / "reward", "--max-new-tokens", MAX_NEW_TOKENS, "--batch-size", 128,
                "--seed", seed)
    if not (run_dir / "alpaca" / "results.json").is_file():
        prefcli("eval", "alpaca", "--outputs", run_dir / "reward" / "outputs.json",
                "--reference", out / "runs" / "sft" / "reward" / "outputs.json", "--instructions", heldout,
                "--judge", reward_spec, "--output", run_dir / "alpaca", "--seed", seed, "--concurrency", 1)
    timer.add("evaluate", started)


def read_results(out: Path, run: str) -> tuple[float, float]:
    reward = json.loads((out / "runs" / run / "reward" / "results.json").read_text())
    alpaca = json.loads((out / "runs" / run / "alpaca" / "results.json").read_text())
    return reward["mean"], alpaca["winrate"]


# The papers' claims, as comparisons of held-out mean reward: (claim, paper, method a, relation, method b).
# ">" holds when a beats b by more than the pooled std over seeds, "≈" when they differ by less, ">=" unless a
# trails b by more than the pooled std, "<=" (no gain) unless a beats b by more than the pooled std.
CLAIMS = (
    ("MC-PO beats DPO", "MC-PO Table 1", "mcpo", ">", "dpo"),
    ("MC-PO gains with more negatives (K = 4 vs 1)", "MC-PO Table 3", "mcpo", ">", "mcpo-k1"),
    ("RNCE does not gain with more negatives (K = 4 vs 1)", "MC-PO Table 3", "rnce-k4", "<=", "rnce-k1"),
    ("MC-PO beats RNCE at K = 4", "MC-PO Table 3", "mcpo", ">", "rnce-k4"),
    ("Max sampler ≈ MCMC (K = 1)", "MC-PO Fig. 2", "mcpo-max", "≈", "mcpo-k1"),
    ("MCMC > Random sampler (K = 1)", "MC-PO Fig. 2", "mcpo-k1", ">", "mcpo-random"),
    ("Random > Min sampler (K = 1)", "MC-PO Fig. 2", "mcpo-random", ">", "mcpo-min"),
    ("OnMC-PO beats offline MC-PO (K = 1)", "MC-PO Sec. 5", "onmcpo", ">", "mcpo-k1"),
    ("AOT ≥ DPO", "AOT Table 1", "aot", ">=", "dpo"),
    ("AOT ≥ KTO", "AOT Table 1", "aot", ">=", "kto"),
    ("AOT-unpaired ≥ KTO", "AOT Table 1", "aot-unpaired", ">=", "kto"),
)


def judge_claims(methods: dict) -> list[dict]:
    """Each claim of ``CLAIMS`` whose two methods ran: the difference of mean rewards, the pooled std over seeds,
    and whether the claim holds on this task."""
    verdicts = []
    for claim, paper, a, relation, b in CLAIMS:
        if a not in methods or b not in methods:
            continue
        diff = methods[a]["reward_mean"] - methods[b]["reward_mean"]
        pooled = math.sqrt((methods[a]["reward_std"] ** 2 + methods[b]["reward_std"] ** 2) / 2)
        if relation == ">":
            verdict = "holds" if diff > pooled else "reversed" if diff < -pooled else "not shown (within noise)"
        elif relation == "≈":
            verdict = "holds" if abs(diff) <= pooled else "does not hold"
        elif relation == "<=":
            verdict = "holds" if diff <= pooled else "does not hold"
        else:
            verdict = "holds" if diff >= -pooled else "does not hold"
        verdicts.append({"claim": claim, "paper": paper, "a": a, "b": b, "relation": relation,
                         "reward_a": methods[a]["reward_mean"], "std_a": methods[a]["reward_std"],
                         "reward_b": methods[b]["reward_mean"], "std_b": methods[b]["reward_std"],
                         "difference": diff, "pooled_std": pooled, "verdict": verdict})
    return verdicts


def summarize(out: Path, seeds: list[int], settings: Settings, timer: Timer, started: float) -> dict:
    sft_reward, _ = read_results(out, "sft")
    methods: dict[str, dict] = {"sft": {"reward_mean": sft_reward, "reward_std": 0.0}}
    for name in settings.methods:
        rewards, winrates = zip(*(read_results(out, f"{name}-seed{seed}") for seed in seeds))
        methods[name] = {
            "reward_mean": statistics.fmean(rewards),
            "reward_std": statistics.stdev(rewards) if len(rewards) > 1 else 0.0,
            "winrate_vs_sft": statistics.fmean(winrates),
            "winrate_std": statistics.stdev(winrates) if len(winrates) > 1 else 0.0,
            "per_seed": {"reward": list(rewards), "winrate_vs_sft": list(winrates)},
        }
    ranking = json.loads((out / "data" / "ranking.json").read_text())
    return {
        "task": TASK, "seeds": seeds, "methods": methods,
        "settings": {"preference_prompts": settings.preference_prompts, "heldout": settings.heldout,
                     "sft_steps": settings.sft_steps, "sft_lr": settings.sft_lr, "steps": settings.steps,
                     "batch_size": settings.batch_size, "lr": settings.lr, "temperatures": list(TEMPERATURES),
                     "online_segments": settings.online_segments},
        "ranking": ranking,
        "claims": judge_claims(methods),
        "notes": {"sft": "one SFT model shared by every seed (greedy evaluation): its std over seeds is 0",
                  "mcpo": "MC-PO, mcmc sampler, K = 4 negatives", "winrate_vs_sft": "percent, adjusted "
                  "(W + T/2) / n, judged by the task reward on the held-out prompts"},
        "seconds": {key: round(value, 1) for key, value in timer.seconds.items()},
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="examples/testbed/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default=None, help="Comma-separated training seeds (default 0,1,2; "
                                                      "--quick: 0).")
    parser.add_argument("--quick", action="store_true", help="Fewer prompts and steps; methods sft, dpo, mcpo.")
    parser.add_argument("--output", type=Path, default=Path("testbed-run"), help="Run directory.")
    parser.add_argument("--methods", default=None, help=f"Comma-separated subset of: {', '.join(METHODS)}.")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    try:
        seeds = [int(part) for part in (args.seeds or ("0" if args.quick else "0,1,2")).split(",") if part.strip()]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error("--seeds: give at least one seed, each once")
    if args.methods:
        chosen = tuple(part.strip() for part in args.methods.split(",") if part.strip())
        unknown = [name for name in chosen if name not in METHODS]
        if unknown:
            parser.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        settings = Settings(**{**settings.__dict__, "methods": chosen})

    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    timer = Timer()
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    reward_spec = f"reward:{out / 'task' / 'reward.py'}:reward"

    step = time.perf_counter()
    if not (out / "task" / "task.json").is_file():
        prefcli("fixtures", "task", TASK, out / "task", "--prompts", settings.preference_prompts,
                "--heldout", settings.heldout, "--seed", 0)
    if not finished_model(out / "sft"):
        prefcli("train", "--model", out / "task" / "model", "--data", out / "task" / "sft.jsonl", "--loss", "sft",
                "--output", out / "sft", "--lr", settings.sft_lr, "--batch-size", 32, "--max-steps",
                settings.sft_steps, "--max-length", MAX_LENGTH, "--warmup", 20, "--seed", 0, "--log-every", 1000)
    timer.add("task + SFT", step)
    evaluate(out, "sft", out / "sft", 0, reward_spec, timer)
    files = build_data(out, settings, reward_spec, timer)
    for seed in seeds:
        for name in settings.methods:
            model = train(out, name, seed, settings, files, reward_spec, timer)
            evaluate(out, f"{name}-seed{seed}", model, seed, reward_spec, timer)
    runs = [out / "runs" / "sft"] + [out / "runs" / f"{name}-seed{seed}" for name in settings.methods
                                     for seed in seeds]
    prefcli("eval", "report", *runs, "--output", out / "report")
    summary = summarize(out, seeds, settings, timer, started)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    print_claims(summary["claims"])
    print(f"\nwrote {out / 'summary.json'}, {out / 'report' / 'report.md'} and {out / 'report' / 'report.png'} "
          f"in {summary['total_seconds']:.0f} s")


def print_table(summary: dict) -> None:
    print(f"\n{'method':<14} {'reward mean (std)':>20} {'winrate vs SFT % (std)':>24}")
    for name, entry in summary["methods"].items():
        winrate = entry.get("winrate_vs_sft")
        wr = "–" if winrate is None or math.isnan(winrate) else f"{winrate:.1f} ({entry['winrate_std']:.1f})"
        print(f"{name:<14} {entry['reward_mean']:>12.4f} ({entry['reward_std']:.4f}) {wr:>24}")


def print_claims(claims: list[dict]) -> None:
    if not claims:
        return
    print(f"\n{'claim':<52} {'a (std)':>17} {'b (std)':>17} {'verdict':>26}")
    for entry in claims:
        print(f"{entry['claim']:<52} {entry['reward_a']:>8.4f} ({entry['std_a']:.4f}) "
              f"{entry['reward_b']:>8.4f} ({entry['std_b']:.4f}) {entry['verdict']:>26}")


if __name__ == "__main__":
    main()
