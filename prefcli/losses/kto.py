"""KTO: prospect-theoretic loss on unpaired desirable / undesirable examples."""

from __future__ import annotations

import torch

from prefcli.losses.base import HParam, LogpsBatch, PreferenceLoss, beta_param, register_loss


@register_loss
class KTOLoss(PreferenceLoss):
    r"""Kahneman-Tversky Optimization (Ethayarajh et al., 2024, arXiv:2402.01306, eq. 7), as TRL's KTOTrainer.

    Unpaired: ``policy_chosen_logps`` are B desirable examples, ``policy_rejected_logps`` B undesirable ones.
    With the reference point ``z`` (detached)::

        loss_desirable   = lambda_D * (1 - sigmoid(beta * (rho_d - z)))
        loss_undesirable = lambda_U * (1 - sigmoid(beta * (z - rho_u)))
        losses[i]        = (loss_desirable[i] + loss_undesirable[i]) / 2

    so ``losses.mean()`` equals TRL's mean over the 2B concatenated examples.

    Reference point: the caller supplies the log-probs of mismatched pairs (prompt_i, completion of another
    record) as ``policy_kl_logps`` and ``reference_kl_logps`` ([M] each) and ``z = max(0, mean(policy_kl -
    reference_kl))`` is computed here from this batch, detached, as in TRL and the paper (TRL additionally averages
    the mean over processes before clamping). Without them, ``z = 0``. ``kto/kl`` in the metrics reports ``z``.

    ``kl_pairs`` tells the trainer how many mismatched pairs to score: ``all`` (default, as TRL 1.16, which cycles
    every completion of the batch by one: M = 2B) or ``half`` (M = B, alternating desirable and undesirable
    prompts: half the extra no-grad forward, a noisier estimate of ``z``).
    """

    name = "kto"
    paper = "Ethayarajh et al. 2024, KTO (arXiv:2402.01306)"
    formula = "λ_D(1-σ(β(ρ_d - z))) and λ_U(1-σ(β(z - ρ_u))), z = max(0, E[KL])"
    hparam_specs = (beta_param(),
                    HParam("desirable_weight", 1.0, "lambda_D, weight of desirable examples", low=0.0,
                           low_open=True),
                    HParam("undesirable_weight", 1.0, "lambda_U, weight of undesirable examples", low=0.0,
                           low_open=True),
                    HParam("kl_pairs", "all", "mismatched pairs for the reference point z: all (2B, as TRL) or half "
                           "(B)", choices=("all", "half")))
    extra_inputs = ("policy_kl_logps", "reference_kl_logps")
    unpaired = True
    needs_kl_pairs = True

    def reference_point(self, batch: LogpsBatch) -> torch.Tensor:
        policy_kl = batch.extra.get("policy_kl_logps")
        reference_kl = batch.extra.get("reference_kl_logps")
        if policy_kl is None and reference_kl is None:
            return torch.zeros((), dtype=batch.policy_chosen.dtype, device=batch.policy_chosen.device)
        if policy_kl is None or reference_kl is None:
            raise ValueError("loss 'kto' needs both policy_kl_logps and reference_kl_logps (or neither, for z = 0)")
        if policy_kl.shape != reference_kl.shape or policy_kl.dim() != 1:
            raise ValueError(f"loss 'kto': policy_kl_logps {list(policy_kl.shape)} and reference_kl_logps "
                             f"{list(reference_kl.shape)} must both have shape [M]")
        return (policy_kl - reference_kl).mean().detach().clamp(min=0)

    def compute(self, batch: LogpsBatch):
        kl = self.reference_point(batch)
        chosen_logratios, rejected_logratios = batch.chosen_logratios, batch.rejected_logratios
        desirable = self.desirable_weight * (1 - torch.sigmoid(self.beta * (chosen_logratios - kl)))
        undesirable = self.undesirable_weight * (1 - torch.sigmoid(self.beta * (kl - rejected_logratios)))
        losses = (desirable + undesirable) / 2
        return (losses, *batch.implicit_rewards(self.beta), {"kto/kl": kl})
