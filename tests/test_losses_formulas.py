"""Every loss against an independent, written-out formula (plain ``math`` on Python floats, one example at a
time), plus gradcheck in float64, reward shapes and numerical safety."""

from __future__ import annotations

import math

import pytest
import torch

from prefcli.losses import get_loss, list_losses


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def relu(x: float) -> float:
    return x if x > 0 else 0.0


# Each reference takes one example (policy/reference chosen/rejected logps, lengths) and the hparams and
# returns (loss, chosen_reward, rejected_reward), written straight from the papers / TRL.
def ref_dpo(pw, pl, rw, rl, lw, ll, hp):
    b, eps = hp["beta"], hp.get("label_smoothing", 0.0)
    h = (pw - rw) - (pl - rl)
    return -(1 - eps) * logsig(b * h) - eps * logsig(-b * h), b * (pw - rw), b * (pl - rl)


def ref_rpo(pw, pl, rw, rl, lw, ll, hp):
    loss, cr, rr = ref_dpo(pw, pl, rw, rl, lw, ll, hp)
    return loss + hp["alpha"] * (-pw / lw), cr, rr


def ref_robust(pw, pl, rw, rl, lw, ll, hp):
    b, eps = hp["beta"], hp["label_smoothing"]
    h = (pw - rw) - (pl - rl)
    return ((-(1 - eps) * logsig(b * h) + eps * logsig(-b * h)) / (1 - 2 * eps), b * (pw - rw), b * (pl - rl))


def ref_hinge(pw, pl, rw, rl, lw, ll, hp):
    b = hp["beta"]
    h = (pw - rw) - (pl - rl)
    return relu(1 - b * h), b * (pw - rw), b * (pl - rl)


def ref_ipo(pw, pl, rw, rl, lw, ll, hp):
    b = hp["beta"]
    hbar = (pw - rw) / lw - (pl - rl) / ll
    return (hbar - 1 / (2 * b)) ** 2, b * (pw - rw), b * (pl - rl)


def ref_sigmoid_norm(pw, pl, rw, rl, lw, ll, hp):
    b = hp["beta"]
    return -logsig(b * ((pw - rw) / lw - (pl - rl) / ll)), b * (pw - rw), b * (pl - rl)


def ref_exo(pw, pl, rw, rl, lw, ll, hp):
    b, eps = hp["beta"], hp["label_smoothing"]
    # KL(q || p) over the two completions, q = softmax(beta * [rho_w, rho_l]), p = [1 - eps, eps]
    zw, zl = b * (pw - rw), b * (pl - rl)
    qw = math.exp(zw) / (math.exp(zw) + math.exp(zl))
    ql = 1 - qw
    return qw * math.log(qw / (1 - eps)) + ql * math.log(ql / eps), zw, zl


def ref_nca(pw, pl, rw, rl, lw, ll, hp):
    b = hp["beta"]
    cw, cl = b * (pw - rw), b * (pl - rl)
    return -logsig(cw) - 0.5 * logsig(-cw) - 0.5 * logsig(-cl), cw, cl


def ref_bco(pw, pl, rw, rl, lw, ll, hp):
    b = hp["beta"]
    cw, cl = b * (pw - rw), b * (pl - rl)
    return -logsig(cw) - logsig(-cl), cw, cl


def ref_sppo(pw, pl, rw, rl, lw, ll, hp):
    b = hp["beta"]
    return ((pw - rw) - 1 / (2 * b)) ** 2 + ((pl - rl) + 1 / (2 * b)) ** 2, b * (pw - rw), b * (pl - rl)


def ref_apo_zero(pw, pl, rw, rl, lw, ll, hp):
    b = hp["beta"]
    cw, cl = b * (pw - rw), b * (pl - rl)
    return 1 - sig(cw) + sig(cl), cw, cl


def ref_apo_down(pw, pl, rw, rl, lw, ll, hp):
    b = hp["beta"]
    cw, cl = b * (pw - rw), b * (pl - rl)
    return sig(cw) + 1 - sig(cw - cl), cw, cl


def ref_discopop(pw, pl, rw, rl, lw, ll, hp):
    b, tau = hp["beta"], hp["tau"]
    x = b * ((pw - rw) - (pl - rl))
    m = sig(x / tau)
    return (1 - m) * math.log1p(math.exp(-x)) + m * math.exp(-x), b * (pw - rw), b * (pl - rl)


def ref_simpo(pw, pl, rw, rl, lw, ll, hp):
    b, g = hp["beta"], hp["gamma"]
    cw, cl = b * pw / lw, b * pl / ll
    # TRL: logits = avg_w - avg_l - gamma/beta; loss = -logsig(beta * logits)
    loss = -logsig(b * (pw / lw - pl / ll - g / b)) + hp.get("alpha", 0.0) * (-pw / lw)
    return loss, cw, cl


