"""Preference losses: one small module per loss family, one registry.

>>> from prefcli.losses import get_loss
>>> loss = get_loss("dpo", beta=0.1)
>>> out = loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
>>> out.loss.backward()

Every loss is a :class:`PreferenceLoss` whose class states its paper, hyper-parameters (with defaults and
ranges) and capability flags (``reference_free``, ``batch_coupled``, ``needs_candidates``, ``unpaired``,
``needs_kl_pairs``, ``uses_lengths``, ``negatives``), so callers never branch on loss names.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any

from prefcli.losses.base import REGISTRY, HParam, LogpsBatch, LossOutput, PreferenceLoss, register_loss
from prefcli.suggest import did_you_mean

# Importing a loss module registers its losses (``@register_loss``): adding a loss is adding one module here.
for _module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")


@dataclass(frozen=True)
class LossInfo:
    """One registry entry as ``list_losses`` reports it."""

    name: str
    paper: str
    formula: str
    hparams: dict[str, Any]
    reference_free: bool
    data_kind: str  # "pair" | "unpaired" | "candidates" | "chosen"
    batch_coupled: bool
    uses_lengths: bool


def loss_class(name: str) -> type[PreferenceLoss]:
    """The class registered as ``name``; ValueError with the close match and every valid name otherwise."""
    if name in REGISTRY:
        return REGISTRY[name]
    alias = name.replace("_", "-").lower() if isinstance(name, str) else name
    if alias in REGISTRY:
        return REGISTRY[alias]
    valid = list(REGISTRY)
    raise ValueError(f"unknown loss {name!r}; {did_you_mean(str(name), valid)}valid losses: {', '.join(valid)}")


def get_loss(name: str, **hparams: Any) -> PreferenceLoss:
    """A ready loss module. Unknown names or hyper-parameters, and out-of-range values, raise ValueError naming
    the valid choices. A hyper-parameter given as ``None`` keeps its default."""
    return loss_class(name)(**hparams)


def list_losses() -> list[LossInfo]:
    """Every registered loss: name, paper, formula, hyper-parameter defaults, reference-free, data kind."""
    return [LossInfo(name=cls.name, paper=cls.paper, formula=cls.formula, hparams=cls.defaults(),
                     reference_free=cls.reference_free, data_kind=cls.data_kind(),
                     batch_coupled=cls.batch_coupled, uses_lengths=cls.uses_lengths)
            for cls in REGISTRY.values()]


def loss_defaults(name: str) -> dict[str, Any]:
    """The default hyper-parameters of loss ``name`` (its keys are exactly the names ``get_loss`` accepts)."""
    return loss_class(name).defaults()


def loss_hparam_names(name: str) -> tuple[str, ...]:
    """The hyper-parameter names loss ``name`` accepts."""
    return tuple(loss_class(name).defaults())


def loss_hparam_specs(name: str) -> tuple[HParam, ...]:
    """Full specs (default, help, range or choices) of loss ``name``'s hyper-parameters."""
    return loss_class(name).hparam_specs


__all__ = [
    "REGISTRY", "HParam", "LogpsBatch", "LossInfo", "LossOutput", "PreferenceLoss", "get_loss", "list_losses",
    "loss_class", "loss_defaults", "loss_hparam_names", "loss_hparam_specs", "register_loss",
]
