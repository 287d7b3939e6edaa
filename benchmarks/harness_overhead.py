"""What ``prefcli eval harness`` costs on top of lm-eval: the offline tiny suite
(examples/harness_tasks/tiny-suite.yaml, two tasks with different few-shot counts) on a small random model, timed
end to end in one process.

Measured in the same run, as peers: ``lm_eval.simple_evaluate`` called by hand with the same model object, tasks,
shots and seeds, (a) with lm-eval's default TaskManager (indexes its ~14,000 built-in task YAMLs) and (b) with a
TaskManager restricted to the local tasks. The numbers of all three are checked to be identical. Best of
--repeats runs each (the first run also builds the datasets' caches).

    python benchmarks/harness_overhead.py [--hidden 128] [--layers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "examples" / "harness_tasks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs per method")
    args = parser.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from prefcli.eval import harness
    from prefcli.fixtures import build_tiny_model

    model_dir = build_tiny_model(tempfile.mkdtemp(prefix="prefcli-bench-"), hidden_size=args.hidden,
                                 num_layers=args.layers)
    suite = harness.plan_tasks(None, str(TASKS / "tiny-suite.yaml"))
    config = harness.HarnessConfig(model=str(model_dir), tasks=tuple(suite), include_path=(str(TASKS),), seed=0,
                                   device="cpu")
    HFLM(pretrained=str(model_dir), device="cpu")  # warm-up: imports and first model load, for every method

    def ours_once():
        harness._cached_task_manager.cache_clear()  # index the tasks afresh, as a new CLI process would
        return harness.run_harness(config)[0]

    def direct_once(defaults: bool):
        lm = HFLM(pretrained=str(model_dir), device="cpu", batch_size=8)
        manager = TaskManager(include_path=str(TASKS), include_defaults=defaults)
        merged = {}
        for task in suite:
            output = lm_eval.simple_evaluate(model=lm, tasks=[task.task], num_fewshot=task.num_fewshot,
                                             task_manager=manager, log_samples=False, **seeds)
            merged.update(output["results"])
        return merged

    seeds = {"random_seed": 0, "numpy_random_seed": 0, "torch_random_seed": 0, "fewshot_random_seed": 0}
    methods = {"prefcli eval harness": ours_once,
               "lm-eval, default index": lambda: direct_once(True),
               "lm-eval, local index": lambda: direct_once(False)}
    results = {}
    os.chdir(TASKS)  # plain lm-eval resolves relative data_files against the working directory
    timings = {name: float("inf") for name in methods}
    for _ in range(args.repeats):  # interleaved rounds; the first also builds the datasets' arrow caches
        for name, method in methods.items():
            start = time.perf_counter()
            results[name] = method()
            timings[name] = min(timings[name], time.perf_counter() - start)
    ours = results["prefcli eval harness"]

    reference = timings["prefcli eval harness"]
    print(f"best of {args.repeats} interleaved rounds; model hidden {args.hidden}, {args.layers} layers; tasks: "
          + ", ".join(f"{t.task} ({t.num_fewshot}-shot)" for t in suite))
    print(f"{'method':<24} {'seconds':>8} {'vs prefcli':>11} {'same numbers':>13}")
    for name, seconds in timings.items():
        same = True if name.startswith("prefcli") else all(
            results[name][task.task][task.metric] == ours["results"]["results"][task.task][task.metric]
            for task in suite)
        print(f"{name:<24} {seconds:8.2f} {seconds / reference:10.2f}x {same!s:>13}")


if __name__ == "__main__":
    main()
