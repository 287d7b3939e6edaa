"""What every preference loss shares: the output container, the hyper-parameter specs and their validation,
input checking, and the ``PreferenceLoss`` base module.

A loss is a small ``torch.nn.Module``. Its class declares its name, paper, hyper-parameters (with defaults and
valid ranges) and capability flags; the trainer reads the flags instead of branching on names. ``forward`` takes
summed completion log-probs and returns a :class:`LossOutput` with per-example losses and detached rewards.
Everything is computed in float32 (float64 stays float64, so ``gradcheck`` works); bf16/fp16 inputs are upcast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from prefcli.suggest import did_you_mean


@dataclass
class LossOutput:
    """Result of a loss call.

    ``loss`` is the mean of ``losses``; ``chosen_rewards`` is [B]; ``rejected_rewards`` is [B] (paired, unpaired)
    or [B, K] (candidate losses: the K drawn negatives). Rewards are detached. ``metrics`` holds loss-specific
    floats worth logging, named ``<loss>/<what>``.
    """

    loss: torch.Tensor
    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class HParam:
    """One hyper-parameter: its default (whose type is the accepted type) and its valid range or choices."""

    name: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None

    def describe_range(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.low is None and self.high is None:
            return type(self.default).__name__
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"

    def check(self, loss_name: str, value: Any) -> Any:
        """Return ``value`` coerced to this hyper-parameter's type, or raise ValueError saying what is valid."""
        where = f"loss {loss_name!r}: hyper-parameter {self.name!r}"
        kind = type(self.default)
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be true or false, got {value!r}")
            return value
        if kind is str:
            if not isinstance(value, str) or (self.choices is not None and value not in self.choices):
                raise ValueError(f"{where} must be {self.describe_range()}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # ValueError, not TypeError: every bad hyper-parameter is reported the same way (the API contract)
            raise ValueError(f"{where} must be a number {self.describe_range()}, got {value!r}")  # noqa: TRY004
        if kind is int:
            if value != int(value):
                raise ValueError(f"{where} must be an integer {self.describe_range()}, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{where} must be finite, got {value!r}")
        too_low = self.low is not None and (value < self.low or (self.low_open and value == self.low))
        too_high = self.high is not None and (value > self.high or (self.high_open and value == self.high))
        if too_low or too_high:
            raise ValueError(f"{where} must be {self.describe_range()}, got {value!r}")
        return value


def resolve_hparams(loss_name: str, specs: tuple[HParam, ...], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults overridden by ``given``, each checked. ``None`` means "not given" (keeps the default), so a caller
    can pass every optional CLI flag through unchanged."""
    by_name = {spec.name: spec for spec in specs}
    resolved = {spec.name: spec.default for spec in specs}
    for key, value in given.items():
        if value is None:
            continue
        if key not in by_name:
            valid = ", ".join(by_name) or "none"
            raise ValueError(f"loss {loss_name!r} has no hyper-parameter {key!r}; "
                             f"{did_you_mean(key, list(by_name))}valid: {valid}")
        resolved[key] = by_name[key].check(loss_name, value)
    return resolved


# Hyper-parameters several losses share, declared once so names, defaults and ranges agree everywhere.
def beta_param(default: float = 0.1) -> HParam:
    return HParam("beta", default, "inverse temperature of the implicit reward beta*(log pi - log ref)",
                  low=0.0, low_open=True)


def label_smoothing_param(default: float = 0.0) -> HParam:
    return HParam("label_smoothing", default, "probability that a preference label is flipped (cDPO / robust)",
                  low=0.0, high=0.5, high_open=True)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs; float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


@dataclass
class LogpsBatch:
    """Checked, upcast inputs of one loss call. Log-ratios are ``policy - reference`` (None when reference-free)."""

    loss_name: str
    policy_chosen: torch.Tensor
    policy_rejected: torch.Tensor
    reference_chosen: torch.Tensor | None
    reference_rejected: torch.Tensor | None
    chosen_lengths: torch.Tensor | None
    rejected_lengths: torch.Tensor | None
    extra: dict[str, torch.Tensor]

    @property
    def chosen_logratios(self) -> torch.Tensor:
        return self.policy_chosen - self.reference_chosen

    @property
    def rejected_logratios(self) -> torch.Tensor:
        return self.policy_rejected - self.reference_rejected

    def lengths(self, which: str) -> torch.Tensor:
        """Token counts of ``which`` ("chosen" or "rejected"), clamped to >= 1 as TRL does."""
        lengths = self.chosen_lengths if which == "chosen" else self.rejected_lengths
        if lengths is None:
            raise ValueError(f"loss {self.loss_name!r} needs {which}_lengths (completion token counts)")
        return lengths.clamp(min=1.0)


def as_compute_tensor(loss_name: str, what: str, value: Any, like: torch.Tensor | None = None) -> torch.Tensor:
    """``value`` as a floating tensor in the compute dtype (lengths may be integer tensors)."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(  # noqa: TRY004 - bad inputs are ValueErrors throughout the loss API
            f"loss {loss_name!r}: {what} must be a torch.Tensor, got {type(value).__name__}")
    if like is not None:
        return value.to(like.dtype)
    if not value.is_floating_point():
        raise ValueError(f"loss {loss_name!r}: {what} must be a floating-point tensor, got {value.dtype}")
    return value.to(compute_dtype(value.dtype))


def check_shape(loss_name: str, what: str, tensor: torch.Tensor, shape: tuple[int, ...], meaning: str) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"loss {loss_name!r}: {what} has shape {list(tensor.shape)}, expected {list(shape)} "
                         f"({meaning})")


