"""AOT: distributional preference alignment via optimal transport (paired and unpaired)."""

from __future__ import annotations

import torch

from prefcli.losses.base import HParam, LogpsBatch, PreferenceLoss, beta_param, label_smoothing_param, register_loss
from prefcli.losses.functional import smoothed_logistic
from prefcli.losses.sorting import gather_global, sort_values

OBJECTIVES = ("logistic", "hinge2", "ls")


def aot_objective(delta: torch.Tensor, objective: str, beta: float, label_smoothing: float) -> torch.Tensor:
    """The convex relaxation of the dominance violation at each quantile:
    ``logistic: -(1-eps)·log σ(β·δ) - eps·log σ(-β·δ)``, ``hinge2: (β - δ)_+^2``, ``ls: (β - δ)^2``."""
    if objective == "logistic":
        return smoothed_logistic(beta * delta, label_smoothing)
    if objective == "hinge2":
        return torch.relu(beta - delta) ** 2
    return (beta - delta) ** 2


@register_loss
class AOTLoss(PreferenceLoss):
    r"""Alignment via Optimal Transport, paired (Melnyk et al., NeurIPS 2024, arXiv:2406.05882).

    Makes the distribution of the policy's chosen-over-rejected log-likelihood ratio dominate the reference's,
    in first order. In 1-D the optimal transport plan is the sorted matching, so with
    ``u = log pi(y_w) - log pi(y_l)`` and ``u_ref`` the same under the reference::

        delta_(i) = sort(u)_(i) - sort(u_ref)_(i)          (i-th quantile, i = 1..B)
        losses_(i) = objective(delta_(i))

    objectives: ``logistic`` ``-(1-eps)·logσ(β·δ) - eps·logσ(-β·δ)`` (TRL's ``aot``; ``eps = label_smoothing``),
    ``hinge2`` ``(β - δ)₊²``, ``ls`` ``(β - δ)²``. ``sort = hard`` is the exact sort; ``sort = soft`` uses SoftSort
    with ``temperature`` (tends to the hard sort as temperature -> 0). Both sides use the same sort.

    The sort couples the batch (``batch_coupled``): ``losses[i]`` is the loss of the i-th sorted position, not of
    example i. ``global_sort=True`` sorts over the whole data-parallel batch: u and u_ref are all-gathered across
    ``torch.distributed`` processes (gradients flow back to each process's own entries), the loss is computed on
    the full sorted batch, and each process returns the positions of its own slice (rank r of R, local size B:
    positions r·B .. r·B+B-1). The mean of the processes' ``loss`` values, and the gradients after DDP's
    averaging, then equal the single-process loss on the concatenated batch. Without a process group it is the
    local sort. The AOT paper picks beta = 0.01 after a sweep; the default 0.1 is TRL's.
    """

    name = "aot"
    paper = "Melnyk et al. 2024, AOT (NeurIPS 2024, arXiv:2406.05882), paired"
    formula = "objective(sort(u) - sort(u_ref)), u = logπ(y_w) - logπ(y_l)"
    hparam_specs = (beta_param(), label_smoothing_param(),
                    HParam("objective", "logistic", "convex relaxation of the dominance violation",
                           choices=OBJECTIVES),
                    HParam("sort", "hard", "exact sort or SoftSort", choices=("hard", "soft")),
                    HParam("temperature", 0.1, "SoftSort temperature (sort=soft)", low=0.0, low_open=True),
                    HParam("global_sort", False, "sort over the whole data-parallel batch (all-gather)"))
    batch_coupled = True

    def check_hparams(self) -> None:
        if self.label_smoothing and self.objective != "logistic":
            raise ValueError(f"loss {self.name!r}: label_smoothing applies only to objective='logistic', "
                             f"got objective={self.objective!r} with label_smoothing={self.label_smoothing}")

    def compared_distributions(self, batch: LogpsBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The two samples whose quantiles are compared: (should dominate, is dominated)."""
        return (batch.policy_chosen - batch.policy_rejected,
                batch.reference_chosen - batch.reference_rejected)

    def compute(self, batch: LogpsBatch):
        upper, lower = self.compared_distributions(batch)
        if self.global_sort:
            (upper, lower), own = gather_global(upper, lower)
        else:
            own = slice(0, upper.shape[0])
        delta = (sort_values(upper, self.sort, self.temperature) - sort_values(lower, self.sort, self.temperature))
        losses = aot_objective(delta, self.objective, self.beta, self.label_smoothing)[own]
        metrics = {f"{self.name}/dominance_violation": (delta.detach() < 0).float().mean(),
                   f"{self.name}/sorted_batch_size": torch.tensor(float(delta.shape[0]))}
        return losses, *batch.implicit_rewards(self.beta), metrics


@register_loss
class AOTUnpairedLoss(AOTLoss):
    r"""AOT, unpaired (Melnyk et al., 2024, arXiv:2406.05882): first-order stochastic dominance of the desirable
    examples' log-ratios over the undesirable ones'. ``policy_chosen_logps`` are B desirable examples,
    ``policy_rejected_logps`` B undesirable ones (no pairing), ``rho = log pi - log pi_ref``::

        losses_(i) = objective(sort(rho_w)_(i) - sort(rho_l)_(i))

    Same objectives, sorts and ``global_sort`` as ``aot``. When both inputs are already sorted this is the
    elementwise objective of ``rho_w - rho_l``.
    """

    name = "aot-unpaired"
    paper = "Melnyk et al. 2024, AOT (NeurIPS 2024, arXiv:2406.05882), unpaired"
    formula = "objective(sort(ρ_w) - sort(ρ_l))"
    unpaired = True

    def compared_distributions(self, batch: LogpsBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return batch.chosen_logratios, batch.rejected_logratios
