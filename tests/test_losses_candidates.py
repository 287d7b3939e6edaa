"""MC-PO, RNCE and InfoNCA: the draws follow the kernel, gradients reach only the drawn candidates, the trainer's
fast path equals the library path, and one candidate with one negative is DPO."""

from __future__ import annotations

import math

import pytest
import torch

from prefcli.losses import get_loss

# chi-square critical value for 4 degrees of freedom at significance 0.001 (standard table value)
CHI2_CRITICAL_DF4_P001 = 18.467


def chi_square(counts: torch.Tensor, probabilities: torch.Tensor) -> float:
    expected = probabilities * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def kernel_weights(policy, reference, beta):
    """softmax(beta * (pi - ref)) written out per row with math.exp."""
    rows = []
    for p_row, r_row in zip(policy.tolist(), reference.tolist()):
        scores = [math.exp(beta * (p - r)) for p, r in zip(p_row, r_row)]
        rows.append([s / sum(scores) for s in scores])
    return torch.tensor(rows, dtype=torch.float64)


def candidate_batch(batch_size=3, candidates=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (-(torch.rand(batch_size, generator=generator, dtype=torch.float64) * 30),
            -(torch.rand(batch_size, candidates, generator=generator, dtype=torch.float64) * 30),
            -(torch.rand(batch_size, generator=generator, dtype=torch.float64) * 30),
            -(torch.rand(batch_size, candidates, generator=generator, dtype=torch.float64) * 30))


def test_mcmc_draws_follow_the_softmax_weights_chi_square():
    beta, draws = 0.5, 20_000
    policy_row = torch.tensor([-10.0, -11.0, -12.5, -10.5, -14.0], dtype=torch.float64)
    reference_row = torch.tensor([-11.0, -10.5, -12.0, -12.0, -12.0], dtype=torch.float64)
    probabilities = kernel_weights(policy_row[None], reference_row[None], beta)[0]
    assert probabilities.min() > 0.03  # every expected count is large

    loss = get_loss("mcpo", beta=beta, negatives=1, sampler="mcmc")
    indices, metrics = loss.draw(policy_row.expand(draws, 5), reference_row.expand(draws, 5),
                                 torch.Generator().manual_seed(1234))
    assert indices.shape == (draws, 1) and indices.dtype == torch.long
    counts = torch.bincount(indices.flatten(), minlength=5).double()
    statistic = chi_square(counts, probabilities)
    assert statistic < CHI2_CRITICAL_DF4_P001, (statistic, counts)
    # the same test has power: the draws clearly do not follow the uniform distribution
    assert chi_square(counts, torch.full((5,), 0.2, dtype=torch.float64)) > 10 * CHI2_CRITICAL_DF4_P001
    expected_entropy = -float((probabilities * probabilities.log()).sum())
    assert abs(metrics["mcpo/weight_entropy"] - expected_entropy) < 1e-6
    assert abs(metrics["mcpo/top_hit_rate"] - float(counts[probabilities.argmax()]) / draws) < 1e-12


def test_rnce_draws_are_uniform_and_infonca_draws_are_distinct():
    draws = 20_000
    mask = torch.ones(draws, 5, dtype=torch.bool)
    indices, _ = get_loss("rnce").draw(None, None, torch.Generator().manual_seed(7), candidate_mask=mask)
    counts = torch.bincount(indices.flatten(), minlength=5).double()
    assert chi_square(counts, torch.full((5,), 0.2, dtype=torch.float64)) < CHI2_CRITICAL_DF4_P001

    infonca = get_loss("infonca", negatives=4)
    indices, _ = infonca.draw(None, None, torch.Generator().manual_seed(7), candidate_mask=mask[:500])
    assert all(len(set(row)) == 4 for row in indices.tolist())


def test_max_and_min_samplers_pick_argmax_and_argmin():
    _, policy, _, reference = candidate_batch(batch_size=8, candidates=6, seed=3)
    weights = kernel_weights(policy, reference, 0.1)
    for sampler, pick in (("max", weights.argmax(dim=1)), ("min", weights.argmin(dim=1))):
        indices, metrics = get_loss("mcpo", sampler=sampler).draw(policy, reference, None)
        assert torch.equal(indices[:, 0], pick)
        assert metrics["mcpo/top_hit_rate"] == (1.0 if sampler == "max" else 0.0)
    top_two, _ = get_loss("mcpo", sampler="max", negatives=2).draw(policy, reference, None)
    assert torch.equal(top_two, weights.topk(2, dim=1).indices)


def test_masked_candidates_are_never_drawn():
    policy = torch.zeros(2000, 4, dtype=torch.float64)
    policy[:, 3] = 50.0  # the masked candidate would win nearly every mcmc draw
    reference = torch.zeros_like(policy)
    mask = torch.tensor([True, True, False, False]).expand(2000, 4).clone()
    mask[::2, 2] = True
    for name, hparams in (("mcpo", {"sampler": "mcmc"}), ("mcpo", {"sampler": "max"}),
                          ("mcpo", {"sampler": "random"}), ("rnce", {}), ("infonca", {"negatives": 2})):
        indices, _ = get_loss(name, **hparams).draw(policy, reference, torch.Generator().manual_seed(0), mask)
        assert bool(mask.gather(1, indices).all()), name


def test_gradient_reaches_only_the_drawn_candidates_and_never_the_weights():
    policy_chosen, policy, reference_chosen, reference = candidate_batch(batch_size=4, candidates=5, seed=8)
    policy_chosen.requires_grad_(True)
    policy.requires_grad_(True)
    loss = get_loss("mcpo", beta=0.7, negatives=2)
    out = loss(policy_chosen, policy, reference_chosen, reference, generator=torch.Generator().manual_seed(5))
    out.loss.backward()
    indices, _ = loss.draw(policy.detach(), reference, torch.Generator().manual_seed(5))
    drawn = torch.zeros_like(policy, dtype=torch.bool).scatter(1, indices, True)
    assert bool((policy.grad[~drawn] == 0).all())
    assert bool((policy.grad[drawn] != 0).all())

    # the gradient is exactly that of the contrastive loss at fixed indices: the kernel weights, which also depend
    # on the policy log-probs, contribute nothing
    fixed_policy = policy.detach().clone().requires_grad_(True)
    fixed_chosen = policy_chosen.detach().clone().requires_grad_(True)
    beta = 0.7
    chosen_reward = beta * (fixed_chosen - reference_chosen)
    negative_rewards = beta * (fixed_policy.gather(1, indices) - reference.gather(1, indices))
    manual = torch.log1p(torch.exp(negative_rewards - chosen_reward[:, None]).sum(dim=1)).mean()
    manual.backward()
    torch.testing.assert_close(policy.grad, fixed_policy.grad, atol=1e-12, rtol=0)
    torch.testing.assert_close(policy_chosen.grad, fixed_chosen.grad, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.loss.detach(), manual.detach(), atol=1e-12, rtol=0)

    drawn_indices, _ = loss.draw(policy, reference, torch.Generator().manual_seed(5))
    assert drawn_indices.grad_fn is None and not drawn_indices.requires_grad


@pytest.mark.parametrize("name,hparams", [("mcpo", {"sampler": "mcmc", "negatives": 3}),
                                          ("mcpo", {"sampler": "min", "negatives": 2}),
                                          ("rnce", {"negatives": 3}), ("infonca", {"negatives": 2})])
def test_fast_path_equals_library_path(name, hparams):
    policy_chosen, policy, reference_chosen, reference = candidate_batch(batch_size=6, candidates=4, seed=2)
    loss = get_loss(name, beta=0.3, **hparams)
    library = loss(policy_chosen, policy, reference_chosen, reference, generator=torch.Generator().manual_seed(9))
    indices, metrics = loss.draw(policy, reference, torch.Generator().manual_seed(9))
    fast = loss(policy_chosen, policy.gather(1, indices), reference_chosen, reference.gather(1, indices),
                negative_indices=indices)
    torch.testing.assert_close(fast.losses, library.losses, atol=0, rtol=0)
    torch.testing.assert_close(fast.rejected_rewards, library.rejected_rewards, atol=0, rtol=0)
    assert library.metrics == metrics
    # and the value is the written-out softmax cross-entropy over [chosen, drawn negatives]
    for i in range(6):
        r_w = 0.3 * float(policy_chosen[i] - reference_chosen[i])
        r_k = [0.3 * float(policy[i, j] - reference[i, j]) for j in indices[i].tolist()]
        expected = -math.log(math.exp(r_w) / (math.exp(r_w) + sum(math.exp(r) for r in r_k)))
        assert abs(float(library.losses[i]) - expected) < 1e-6


def test_one_candidate_and_one_negative_equals_dpo_exactly():
    policy_chosen, policy, reference_chosen, reference = candidate_batch(batch_size=7, candidates=1, seed=4)
    dpo = get_loss("dpo", beta=0.2)(policy_chosen, policy[:, 0], reference_chosen, reference[:, 0])
    for name, hparams in (("rnce", {}), ("infonca", {}), ("mcpo", {"sampler": "mcmc"}), ("mcpo", {"sampler": "max"}),
                          ("mcpo", {"sampler": "min"}), ("mcpo", {"sampler": "random"})):
        loss = get_loss(name, beta=0.2, negatives=1, **hparams)
        for rejected, rejected_reference in ((policy, reference), (policy[:, 0], reference[:, 0])):
            out = loss(policy_chosen, rejected, reference_chosen, rejected_reference,
                       generator=torch.Generator().manual_seed(0))
            assert torch.equal(out.losses, dpo.losses), name
            assert torch.equal(out.chosen_rewards, dpo.chosen_rewards)
            assert torch.equal(out.rejected_rewards[:, 0], dpo.rejected_rewards)
        out32 = loss(policy_chosen.float(), policy.float(), reference_chosen.float(), reference.float())
        dpo32 = get_loss("dpo", beta=0.2)(policy_chosen.float(), policy[:, 0].float(), reference_chosen.float(),
                                          reference[:, 0].float())
        assert torch.equal(out32.losses, dpo32.losses), name


def test_draws_are_reproducible_with_a_seeded_generator():
    _, policy, _, reference = candidate_batch(batch_size=16, candidates=6, seed=6)
    loss = get_loss("mcpo", negatives=3)
    first, _ = loss.draw(policy, reference, torch.Generator().manual_seed(42))
    second, _ = loss.draw(policy, reference, torch.Generator().manual_seed(42))
    other, _ = loss.draw(policy, reference, torch.Generator().manual_seed(43))
    assert torch.equal(first, second) and not torch.equal(first, other)
    unseeded, _ = loss.draw(policy, reference)  # the global RNG when no generator is given
    assert unseeded.shape == (16, 3)


def test_candidate_errors_are_clear():
    policy_chosen, policy, reference_chosen, reference = candidate_batch(batch_size=3, candidates=2, seed=1)
    with pytest.raises(ValueError, match="negatives=3 but a record has only 2 candidate"):
        get_loss("mcpo", negatives=3)(policy_chosen, policy, reference_chosen, reference)
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    with pytest.raises(ValueError, match="only 1 candidate"):
        get_loss("rnce", negatives=2).draw(policy, reference, None, mask)
    with pytest.raises(ValueError, match="candidate_mask"):
        get_loss("rnce").draw(None, None)
    with pytest.raises(ValueError, match="needs the candidates' policy and reference log-probs"):
        get_loss("mcpo").draw(None, None, candidate_mask=mask)
    indices, metrics = get_loss("mcpo", sampler="random").draw(None, None, candidate_mask=mask)
    assert indices.shape == (3, 1) and metrics == {} and bool(mask.gather(1, indices).all())
    with pytest.raises(ValueError, match=r"negative_indices must have shape \[3, 2\]"):
        get_loss("mcpo", negatives=2)(policy_chosen, policy, reference_chosen, reference,
                                      negative_indices=torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"policy_rejected_logps has shape \[3, 2\], expected \[3, 1\]"):
        get_loss("mcpo")(policy_chosen, policy, reference_chosen, reference,
                         negative_indices=torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="needs reference_chosen_logps"):
        get_loss("rnce")(policy_chosen, policy)