class PreferenceLoss(nn.Module):
    """Base of every loss: hyper-parameter resolution, input checks, float32 compute, output assembly.

    Subclasses set the class attributes below and implement :meth:`compute`, which gets a :class:`LogpsBatch`
    and returns ``(losses [B], chosen_rewards [B], rejected_rewards, metrics)``.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    hparam_specs: ClassVar[tuple[HParam, ...]] = ()
    extra_inputs: ClassVar[tuple[str, ...]] = ()  # optional tensors accepted through **extra

    reference_free: ClassVar[bool] = False
    batch_coupled: ClassVar[bool] = False
    needs_candidates: ClassVar[bool] = False
    unpaired: ClassVar[bool] = False
    chosen_only: ClassVar[bool] = False  # trains on the chosen completion alone (sft)
    needs_kl_pairs: ClassVar[bool] = False
    uses_lengths: ClassVar[bool] = False
    negatives: int = 1

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = resolve_hparams(self.name, self.hparam_specs, hparams)
        for key, value in self.hparams.items():
            setattr(self, key, value)
        self.check_hparams()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {spec.name: spec.default for spec in cls.hparam_specs}

    @classmethod
    def data_kind(cls) -> str:
        if cls.needs_candidates:
            return "candidates"
        if cls.chosen_only:
            return "chosen"
        return "unpaired" if cls.unpaired else "pair"

    def check_hparams(self) -> None:
        """Cross-field checks (override when one hyper-parameter constrains another)."""

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.hparams.items())

    # ---- input handling -------------------------------------------------------------------------------------
    def prepare(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                chosen_lengths, rejected_lengths, extra: dict[str, Any],
                rejected_shape: tuple[int, ...] | None = None) -> LogpsBatch:
        """Check shapes and presence of the inputs and upcast them; ``rejected_shape`` overrides the expected
        shape of the rejected tensors (candidate losses)."""
        name = self.name
        unknown = sorted(key for key, value in extra.items() if key not in self.extra_inputs and value is not None)
        if unknown:
            accepted = ", ".join(self.extra_inputs) or "none"
            raise ValueError(f"loss {name!r} got unexpected input(s) {', '.join(unknown)}; "
                             f"{did_you_mean(unknown[0], list(self.extra_inputs))}extra inputs it accepts: {accepted}")
        chosen = as_compute_tensor(name, "policy_chosen_logps", policy_chosen_logps)
        if chosen.dim() != 1:
            raise ValueError(f"loss {name!r}: policy_chosen_logps must have shape [B], got {list(chosen.shape)}")
        batch_size = chosen.shape[0]
        rejected = as_compute_tensor(name, "policy_rejected_logps", policy_rejected_logps, like=chosen)
        expected = rejected_shape if rejected_shape is not None else (batch_size,)
        meaning = ("one undesirable example per desirable one" if self.unpaired
                   else "one rejected completion per chosen one")
        check_shape(name, "policy_rejected_logps", rejected, expected, meaning)

        reference_chosen = reference_rejected = None
        if not self.reference_free:
            if reference_chosen_logps is None or reference_rejected_logps is None:
                raise ValueError(f"loss {name!r} needs reference_chosen_logps and reference_rejected_logps; "
                                 f"only reference-free losses (simpo, cpo) run without a reference model")
            reference_chosen = as_compute_tensor(name, "reference_chosen_logps", reference_chosen_logps, like=chosen)
            reference_rejected = as_compute_tensor(name, "reference_rejected_logps", reference_rejected_logps,
                                                   like=chosen)
            check_shape(name, "reference_chosen_logps", reference_chosen, chosen.shape, "same as policy_chosen_logps")
            check_shape(name, "reference_rejected_logps", reference_rejected, rejected.shape,
                        "same as policy_rejected_logps")

        lengths = {}
        for which, value, like in (("chosen", chosen_lengths, chosen), ("rejected", rejected_lengths, rejected)):
            if value is None:
                lengths[which] = None
                continue
            tensor = as_compute_tensor(name, f"{which}_lengths", value, like=chosen)
            if which == "rejected" and rejected_shape is not None and tensor.shape != like.shape:
                tensor = None  # candidate losses get [B, C] lengths on the library path; they do not use them
            else:
                check_shape(name, f"{which}_lengths", tensor, like.shape, f"same as the {which} log-probs")
            lengths[which] = tensor

        extras = {}
        for key in self.extra_inputs:
            if extra.get(key) is not None:
                extras[key] = as_compute_tensor(name, key, extra[key], like=chosen)
        return LogpsBatch(name, chosen, rejected, reference_chosen, reference_rejected,
                          lengths["chosen"], lengths["rejected"], extras)

    # ---- the call ---------------------------------------------------------------------------------------------
    def forward(self, policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                reference_chosen_logps: torch.Tensor | None = None,
                reference_rejected_logps: torch.Tensor | None = None,
                chosen_lengths: torch.Tensor | None = None, rejected_lengths: torch.Tensor | None = None,
                generator: torch.Generator | None = None, **extra: Any) -> LossOutput:
        batch = self.prepare(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                             reference_rejected_logps, chosen_lengths, rejected_lengths, extra)
        losses, chosen_rewards, rejected_rewards, metrics = self.compute(batch)
        return make_output(losses, chosen_rewards, rejected_rewards, metrics)

    def compute(self, batch: LogpsBatch):
        raise NotImplementedError


#: Every loss by name, filled by :func:`register_loss` as the loss modules are imported.
REGISTRY: dict[str, type[PreferenceLoss]] = {}


def register_loss(cls: type[PreferenceLoss]) -> type[PreferenceLoss]:
    """Class decorator: make the loss available under its ``name`` (``get_loss``, ``prefcli losses``, ``train``)."""
    if not cls.name:
        raise TypeError(f"{cls.__name__}: a registered loss needs a name")
    if REGISTRY.get(cls.name, cls) is not cls:
        raise ValueError(f"loss name {cls.name!r} is registered twice ({REGISTRY[cls.name].__name__}, "
                         f"{cls.__name__})")
    REGISTRY[cls.name] = cls
    return cls


def make_output(losses, chosen_rewards, rejected_rewards, metrics) -> LossOutput:
    return LossOutput(loss=losses.mean(), losses=losses, chosen_rewards=chosen_rewards.detach(),
                      rejected_rewards=rejected_rewards.detach(), metrics=dict(metrics))
