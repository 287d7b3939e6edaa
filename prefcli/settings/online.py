"""The settings of the batched online loop (``prefcli train --online``, YAML ``online:``) and of the judge that
ranks candidates (also ``prefcli prepare generate``'s). Defaults follow the MC-PO paper's instruct setup."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from prefcli.errors import ConfigError
from prefcli.settings.check import check_values
from prefcli.settings.fields import flag_for, setting
from prefcli.settings.generation import SEED_RANGE, SamplingSettings
from prefcli.settings.read import to_dict


@dataclass(frozen=True)
class JudgeSettings:
    """How candidates are judged. ``judge``: an OpenAI-compatible base URL, ``hf:PATH``, ``reward:…`` (a Python
    reward function), ``rm:…`` (a reward model) or ``rule:length`` (the deterministic demo judge). The API key is
    never part of the settings: ``judge_key_env`` names the environment variable the CLI reads it from."""

    judge: str = setting("", "Judge: OpenAI-compatible base URL, hf:PATH, rule:length (demo), "
                         "reward:FILE.py:FUNCTION, reward:module:FUNCTION or rm:PATH.", required=True,
                         resumable=True)
    judge_model: str | None = setting(None, "Model name the judge server expects.")
    judge_key_env: str | None = setting(None, "Environment variable holding the judge's API key.", resumable=True)
    protocol: str = setting("alpaca", "Judge protocol: alpaca, arena or a YAML path.")
    judge_prompt: str | None = setting(None, "Your own judge prompt file.")
    both_orders: bool = setting(False, "Judge each comparison in both orders (2(n-1) calls); a disagreement keeps "
                                       "the incumbent.", negative="--one-order")
    concurrency: int = setting(8, "Judge calls in flight.", low=1, resumable=True)
    max_retries: int = setting(3, "Retries of a failed judge call.", low=0, resumable=True)
    retry_delay: float = setting(1.0, "Base of the exponential backoff (s).", low=0.0, resumable=True)
    timeout: float = setting(120.0, "Judge request timeout (s).", low=0.0, low_open=True, resumable=True)
    judge_max_tokens: int | None = setting(None, "Judge reply length.", low=1, default_text="the protocol's")

    def validate(self, rename: dict[str, str] | None = None) -> None:
        check_values(self, rename)

    def check(self, rename: dict[str, str] | None = None):
        """Validate the settings, the judge spec and the protocol without opening the judge; returns the
        protocol."""
        from prefcli.eval.judges import judge_kind
        from prefcli.eval.protocols import load_protocol

        self.validate(rename)
        if judge_kind(self.judge) == "openai" and not self.judge_model:
            raise ConfigError(f"{flag_for(JudgeSettings, 'judge_model', rename)} is required with an "
                              f"OpenAI-compatible {flag_for(JudgeSettings, 'judge', rename)} URL (the model name "
                              "the server expects)")
        return load_protocol(self.protocol, judge_prompt=self.judge_prompt)

    def open(self, api_key: str | None = None):
        """``(judge, protocol)`` ready to use; the caller closes the judge."""
        from prefcli.eval.judges import make_judge

        protocol = self.check()
        judge = make_judge(self.judge, protocol=protocol, model=self.judge_model, api_key=api_key,
                           timeout=self.timeout)
        return judge, protocol

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OnlineSettings:
    """``prefcli train --online``: segments, candidate sampling, judging. In YAML the ``online:`` mapping, nested
    (``sampling:``, ``judging:``) or flat (every key is unique, so ``online: {judge: rule:length}`` works)."""

    segments: int = setting(3, "Training segments; candidates are regenerated before each.", low=1)
    restart_schedule: bool = setting(False, "Give each segment its own optimizer and learning-rate schedule "
                                            "(iterative online DPO) instead of one schedule and optimizer state "
                                            "across segments (MC-PO paper, App. B.1).")
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    judging: JudgeSettings = field(default_factory=JudgeSettings)

    def check(self) -> None:
        check_values(self)
        self.sampling.check()
        self.judging.check()

    def to_dict(self) -> dict:
        return to_dict(self)


@dataclass(frozen=True)
class GenerateCandidatesSettings:
    """``prefcli prepare generate``: the sampling and judging of one online segment, run once on a prompts file."""

    model: str = setting("", "Policy to sample from: HF directory, LoRA adapter or hub id.", required=True)
    prompts: str = setting("", "JSONL records with a prompt field (other fields ignored).", required=True)
    output: str = setting("", "JSONL candidate records (atomic) + .meta.json.", required=True, short="-o")
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    judging: JudgeSettings = field(default_factory=JudgeSettings)
    store: str | None = setting(None, "Judgment store.", default_text="OUTPUT.judgments.sqlite")
    seed: int = setting(0, "Seed of sampling, order coins and the rejected draw.", **SEED_RANGE)
    limit: int | None = setting(None, "Use the first N distinct prompts.", low=1)

    #: How this command spells the flags that ``train --online`` spells otherwise.
    FLAGS = {"gen_batch_size": "--batch-size"}

    def check(self) -> None:
        check_values(self, self.FLAGS)
        self.sampling.check(self.FLAGS)
        self.judging.check(self.FLAGS)
