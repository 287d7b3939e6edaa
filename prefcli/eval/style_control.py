"""Style-controlled Arena-Hard scores, as arena-hard-auto's ``show_result.py --control-features length markdown``
computes them (Li et al., 2024, arena-hard-auto; the style control of Chatbot Arena, LMSYS blog 2024-08-28).

Each battle is one game of a model against the shared baseline (a strong verdict is 3 games), with outcome
``y`` = 1 model wins, 0.5 tie, 0 baseline wins. Style features of the two answers, with ``len`` the answer's length
and ``c_k`` its counts of markdown headers, list items and bold spans (code blocks removed first, as
``utils/add_markdown_info.py`` does)::

    f_len = (len_m - len_b) / (len_m + len_b)
    d_k   = c_k / (len + 1)                       (markdown density)
    f_k   = (d_k,m - d_k,b) / (d_k,m + d_k,b + 1)

each standardized over all battles, ``(f - mean) / std`` (sample std). The Bradley-Terry model with style terms is

    logit P(model wins) = theta_model - theta_baseline + gamma . f

fitted by maximum likelihood (binary cross-entropy with soft outcomes, summed over battles); the style-controlled
score of a model is ``sigmoid(theta_model - theta_baseline)``: its winrate against the baseline when both answer in
the same style. Scores and intervals come from bootstrap resamples of the battles, as arena-hard-auto reports them:
the median and the 5% / 95% quantiles (a 90% interval) of ``rounds`` refits.

Differences from arena-hard-auto: answer length is counted in tiktoken ``o200k_base`` (gpt-4o) tokens when that
encoding is available offline, else in characters (``length_unit`` says which); a feature that is constant over all
battles (e.g. no answer uses bold) cannot be standardized and is left out (arena-hard-auto stops on the NaN); the fit
runs to convergence with scipy's L-BFGS instead of 50 torch L-BFGS iterations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

STYLE_KEYS = ("length", "header", "list", "bold")
_CODE_BLOCK = re.compile("```([^`]*)```")
_HEADERS = [re.compile(rf"^#{{{level}}}\s", re.MULTILINE) for level in range(1, 7)]
_ORDERED = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_UNORDERED = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")


@lru_cache(maxsize=1)
def _encoder():
    try:
        import tiktoken

        return tiktoken.get_encoding("o200k_base")
    except Exception:  # noqa: BLE001 - not installed, or the encoding file cannot be fetched offline
        return None


def length_unit() -> str:
    return "tokens (o200k_base)" if _encoder() is not None else "characters"


def style_features(answer: str) -> dict[str, int]:
    """``{"length", "header", "list", "bold"}`` of one answer, counted as arena-hard-auto's add_markdown_info.py."""
    stripped = answer
    for block in _CODE_BLOCK.findall(answer):  # as arena-hard-auto: the text between the fences is removed
        stripped = stripped.replace(block, "")
    encoder = _encoder()
    length = len(encoder.encode(answer, disallowed_special=())) if encoder is not None else len(answer)
    return {
        "length": length,
        "header": sum(len(pattern.findall(stripped)) for pattern in _HEADERS),
        "list": len(_ORDERED.findall(stripped)) + len(_UNORDERED.findall(stripped)),
        "bold": len(_BOLD_STARS.findall(stripped)) + len(_BOLD_UNDERSCORES.findall(stripped)),
    }


@dataclass(frozen=True)
class Battle:
    model: str
    outcome: float            # 1 model wins, 0.5 tie, 0 baseline wins
    model_style: dict
    baseline_style: dict


def style_matrix(battles: list[Battle]) -> tuple[np.ndarray, list[str]]:
    """The standardized style features of every battle and the names of the columns kept."""
    model = np.array([[b.model_style[k] for k in STYLE_KEYS] for b in battles], dtype=np.float64)
    base = np.array([[b.baseline_style[k] for k in STYLE_KEYS] for b in battles], dtype=np.float64)
    features = np.zeros_like(model)
    total = model[:, 0] + base[:, 0]
    features[:, 0] = np.divide(model[:, 0] - base[:, 0], total, out=np.zeros_like(total), where=total != 0)
    model_density = model[:, 1:] / (model[:, :1] + 1)
    base_density = base[:, 1:] / (base[:, :1] + 1)
    features[:, 1:] = (model_density - base_density) / (model_density + base_density + 1)
    std = features.std(axis=0, ddof=1) if len(battles) > 1 else np.zeros(features.shape[1])
    keep = std > 1e-12
    normalized = (features[:, keep] - features[:, keep].mean(axis=0)) / std[keep]
    return normalized, [name for name, kept in zip(STYLE_KEYS, keep) if kept]


