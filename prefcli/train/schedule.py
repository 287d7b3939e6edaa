"""The learning-rate schedules (warmup, then cosine / linear / constant), as ``transformers.get_scheduler`` builds
them, value for value. Written here because importing ``transformers.optimization`` pulls in the Trainer's
utilities and peft: 4 s of a CPU run's start-up, for three one-line formulas."""

from __future__ import annotations

import math
from functools import partial


def _warmup(step: int, warmup: int) -> float:
    return float(step) / float(max(1, warmup))


def _linear(step: int, *, warmup: int, total: int) -> float:
    if step < warmup:
        return _warmup(step, warmup)
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


def _cosine(step: int, *, warmup: int, total: int) -> float:
    if step < warmup:
        return _warmup(step, warmup)
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))


def _constant(step: int, *, warmup: int, total: int) -> float:
    del total
    if step < warmup:
        return float(step) / float(max(1.0, warmup))
    return 1.0


SCHEDULES = {"cosine": _cosine, "linear": _linear, "constant": _constant}


def _shifted(step: int, *, schedule, offset: int, warmup: int, total: int) -> float:
    return schedule(step + offset, warmup=warmup, total=total)


def lr_scheduler(optimizer, name: str, warmup_steps: int, total_steps: int, offset: int = 0):
    """A ``LambdaLR`` multiplying the optimizer's learning rate by the schedule at each step; ``offset`` starts it
    that many steps in (a run that continues a longer one, such as an online segment)."""
    from torch.optim.lr_scheduler import LambdaLR

    if offset:
        return LambdaLR(optimizer, partial(_shifted, schedule=SCHEDULES[name], offset=offset, warmup=warmup_steps,
                                           total=total_steps))
    return LambdaLR(optimizer, partial(SCHEDULES[name], warmup=warmup_steps, total=total_steps))
