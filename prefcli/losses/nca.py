"""NCA: noise-contrastive alignment, pairwise form."""

from __future__ import annotations

from prefcli.losses.base import RewardLoss, beta_param, register_loss
from prefcli.losses.functional import log_sigmoid


@register_loss
class NCALoss(RewardLoss):
    r"""NCA (Chen et al., 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards",
    arXiv:2402.05369), pair form as TRL's ``nca_pair``. With rewards ``r = beta * rho``::

        loss = -log sigmoid(r_w) - 0.5 * log sigmoid(-r_w) - 0.5 * log sigmoid(-r_l)

    Unlike DPO it optimises absolute rewards, so the chosen likelihood does not fall with the rejected one.
    """

    name = "nca"
    paper = "Chen et al. 2024, NCA (arXiv:2402.05369)"
    formula = "-logσ(r_w) - ½logσ(-r_w) - ½logσ(-r_l), r = βρ"
    hparam_specs = (beta_param(),)

    def objective(self, chosen_rewards, rejected_rewards):
        return -log_sigmoid(chosen_rewards) - 0.5 * log_sigmoid(-chosen_rewards) - 0.5 * log_sigmoid(-rejected_rewards)
