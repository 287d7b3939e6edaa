"""The length-controlled winrate equals alpaca_eval's own ``get_length_controlled_winrate`` on the same
preferences, lengths and instruction difficulties (its hub download replaced by a local file)."""

from __future__ import annotations

import random
import warnings

import pytest

from prefcli.errors import DataError
from prefcli.eval.length_control import average_lengths, length_controlled_winrate, read_difficulty

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from alpaca_eval.metrics import glm_winrate


def make_run(n: int = 40, seed: int = 3):
    rng = random.Random(seed)
    model = [rng.randint(50, 900) for _ in range(n)]
    reference = [rng.randint(80, 600) for _ in range(n)]
    # a judge that likes length, with noise, some ties and some log-prob weighted preferences
    prefs = []
    for m, r in zip(model, reference):
        p = 1 / (1 + pow(2.718, -(m - r) / 250 + rng.gauss(0, 0.8)))
        prefs.append(rng.choice([round(p), p, 0.5 if rng.random() < 0.1 else round(p)]))
    difficulty = [rng.uniform(-2, 2) for _ in range(n)]
    return prefs, model, reference, difficulty


def alpaca_eval_lc(prefs, model, reference, difficulty, glm_name, tmp_path, monkeypatch):
    import pandas as pd

    gamed = tmp_path / "df_gamed.csv"
    pd.DataFrame({"model": "x", "index": range(len(prefs)), "instruction_difficulty": difficulty}).to_csv(gamed)
    monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda **kwargs: str(gamed))
    annotations = pd.DataFrame({
        # alpaca_eval: output_1 is the baseline, preference 1 = baseline, 2 = model; a tie is 1.5
        "preference": [1 + p for p in prefs], "output_1": ["x" * r for r in reference],
        "output_2": ["y" * m for m in model], "generator_1": "base", "generator_2": "policy", "annotator": "judge",
        "index": range(len(prefs))})
    return glm_winrate.get_length_controlled_winrate(annotations, glm_name=glm_name, save_weights_dir=None,
                                                    is_warn_extreme_changes=False)


def test_minimal_glm_equals_alpaca_eval(tmp_path, monkeypatch):
    prefs, model, reference, difficulty = make_run()
    ours = length_controlled_winrate(prefs, model, reference)
    theirs = alpaca_eval_lc(prefs, model, reference, difficulty, "length_controlled_minimal", tmp_path, monkeypatch)
    assert ours["lc_glm"] == "length_controlled_minimal"
    assert ours["lc_winrate"] == pytest.approx(theirs["length_controlled_winrate"], abs=1e-4)
    assert ours["lc_standard_error"] == pytest.approx(theirs["lc_standard_error"], abs=1e-4)
    raw = 100 * sum(prefs) / len(prefs)
    assert ours["lc_winrate"] != pytest.approx(raw, abs=1.0)  # the length term matters on this judge


def test_difficulty_glm_equals_alpaca_eval(tmp_path, monkeypatch):
    prefs, model, reference, difficulty = make_run(seed=5)
    ours = length_controlled_winrate(prefs, model, reference, difficulty)
    theirs = alpaca_eval_lc(prefs, model, reference, difficulty, "length_controlled_noreg", tmp_path, monkeypatch)
    assert ours["lc_glm"] == "length_controlled_noreg" and "instruction_difficulty" in ours["lc_features"]
    assert ours["lc_winrate"] == pytest.approx(theirs["length_controlled_winrate"], abs=1e-4)


def test_unjudged_items_are_left_out_and_small_runs_say_why():
    prefs, model, reference, _ = make_run(n=30, seed=7)
    holes = [None if i % 4 == 0 else p for i, p in enumerate(prefs)]
    kept = [i for i, p in enumerate(holes) if p is not None]
    assert length_controlled_winrate(holes, model, reference)["lc_winrate"] == pytest.approx(
        length_controlled_winrate([prefs[i] for i in kept], [model[i] for i in kept],
                                  [reference[i] for i in kept])["lc_winrate"], abs=1e-9)
    small = length_controlled_winrate(prefs[:4], model[:4], reference[:4])
    assert small["lc_winrate"] is None and "at least 5" in small["lc_note"]
    same = length_controlled_winrate(prefs[:6], [10] * 6, [20] * 6)
    assert same["lc_winrate"] is None and "same length difference" in same["lc_note"]


def test_difficulty_file_by_text_or_position(tmp_path):
    by_text = tmp_path / "d.csv"
    by_text.write_text("instruction,instruction_difficulty\nQ b,0.5\nQ a,-1.25\n")
    assert read_difficulty(by_text, ["Q a", "Q b"]) == [-1.25, 0.5]
    by_position = tmp_path / "p.csv"
    by_position.write_text(",instruction_difficulty\n0,1.5\n1,2.0\n")
    assert read_difficulty(by_position, ["x", "y"]) == [1.5, 2.0]
    with pytest.raises(DataError, match="no difficulty for item 2"):
        read_difficulty(by_position, ["x", "y", "z"])
    bad = tmp_path / "bad.csv"
    bad.write_text("instruction,instruction_difficulty\nQ a,nan\n")
    with pytest.raises(DataError, match=r"bad.csv:2: instruction_difficulty: not a finite number"):
        read_difficulty(bad, ["Q a"])


def test_average_lengths():
    assert average_lengths(["ab", "abcd"], ["x"]) == {"avg_length": 3.0, "reference_avg_length": 1.0}
