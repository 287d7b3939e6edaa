"""``prefcli eval compare``: the paired bootstrap and the permutation p-value against direct computations, the
refusals, and the command end to end on two runs judged by the loopback judge."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import invoke_cli
from judge_servers import FaultyJudgeServer

from prefcli.eval.compare import diff_of, paired_bootstrap_ci, paired_permutation_p

# per item: (S_a, W_a, S_b, W_b); arena-style weights (a strong verdict counts 3)
TABLE = np.array([[1, 1, 0, 1], [4, 4, 1, 2], [0.5, 1, 0.5, 1], [3, 4, 0, 3], [1, 2, 1, 1], [2, 2, 0, 2],
                  [0, 1, 1, 1]], dtype=float)


def rate(rows, s, w):
    return 100 * sum(r[s] for r in rows) / sum(r[w] for r in rows)


def test_diff_is_a_minus_b_in_points():
    assert diff_of(TABLE) == pytest.approx(rate(TABLE, 0, 1) - rate(TABLE, 2, 3))


def test_exact_permutation_p_equals_enumerating_every_relabeling():
    observed = abs(rate(TABLE, 0, 1) - rate(TABLE, 2, 3))
    count = 0
    for swaps in itertools.product((False, True), repeat=len(TABLE)):
        rows = [[r[2], r[3], r[0], r[1]] if swap else list(r) for r, swap in zip(TABLE, swaps)]
        count += abs(rate(rows, 0, 1) - rate(rows, 2, 3)) >= observed - 1e-9
    p, exact = paired_permutation_p(TABLE, rounds=1000)
    assert exact and p == pytest.approx(count / 2 ** len(TABLE))
    monte_carlo, exact = paired_permutation_p(TABLE, rounds=100, seed=1)  # 2^7 > 100: sampled
    assert not exact and abs(monte_carlo - p) < 0.12


def test_paired_bootstrap_equals_a_direct_loop_over_the_same_draws():
    rounds, seed = 500, 4
    low, high = paired_bootstrap_ci(TABLE, rounds=rounds, seed=seed)
    draws = np.random.default_rng(seed).integers(0, len(TABLE), size=(rounds, len(TABLE)))
    diffs = []
    for row in draws:
        sample = [TABLE[i] for i in row]
        diffs.append(rate(sample, 0, 1) - rate(sample, 2, 3))
    assert (low, high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))
    assert low < diff_of(TABLE) < high


def _pairs(directory: Path, model_quality: list[int], name: str) -> Path:
    rows = [{"instruction": f"Q{i}", "output": f"{name} {i} q={q}", "generator": name}
            for i, q in enumerate(model_quality)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(rows))
    return directory / f"{name}.json"


def test_compare_end_to_end_and_refusals(tmp_path):
    data = tmp_path / "data"
    ref_rows = [{"instruction": f"Q{i}", "output": f"ref {i} q=5", "generator": "base"} for i in range(12)]
    data.mkdir()
    (data / "ref.json").write_text(json.dumps(ref_rows))
    good = _pairs(data, [9, 8, 7, 9, 6, 7, 8, 9, 3, 9, 8, 7], "good")
    weak = _pairs(data, [2, 3, 6, 1, 4, 2, 7, 3, 1, 2, 9, 4], "weak")
    with FaultyJudgeServer() as server:
        for name, outputs in (("good", good), ("weak", weak)):
            code, text = invoke_cli(["eval", "arena", "--outputs", outputs, "--reference", data / "ref.json",
                                     "--judge", server.base_url, "--judge-model", "judge",
                                     "--output", tmp_path / name])
            assert code == 0, text
        code, text = invoke_cli(["eval", "alpaca", "--outputs", weak, "--reference", data / "ref.json",
                                 "--judge", server.base_url, "--judge-model", "judge", "--output",
                                 tmp_path / "alpaca"])
        assert code == 0, text
    code, text = invoke_cli(["eval", "compare", tmp_path / "good", tmp_path / "weak", "--output", tmp_path / "cmp"])
    assert code == 0, text
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    good_results = json.loads((tmp_path / "good" / "results.json").read_text())
    weak_results = json.loads((tmp_path / "weak" / "results.json").read_text())
    assert result["n"] == 12
    assert result["winrate_a"] == pytest.approx(good_results["winrate"], abs=1e-3)
    assert result["winrate_b"] == pytest.approx(weak_results["winrate"], abs=1e-3)
    assert result["diff"] == pytest.approx(good_results["winrate"] - weak_results["winrate"], abs=1e-3)
    assert result["ci95"][0] > 0 and result["p_value"] < 0.01
    assert "A - B (points)" in text
    code, text = invoke_cli(["eval", "compare", tmp_path / "good", tmp_path / "alpaca", "--output",
                             tmp_path / "cmp2"])
    assert code == 2 and "different protocol ('arena' vs 'alpaca')" in text
    assert not (tmp_path / "cmp2").exists()