def ref_cpo(pw, pl, rw, rl, lw, ll, hp):
    b = hp["beta"]
    return -logsig(b * (pw - pl)) + hp["alpha"] * (-pw / lw), b * pw, b * pl


REFERENCES = {
    "dpo": (ref_dpo, {"beta": 0.3, "label_smoothing": 0.1}),
    "rpo": (ref_rpo, {"beta": 0.2, "alpha": 0.7, "nll_average": "sequences"}),
    "robust": (ref_robust, {"beta": 0.25, "label_smoothing": 0.2}),
    "hinge": (ref_hinge, {"beta": 0.4}),
    "ipo": (ref_ipo, {"beta": 0.3}),
    "sigmoid-norm": (ref_sigmoid_norm, {"beta": 1.5}),
    "exo": (ref_exo, {"beta": 0.3, "label_smoothing": 0.01}),
    "nca": (ref_nca, {"beta": 0.3}),
    "bco": (ref_bco, {"beta": 0.3}),
    "sppo": (ref_sppo, {"beta": 0.5}),
    "apo-zero": (ref_apo_zero, {"beta": 0.4}),
    "apo-down": (ref_apo_down, {"beta": 0.4}),
    "discopop": (ref_discopop, {"beta": 0.3, "tau": 0.05}),
    "simpo": (ref_simpo, {"beta": 2.5, "gamma": 0.8, "alpha": 0.3}),
    "cpo": (ref_cpo, {"beta": 0.2, "alpha": 0.5, "nll_average": "sequences"}),
}

PAIRWISE_ELEMENTWISE = sorted(REFERENCES)


def random_batch(batch_size=6, seed=0, dtype=torch.float64, scale=3.0):
    generator = torch.Generator().manual_seed(seed)
    pw, pl, rw, rl = (-(scale * torch.rand(batch_size, generator=generator, dtype=dtype)) * 10 for _ in range(4))
    lw = torch.randint(1, 30, (batch_size,), generator=generator)
    ll = torch.randint(1, 30, (batch_size,), generator=generator)
    return pw, pl, rw, rl, lw, ll


def test_registry_has_every_name_from_the_issue():
    names = {info.name for info in list_losses()}
    assert names == {"dpo", "ipo", "hinge", "robust", "exo", "nca", "bco", "sppo", "apo-zero", "apo-down",
                     "discopop", "sigmoid-norm", "simpo", "cpo", "rpo", "kto", "aot", "aot-unpaired", "rnce",
                     "infonca", "mcpo", "sft"}


