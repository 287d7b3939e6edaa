"""``sort``: sort a short list of distinct digits in ascending order — a task with a verifiable, graded reward.

A prompt is one user turn ``"sort: 7 2 9 4"``; the right completion is ``"2 4 7 9"``. The reward grades a
completion in [0, 1] (1 only for the exact answer) from four parts, so that near misses rank between right and
wrong and seven samples of one prompt rarely tie unless they are identical:

    reward = 0.4 * position + 0.2 * prefix + 0.2 * content + 0.2 * content * order

- ``position``: share of positions holding the right digit, over ``max(len(answer), len(completion))``;
- ``prefix``: length of the longest right prefix over the same length (an early slip costs more than a late one);
- ``content``: multiset overlap of the completion's tokens with the digits, over the same length;
- ``order``: share of adjacent pairs of the completion in ascending order (1 for a single token).

The demonstrations are of mixed quality, like human ones: 35% are exact, 50% swap the last two digits (a
systematic slip that the greedy SFT policy learns as its mode), 15% drop or repeat a digit. Preference training on
the SFT policy's own ranked samples can therefore raise the greedy reward from about 0.85 towards 1.0.

The reward is importable as ``prefcli.tasks.sort:reward`` and written as ``DIR/reward.py`` by
``prefcli fixtures task sort DIR``, so ``--judge reward:DIR/reward.py:reward`` and
``--judge reward:prefcli.tasks.sort:reward`` name the same function.
"""

from __future__ import annotations

import random
from collections import Counter

DIGITS = "0123456789"
MIN_ITEMS, MAX_ITEMS = 4, 8
PREFIX = "sort:"
# The demonstrators' habits: (share, kind). See the module docstring.
DEMONSTRATION_MIX = ((0.35, "exact"), (0.50, "swap_last"), (0.15, "drop_or_repeat"))


def _items(prompt) -> list[str]:
    """The digits a prompt asks to sort (its last user turn after ``sort:``)."""
    if isinstance(prompt, str):
        text = prompt
    else:
        users = [message.get("content", "") for message in prompt if message.get("role") == "user"]
        text = users[-1] if users else ""
    text = text.strip()
    if text.startswith(PREFIX):
        text = text[len(PREFIX):]
    return text.split()


def answer(prompt) -> str:
    """The exact completion for ``prompt``."""
    return " ".join(sorted(_items(prompt)))


def reward(prompt: list[dict], completion: str) -> float:
    """The graded reward in [0, 1] of ``completion`` for ``prompt`` (formula in the module docstring)."""
    target = sorted(_items(prompt))
    produced = completion.split()
    if not target or not produced:
        return 0.0
    length = max(len(target), len(produced))
    position = sum(a == b for a, b in zip(produced, target)) / length
    prefix = next((index for index, (a, b) in enumerate(zip(produced, target)) if a != b),
                  min(len(produced), len(target))) / length
    content = sum((Counter(produced) & Counter(target)).values()) / length
    if len(produced) == 1:
        order = 1.0
    else:
        order = sum(a < b for a, b in zip(produced, produced[1:])) / (len(produced) - 1)
    return 0.4 * position + 0.2 * prefix + 0.2 * content + 0.2 * content * order


def make_prompt(rng: random.Random) -> str:
    digits = rng.sample(DIGITS, rng.randint(MIN_ITEMS, MAX_ITEMS))
    return f"{PREFIX} {' '.join(digits)}"


def demonstration(prompt: str, rng: random.Random) -> str:
    """One demonstration of mixed quality (see ``DEMONSTRATION_MIX``)."""
    items = sorted(_items(prompt))
    draw = rng.random()
    kind = DEMONSTRATION_MIX[-1][1]
    for share, name in DEMONSTRATION_MIX:
        if draw < share:
            kind = name
            break
        draw -= share
    if kind == "swap_last":
        items[-1], items[-2] = items[-2], items[-1]
    elif kind == "drop_or_repeat":
        index = rng.randrange(len(items))
        if rng.random() < 0.5:
            del items[index]
        else:
            items.insert(index, items[index])
    return " ".join(items)


def vocabulary() -> list[str]:
    """Every word the task's prompts and completions use (the tokenizer's vocabulary, besides special tokens)."""
    return [*DIGITS, "sort", ":"]
