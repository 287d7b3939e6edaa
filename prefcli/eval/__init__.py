"""Evaluation: judged winrates (``run``, ``store``, ``judges``, ``protocols``, ``winrate``, ``items``) and lm-eval
benchmarks (``harness``). Library code only; the commands live in ``prefcli/cli/eval_*.py``."""
