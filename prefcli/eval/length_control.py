"""Length-controlled winrate (AlpacaEval 2.0's headline metric; Dubois et al., 2024, "Length-Controlled AlpacaEval:
A Simple Way to Debias Automatic Evaluators", arXiv 2404.04475), fitted offline on the items the run judged.

The GLM predicts the model's preference from the length difference and, optionally, the instruction's difficulty:

    logit P(model preferred) = theta * tanh(std_delta_len) + phi * instruction_difficulty + psi

with ``std_delta_len = (len(reference) - len(model)) / std`` (characters, std over the run's items, as
alpaca_eval computes it with the reference as ``output_1``). The LC winrate is the mean predicted preference with
the length term set to 0, times 100. The fit is alpaca_eval's own: its patsy design matrix
(``make_dmatrix_for_model``) and ``fit_LogisticRegressionCV`` (L1, liblinear, 5-fold GroupKFold, soft labels),
called without a weights directory so nothing is written into site-packages.

Which GLM. alpaca_eval's ``length_controlled_v1`` also needs the hub files ``df_gamed.csv`` (annotations of two
"gamed" baselines, used as a regularizer) and ``instruction_difficulty.csv``; prefcli does not download them.

* without a difficulty file: ``length_controlled_minimal`` — ``np.tanh(std_delta_len) + not_gamed_baseline - 1``
  (length and an intercept), which works on any instruction set;
* with ``--lc-difficulty FILE`` (alpaca_eval's ``instruction_difficulty.csv`` or any CSV of per-instruction
  difficulties): ``length_controlled_noreg`` — the same features as ``length_controlled_v1`` plus
  ``instruction_difficulty``, without the gamed-baseline regularization.

Both equal what ``alpaca_eval.metrics.get_length_controlled_winrate(..., glm_name=NAME)`` computes from the same
preferences, lengths and difficulties (tests/test_length_control.py checks this).
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from prefcli.errors import DataError

MIN_ITEMS = 5  # 5-fold cross-validation needs at least 5 items
GLM_MINIMAL, GLM_DIFFICULTY = "length_controlled_minimal", "length_controlled_noreg"


def length_controlled_winrate(preferences: list[float | None], model_lengths: list[int],
                              reference_lengths: list[int], difficulty: list[float] | None = None) -> dict:
    """``{"lc_winrate", "lc_standard_error", "lc_glm", "lc_features", "lc_note"}`` for one model against one
    reference; ``preferences[i]`` is P(model preferred) on item i (None: not judged, left out of the fit and of
    the prediction). ``lc_winrate`` is None (with ``lc_note`` saying why) when the GLM cannot be fitted."""
    glm = GLM_DIFFICULTY if difficulty is not None else GLM_MINIMAL
    keep = [i for i, p in enumerate(preferences) if p is not None and math.isfinite(p)]
    result = {"lc_winrate": None, "lc_standard_error": None, "lc_glm": glm, "lc_features": None, "lc_note": None}
    if len(keep) < MIN_ITEMS:
        result["lc_note"] = f"needs at least {MIN_ITEMS} judged items, got {len(keep)}"
        return result
    deltas = [reference_lengths[i] - model_lengths[i] for i in keep]
    if len(set(deltas)) < 2:
        result["lc_note"] = "every item has the same length difference: the length term cannot be fitted"
        return result

    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alpaca_eval imports pkg_resources at import time
        from alpaca_eval.metrics.glm_winrate import GLM_INFO, fit_LogisticRegressionCV, make_dmatrix_for_model

        info = GLM_INFO[glm]
        frame = pd.DataFrame({"preference": [float(preferences[i]) for i in keep], "index": keep})
        delta = pd.Series(deltas, dtype=float)
        frame["std_delta_len"] = delta / delta.std()
        if difficulty is not None:
            frame["instruction_difficulty"] = [float(difficulty[i]) for i in keep]
        frame["not_gamed_baseline"] = True
        test = frame[[c for c in ("instruction_difficulty", "not_gamed_baseline") if c in frame]].copy()
        test["std_delta_len"] = 0
        train, design = make_dmatrix_for_model(frame, test, formula=info["formula"])
        import sklearn

        # The fit turns on metadata routing globally: keep that to this call. alpaca_eval passes arguments newer
        # scikit-learn deprecates; their FutureWarnings are not the user's to act on.
        with sklearn.config_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = fit_LogisticRegressionCV(train, "preference", is_ytrue_proba=True, **info["kwargs"])
        predicted = pd.Series(model.predict_proba(design)[:, 1])
    result.update({
        "lc_winrate": round(float(predicted.mean() * 100), 4),
        "lc_standard_error": round(float(predicted.sem() * 100), 4),
        "lc_features": {name: round(float(coef), 6) for name, coef in zip(design.columns, model.coef_[0])},
    })
    return result


@dataclass(frozen=True)
class DifficultyTable:
    """A difficulty CSV, read and checked: values keyed by instruction text (column ``instruction``) or by the
    item's 0-based position (the first column)."""

    path: Path
    key_column: str
    values: dict[str, float]

    def for_items(self, instructions: list[str]) -> list[float]:
        """The difficulty of each instruction, in order; one without a value is a ``DataError``."""
        by_text = self.key_column == "instruction"
        values = []
        for position, instruction in enumerate(instructions):
            key = instruction if by_text else str(position)
            if key not in self.values:
                what = f"instruction {instruction[:60]!r}" if by_text else f"item {position}"
                raise DataError(self.path, None, f"no difficulty for {what}", field=self.key_column)
            values.append(self.values[key])
        return values


def read_difficulty_table(path: str | Path) -> DifficultyTable:
    """Per-instruction difficulty from a CSV: with an ``instruction`` column, keyed by text; otherwise the first
    column is the item's 0-based position in the instruction set (alpaca_eval's ``instruction_difficulty.csv``
    indexes the AlpacaEval set this way) and the column ``instruction_difficulty`` (or the last) the value."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "file not found", field="--lc-difficulty")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        raise DataError(path, data.count(b"\n", 0, error.start) + 1, f"not valid UTF-8 (byte "
                        f"0x{data[error.start]:02x} at byte {error.start - line_start + 1} of the line)") from None
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows:
        raise DataError(path, None, "no rows")
    columns = list(rows[0])
    value_column = "instruction_difficulty" if "instruction_difficulty" in columns else columns[-1]
    key_column = "instruction" if "instruction" in columns else columns[0]
    table: dict[str, float] = {}
    for line, row in enumerate(rows, start=2):
        try:
            value = float(row[value_column])
        except (TypeError, ValueError):
            raise DataError(path, line, f"not a number: {row[value_column]!r}", field=value_column) from None
        if not math.isfinite(value):
            raise DataError(path, line, f"not a finite number: {row[value_column]!r}", field=value_column)
        table[str(row[key_column]).strip() if key_column != "instruction" else row[key_column]] = value
    return DifficultyTable(path, key_column, table)


def read_difficulty(path: str | Path, instructions: list[str]) -> list[float]:
    """The difficulty of each of ``instructions`` from the CSV at ``path`` (see :func:`read_difficulty_table`)."""
    return read_difficulty_table(path).for_items(instructions)


def average_lengths(model_outputs: list[str], reference_outputs: list[str]) -> dict:
    """Mean output length in characters of the model and of the reference (alpaca_eval's ``avg_length``)."""
    def mean(texts: list[str]) -> float | None:
        return round(sum(len(t) for t in texts) / len(texts), 1) if texts else None

    return {"avg_length": mean(model_outputs), "reference_avg_length": mean(reference_outputs)}
