"""Where prefcli's losses follow TRL's convention by default and offer the other one: CPO / RPO NLL averaging,
KTO's reference point, and the cDPO note. Each against a formula written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from prefcli.losses import get_loss

# two pairs with unequal chosen lengths: the two NLL conventions differ
PW, PL, RW, RL = [-10.0, -40.0], [-12.0, -35.0], [-11.0, -38.0], [-11.5, -36.0]
LW, LL = [2.0, 10.0], [3.0, 9.0]


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def tensors(*lists):
    return [torch.tensor(values, dtype=torch.float64) for values in lists]


@pytest.mark.parametrize("average", ["tokens", "sequences", None])
def test_cpo_nll_averaging(average):
    hparams = {"beta": 0.2, "alpha": 0.5} | ({"nll_average": average} if average else {})
    out = get_loss("cpo", **hparams)(*tensors(PW, PL), chosen_lengths=torch.tensor(LW),
                                     rejected_lengths=torch.tensor(LL))
    logistic = sum(-logsig(0.2 * (w - lo)) for w, lo in zip(PW, PL)) / 2
    # TRL's CPOTrainer: cross-entropy over every chosen token of the batch = (10 + 40) / (2 + 10)
    tokens = 50.0 / 12.0
    sequences = (10.0 / 2.0 + 40.0 / 10.0) / 2  # = 4.5
    expected = logistic + 0.5 * (sequences if average == "sequences" else tokens)
    assert float(out.loss) == pytest.approx(expected, abs=1e-12)
    assert float(out.metrics["cpo/nll"]) == pytest.approx(sequences if average == "sequences" else tokens)


@pytest.mark.parametrize("average", ["tokens", "sequences"])
def test_rpo_nll_averaging(average):
    out = get_loss("rpo", beta=0.1, alpha=1.0, nll_average=average)(
        *tensors(PW, PL, RW, RL), chosen_lengths=torch.tensor(LW), rejected_lengths=torch.tensor(LL))
    dpo = sum(-logsig(0.1 * ((w - rw) - (lo - rl))) for w, lo, rw, rl in zip(PW, PL, RW, RL)) / 2
    nll = 50.0 / 12.0 if average == "tokens" else 4.5
    assert float(out.loss) == pytest.approx(dpo + nll, abs=1e-12)


def test_rpo_default_is_trl_token_average():
    out = get_loss("rpo")(*tensors(PW, PL, RW, RL), chosen_lengths=torch.tensor(LW),
                          rejected_lengths=torch.tensor(LL))
    dpo = sum(-logsig(0.1 * ((w - rw) - (lo - rl))) for w, lo, rw, rl in zip(PW, PL, RW, RL)) / 2
    assert float(out.loss) == pytest.approx(dpo + 1.0 * 50.0 / 12.0, abs=1e-12)


def test_nll_average_rejects_unknown_values():
    with pytest.raises(ValueError, match="nll_average"):
        get_loss("cpo", nll_average="batch")


def test_kto_reference_point_from_all_mismatched_pairs():
    """z = max(0, mean over the M given pairs of (policy_kl - reference_kl)); M = 2B with kl_pairs="all"."""
    loss = get_loss("kto", beta=0.5)
    assert loss.kl_pairs == "all" and get_loss("kto", kl_pairs="half").kl_pairs == "half"
    policy_kl = torch.tensor([-5.0, -7.0, -6.0, -4.0], dtype=torch.float64)
    reference_kl = torch.tensor([-6.0, -7.5, -6.0, -5.5], dtype=torch.float64)
    out = loss(*tensors([-3.0, -4.0], [-5.0, -2.0], [-3.5, -4.2], [-4.0, -2.5]),
               policy_kl_logps=policy_kl, reference_kl_logps=reference_kl)
    z = (1.0 + 0.5 + 0.0 + 1.5) / 4
    desirable = [1 - 1 / (1 + math.exp(-0.5 * (rho - z))) for rho in (0.5, 0.2)]
    undesirable = [1 - 1 / (1 + math.exp(-0.5 * (z - rho))) for rho in (-1.0, 0.5)]
    assert float(out.metrics["kto/kl"]) == pytest.approx(z)
    assert float(out.loss) == pytest.approx(sum(desirable + undesirable) / 4, abs=1e-12)


def test_dpo_says_trl_sigmoid_ignores_label_smoothing():
    from prefcli.losses import loss_class

    doc = loss_class("dpo").__doc__
    assert "ignores ``label_smoothing``" in doc and "cDPO" in doc