@pytest.mark.parametrize("name", PAIRWISE_ELEMENTWISE)
def test_pairwise_loss_matches_written_out_formula(name):
    reference, hparams = REFERENCES[name]
    loss = get_loss(name, **hparams)
    pw, pl, rw, rl, lw, ll = random_batch(seed=sum(map(ord, name)))
    out = loss(pw, pl, rw, rl, chosen_lengths=lw, rejected_lengths=ll)
    expected = [reference(*(float(t[i]) for t in (pw, pl, rw, rl, lw, ll)), hparams) for i in range(len(pw))]
    assert out.losses.shape == (len(pw),)
    torch.testing.assert_close(out.losses, torch.tensor([e[0] for e in expected], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(out.loss, out.losses.mean())
    torch.testing.assert_close(out.chosen_rewards, torch.tensor([e[1] for e in expected], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(out.rejected_rewards, torch.tensor([e[2] for e in expected], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad


def test_float32_inputs_match_the_float64_values():
    pw, pl, rw, rl, lw, ll = random_batch(seed=3)
    for name in PAIRWISE_ELEMENTWISE:
        loss = get_loss(name, **REFERENCES[name][1])
        exact = loss(pw, pl, rw, rl, chosen_lengths=lw, rejected_lengths=ll).losses
        single = loss(pw.float(), pl.float(), rw.float(), rl.float(), chosen_lengths=lw, rejected_lengths=ll).losses
        assert single.dtype == torch.float32
        torch.testing.assert_close(single.double(), exact, rtol=1e-5, atol=1e-5)


def test_kto_matches_written_out_formula_with_and_without_kl_pairs():
    hparams = {"beta": 0.3, "desirable_weight": 1.5, "undesirable_weight": 0.8}
    loss = get_loss("kto", **hparams)
    pw, pl, rw, rl, _, _ = random_batch(seed=11)
    policy_kl = pw.flip(0) + 0.5
    reference_kl = rw.flip(0)
    for kl_inputs in ({}, {"policy_kl_logps": policy_kl, "reference_kl_logps": reference_kl},
                      {"policy_kl_logps": reference_kl - 1, "reference_kl_logps": reference_kl}):
        out = loss(pw, pl, rw, rl, **kl_inputs)
        if kl_inputs:
            diffs = [float(a) - float(b) for a, b in zip(kl_inputs["policy_kl_logps"], kl_inputs["reference_kl_logps"])]
            z = max(0.0, sum(diffs) / len(diffs))
        else:
            z = 0.0
        desirable = [1.5 * (1 - sig(0.3 * ((float(pw[i]) - float(rw[i])) - z))) for i in range(len(pw))]
        undesirable = [0.8 * (1 - sig(0.3 * (z - (float(pl[i]) - float(rl[i]))))) for i in range(len(pw))]
        # TRL concatenates the 2B desirable and undesirable losses and takes the mean
        assert abs(float(out.loss) - sum(desirable + undesirable) / (2 * len(pw))) < 1e-6
        expected = torch.tensor([(d + u) / 2 for d, u in zip(desirable, undesirable)], dtype=torch.float64)
        torch.testing.assert_close(out.losses, expected, atol=1e-6, rtol=0)
        assert abs(out.metrics["kto/kl"] - z) < 1e-9
    assert z == 0.0  # the last case has a negative KL estimate, clamped


def test_bco_running_mean_shift():
    loss = get_loss("bco", beta=0.5, running_mean_shift=True)
    seen = []
    for seed in range(3):
        pw, pl, rw, rl, _, _ = random_batch(seed=seed)
        out = loss(pw, pl, rw, rl)
        cw = [0.5 * (float(pw[i]) - float(rw[i])) for i in range(len(pw))]
        cl = [0.5 * (float(pl[i]) - float(rl[i])) for i in range(len(pw))]
        seen += cw + cl  # the shift includes the current batch, updated before the loss (TRL)
        delta = sum(seen) / len(seen)
        expected = [-logsig(a - delta) - logsig(-(b - delta)) for a, b in zip(cw, cl)]
        torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)
        assert abs(out.metrics["bco/reward_shift"] - delta) < 1e-9
    state = loss.state_dict()
    restored = get_loss("bco", beta=0.5, running_mean_shift=True)
    restored.load_state_dict(state)
    assert float(restored.reward_sum) == float(loss.reward_sum) and float(restored.reward_count) == 36
    loss.eval()
    loss(*random_batch(seed=9)[:4])
    assert float(loss.reward_count) == 36  # evaluation does not move the shift


def test_rewards_shapes_for_every_loss():
    batch_size, candidates = 5, 4
    pw, pl, rw, rl, lw, ll = random_batch(batch_size, seed=5)
    cand_p = torch.randn(batch_size, candidates, dtype=torch.float64) - 20
    cand_r = torch.randn(batch_size, candidates, dtype=torch.float64) - 20
    for info in list_losses():
        loss = get_loss(info.name, **({"negatives": 3} if info.data_kind == "candidates" else {}))
        if info.data_kind == "candidates":
            out = loss(pw, cand_p, rw, cand_r, generator=torch.Generator().manual_seed(0))
            assert out.rejected_rewards.shape == (batch_size, 3), info.name
        else:
            out = loss(pw, pl, rw, rl, chosen_lengths=lw, rejected_lengths=ll)
            assert out.rejected_rewards.shape == (batch_size,), info.name
        assert out.losses.shape == (batch_size,), info.name
        assert out.loss.shape == (), info.name
        assert out.chosen_rewards.shape == (batch_size,), info.name
        # metrics stay 0-dim tensors (no host synchronisation inside a loss); the trainer reduces them
        assert all(isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad
                   for value in out.metrics.values()), info.name
        assert torch.isfinite(out.losses).all(), info.name


@pytest.mark.parametrize("name", [info.name for info in list_losses()])
def test_gradcheck_float64(name):
    torch.manual_seed(0)
    batch_size = 4
    lengths = torch.tensor([3.0, 7.0, 2.0, 5.0], dtype=torch.float64)
    if name in ("rnce", "infonca", "mcpo"):
        # fixed negative indices: the loss is then a smooth function of every input
        loss = get_loss(name, negatives=2, beta=0.5)
        inputs = (torch.randn(batch_size, dtype=torch.float64, requires_grad=True),
                  torch.randn(batch_size, 2, dtype=torch.float64, requires_grad=True),
                  torch.randn(batch_size, dtype=torch.float64, requires_grad=True),
                  torch.randn(batch_size, 2, dtype=torch.float64, requires_grad=True))
        indices = torch.zeros(batch_size, 2, dtype=torch.long)

        def function(*args):
            return loss(*args, negative_indices=indices).losses
    else:
        hparams = {} if name == "sft" else {"beta": 0.5}  # sft: plain likelihood, no beta
        if name == "simpo":
            hparams["alpha"] = 0.5
        if name in ("aot", "aot-unpaired"):
            hparams["sort"] = "soft"
            hparams["temperature"] = 0.5
        loss = get_loss(name, **hparams)
        inputs = tuple(torch.randn(batch_size, dtype=torch.float64, requires_grad=True) for _ in range(4))
        kl = {}
        if name == "kto":  # z is detached by design, so the KL inputs are constants here
            kl = {"policy_kl_logps": torch.tensor([0.5, 0.1, 0.3, 0.2], dtype=torch.float64),
                  "reference_kl_logps": torch.zeros(4, dtype=torch.float64)}

        def function(*args):
            return loss(*args, chosen_lengths=lengths, rejected_lengths=lengths, **kl).losses
    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-5)


def test_hard_sort_aot_gradcheck_away_from_ties():
    for name in ("aot", "aot-unpaired"):
        for objective in ("logistic", "hinge2", "ls"):
            loss = get_loss(name, objective=objective, beta=0.5)
            inputs = tuple(torch.tensor(values, dtype=torch.float64, requires_grad=True) for values in
                           ([-3.0, -1.0, -7.0, -2.0], [-5.0, -0.5, -4.0, -9.0],
                            [-2.0, -6.0, -1.5, -3.5], [-4.5, -2.5, -8.0, -1.0]))
            assert torch.autograd.gradcheck(lambda *a, loss=loss: loss(*a).losses, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", [info.name for info in list_losses()])
def test_no_nan_or_inf_at_logps_of_magnitude_1e4_and_bf16(name):
    batch_size = 6
    generator = torch.Generator().manual_seed(1)
    candidates = name in ("rnce", "infonca", "mcpo")
    shapes = [(batch_size,), (batch_size, 3) if candidates else (batch_size,)] * 2
    variants = [{"negatives": 2}] if candidates else [{}]
    if name.startswith("aot"):
        variants.append({"sort": "soft", "temperature": 0.01, "objective": "hinge2"})
    for dtype, hparams in ((dtype, hparams) for dtype in (torch.float32, torch.bfloat16) for hparams in variants):
        loss = get_loss(name, **hparams)
        tensors = []
        for shape in [shapes[0], shapes[1], shapes[0], shapes[1]]:
            values = (torch.rand(shape, generator=generator) * 2 - 1) * 1e4
            tensors.append(values.to(dtype).requires_grad_(True))
        lengths = torch.randint(1, 50, (batch_size,), generator=generator)
        out = loss(*tensors, chosen_lengths=lengths, rejected_lengths=lengths,
                   **({"generator": torch.Generator().manual_seed(0)} if candidates else {}))
        assert out.losses.dtype == torch.float32
        assert torch.isfinite(out.losses).all() and torch.isfinite(out.loss)
        out.loss.backward()
        for tensor in tensors:
            assert tensor.grad is None or torch.isfinite(tensor.grad.float()).all()


def test_runs_on_every_available_device():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        pw, pl, rw, rl, lw, ll = (t.to(device) for t in random_batch(seed=2))
        for info in list_losses():
            loss = get_loss(info.name, **({"negatives": 1} if info.data_kind == "candidates" else {})).to(device)
            rejected_p = pl.unsqueeze(1) if info.data_kind == "candidates" else pl
            rejected_r = rl.unsqueeze(1) if info.data_kind == "candidates" else rl
            out = loss(pw, rejected_p, rw, rejected_r, chosen_lengths=lw, rejected_lengths=ll,
                       **({"generator": torch.Generator().manual_seed(0)} if info.data_kind == "candidates" else {}))
            assert out.loss.device.type == device


def test_log_sigmoid_matches_torch_and_has_the_exact_gradient():
    from prefcli.losses.functional import log_sigmoid

    x = torch.tensor([-1e4, -60.0, -20.5, -19.5, -1.0, 0.0, 1.0, 19.5, 20.5, 60.0, 1e4], dtype=torch.float64,
                     requires_grad=True)
    torch.testing.assert_close(log_sigmoid(x), torch.nn.functional.logsigmoid(x), atol=3e-9, rtol=1e-12)
    log_sigmoid(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.sigmoid(-x.detach()), atol=3e-9, rtol=0)
    assert float(x.grad[5]) == 0.5  # at a zero margin (policy == reference) the DPO gradient is exactly 1/2