def fit_bradley_terry(features: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """Coefficients minimizing sum BCE(sigmoid(features @ coef), outcomes) (no intercept, no penalty)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    def loss(coef: np.ndarray) -> tuple[float, np.ndarray]:
        logits = features @ coef
        value = np.sum(np.logaddexp(0.0, logits) - outcomes * logits)
        return float(value), features.T @ (expit(logits) - outcomes)

    start = np.full(features.shape[1], 0.5)  # arena-hard-auto's starting point
    return minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-10,
                                                                      "ftol": 1e-14}).x


def design(battles: list[Battle], models: list[str], *, control: bool) -> tuple[np.ndarray, list[str]]:
    """One-hot model columns (the baseline is the reference point, theta_baseline = 0) and, with ``control``, the
    standardized style columns."""
    onehot = np.zeros((len(battles), len(models)))
    for row, battle in enumerate(battles):
        onehot[row, models.index(battle.model)] = 1.0
    if not control:
        return onehot, []
    style, names = style_matrix(battles)
    return np.concatenate([onehot, style], axis=1), names


def style_controlled_scores(battles: list[Battle], *, rounds: int = 100, seed: int = 0, level: float = 0.90
                            ) -> dict:
    """Per model: ``{"raw", "raw_interval", "style_controlled", "interval"}`` in percent (median and quantiles of
    ``rounds`` bootstrap refits over the battles), and the median style coefficients."""
    from scipy.special import expit

    if not battles:
        return {"models": {}, "style_coefficients": {}, "features": [], "battles": 0}
    models = sorted({battle.model for battle in battles})
    outcomes = np.array([battle.outcome for battle in battles], dtype=np.float64)
    controlled, names = design(battles, models, control=True)
    plain, _ = design(battles, models, control=False)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(battles), size=(rounds, len(battles)))
    styled_scores, raw_scores, gammas = [], [], []
    for index in draws:
        coef = fit_bradley_terry(controlled[index], outcomes[index])
        styled_scores.append(expit(coef[:len(models)]))
        gammas.append(coef[len(models):])
        raw_scores.append(expit(fit_bradley_terry(plain[index], outcomes[index])))
    styled, raw = np.array(styled_scores) * 100, np.array(raw_scores) * 100
    tail = (1 - level) / 2
    result = {}
    for column, model in enumerate(models):
        result[model] = {
            "raw": round(float(np.median(raw[:, column])), 2),
            "raw_interval": [round(float(q), 2) for q in np.quantile(raw[:, column], [tail, 1 - tail])],
            "style_controlled": round(float(np.median(styled[:, column])), 2),
            "interval": [round(float(q), 2) for q in np.quantile(styled[:, column], [tail, 1 - tail])],
            "battles": int(sum(battle.model == model for battle in battles)),
        }
    median_gamma = np.median(np.array(gammas), axis=0) if names else []
    return {"models": result, "features": names, "battles": len(battles), "level": level, "rounds": rounds,
            "length_unit": length_unit(),
            "style_coefficients": {name: round(float(g), 4) for name, g in zip(names, median_gamma)}}


def point_scores(battles: list[Battle], *, control: bool = True) -> dict[str, float]:
    """Per model, ``100 * sigmoid(theta_model - theta_baseline)`` fitted once on all battles (no bootstrap)."""
    from scipy.special import expit

    models = sorted({battle.model for battle in battles})
    features, _ = design(battles, models, control=control)
    coef = fit_bradley_terry(features, np.array([b.outcome for b in battles], dtype=np.float64))
    return {model: float(expit(coef[column])) * 100 for column, model in enumerate(models)}
