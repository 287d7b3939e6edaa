"""Style control equals arena-hard-auto's formula (show_result.py / utils/math_utils.py /
utils/add_markdown_info.py, transcribed below with torch as they run it) on a small hand-made battle set."""

from __future__ import annotations

import random
import re

import pytest

from prefcli.eval.style_control import Battle, point_scores, style_controlled_scores, style_features

torch = pytest.importorskip("torch")


# ---- arena-hard-auto, as written there (lmarena/arena-hard-auto @ 196f6b8) -------------------------------------
def their_count_markdown_elements(markdown_text):
    return {
        "header_count": {f"h{n}": len(re.findall(rf"^#{{{n}}}\s", markdown_text, re.MULTILINE)) for n in range(1, 7)},
        "list_count": {"ordered": len(re.findall(r"^\s*\d+\.\s", markdown_text, re.MULTILINE)),
                       "unordered": len(re.findall(r"^\s*[-*+]\s", markdown_text, re.MULTILINE))},
        "bold_count": {"**": len(re.findall(r"\*\*[^*\n]+\*\*", markdown_text)),
                       "__": len(re.findall(r"__[^_\n]+__", markdown_text))},
    }


def their_remove_pattern(answer, pattern):
    for block in pattern.findall(answer):
        answer = answer.replace(block, "")
    return answer


def their_scores(battles, baseline, models):
    model_meta = [[b.model_style["length"], b.model_style["header"], b.model_style["list"], b.model_style["bold"]]
                  for b in battles]
    base_meta = [[b.baseline_style["length"], b.baseline_style["header"], b.baseline_style["list"],
                  b.baseline_style["bold"]] for b in battles]
    m = torch.tensor(model_meta, dtype=torch.float32)
    bl = torch.tensor(base_meta, dtype=torch.float32)
    final = torch.zeros_like(m)
    final[:, 0] = (m[:, 0] - bl[:, 0]) / (m[:, 0] + bl[:, 0])
    md, bd = m[:, 1:] / (m[:, :1] + 1), bl[:, 1:] / (bl[:, :1] + 1)
    final[:, 1:] = (md - bd) / (md + bd + 1)
    normalized = (final - torch.mean(final, axis=0)) / torch.std(final, axis=0)
    unique = sorted(set(models + [baseline]))
    onehot = torch.zeros(len(battles), len(unique))
    for row, b in enumerate(battles):
        onehot[row, unique.index(b.model)] = 1
        onehot[row, unique.index(baseline)] = -1
    features = torch.cat([onehot, normalized], dim=1)
    outcomes = torch.tensor([b.outcome for b in battles])
    logits = torch.nn.Parameter(torch.full((features.shape[1],), 0.5))
    optimizer = torch.optim.LBFGS([logits], lr=0.1, max_iter=50, tolerance_grad=1e-9, tolerance_change=1e-9)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(features @ logits, outcomes.float(),
                                                                    reduction="sum")
        loss.backward()
        return loss

    for _ in range(20):  # their single step of 50 iterations, repeated until converged
        optimizer.step(closure)
    coefs = logits.detach()
    exp = torch.exp(coefs)
    b = unique.index(baseline)
    return {name: float(exp[i] / (exp[i] + exp[b])) * 100 for i, name in enumerate(unique) if name != baseline}
# -------------------------------------------------------------------------------------------------------------


ANSWERS = [
    "Short answer.",
    "# Title\n\nSome **bold** claim.\n\n- one\n- two\n- three",
    "## Steps\n1. first\n2. second\n\n```python\n# not a header\n- not a list\n```\nDone __really__.",
    "A long plain answer " * 12,
    "**Bold** and **more bold** and a list:\n* a\n* b",
    "### Heading\nText with no lists but quite a lot of words to make it longer than the others here.",
]


def test_style_counts_equal_arena_hard_autos():
    for answer in ANSWERS:
        counts = their_count_markdown_elements(their_remove_pattern(answer, re.compile("```([^`]*)```")))
        ours = style_features(answer)
        assert ours["header"] == sum(counts["header_count"].values())
        assert ours["list"] == sum(counts["list_count"].values())
        assert ours["bold"] == sum(counts["bold_count"].values())
    assert style_features(ANSWERS[2])["header"] == 1 and style_features(ANSWERS[2])["list"] == 2


def hand_made_battles(seed=0):
    rng = random.Random(seed)
    battles = []
    # "styled" wins by markdown and length, "plain" is good but terse, "mixed" in between
    strength = {"styled": 0.2, "plain": 0.5, "mixed": 0.0}
    for model in ("styled", "plain", "mixed"):
        for item in range(30):
            answer = rng.choice(ANSWERS[1:3] + ANSWERS[4:5]) if model == "styled" else (
                rng.choice(ANSWERS[:1] + ANSWERS[3:4]) if model == "plain" else rng.choice(ANSWERS))
            baseline_answer = ANSWERS[item % len(ANSWERS)]
            ms, bs = style_features(answer), style_features(baseline_answer)
            edge = strength[model] + 0.8 * (ms["header"] + ms["bold"] - bs["header"] - bs["bold"]) / 3
            outcome = 1.0 if rng.random() < 1 / (1 + 2.718 ** -edge) else (0.5 if rng.random() < 0.2 else 0.0)
            battles.append(Battle(model, outcome, ms, bs))
    return battles


def test_style_controlled_scores_equal_arena_hard_autos_formula():
    battles = hand_made_battles()
    ours = point_scores(battles, control=True)
    theirs = their_scores(battles, "baseline", ["styled", "plain", "mixed"])
    for model in ("styled", "plain", "mixed"):
        assert ours[model] == pytest.approx(theirs[model], abs=0.05)
    raw = point_scores(battles, control=False)
    for model in ("styled", "plain", "mixed"):
        outcomes = [b.outcome for b in battles if b.model == model]
        assert raw[model] == pytest.approx(100 * sum(outcomes) / len(outcomes), abs=1e-4)
    # the control matters here: the styled model loses ground, the plain one gains
    assert ours["styled"] < raw["styled"] and ours["plain"] > raw["plain"]


def test_bootstrap_intervals_bracket_the_scores():
    result = style_controlled_scores(hand_made_battles(), rounds=40, seed=1)
    assert result["features"] == ["length", "header", "list", "bold"] and result["battles"] == 90
    for scores in result["models"].values():
        assert scores["interval"][0] <= scores["style_controlled"] <= scores["interval"][1]
        assert scores["raw_interval"][0] <= scores["raw"] <= scores["raw_interval"][1]


def test_a_constant_feature_is_left_out():
    plain = {"length": 10, "header": 0, "list": 0, "bold": 0}
    battles = [Battle("m", float(i % 2), dict(plain, length=10 + i), plain) for i in range(8)]
    assert style_controlled_scores(battles, rounds=5)["features"] == ["length"]
