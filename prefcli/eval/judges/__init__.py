"""Judges: anything that answers a :class:`JudgeRequest` with a :class:`JudgeReply`.

``--judge`` specs: an OpenAI-compatible base URL (``http://127.0.0.1:8000/v1``), ``hf:PATH`` (a local HF model) or
``rule:length`` (a deterministic DEMO judge that prefers the longer output; not a quality measure),
``reward:FILE.py:FUNCTION`` / ``reward:package.module:FUNCTION`` (a Python reward function) or ``rm:PATH_OR_ID``
(a sequence-classification reward model); the last two score each output and compare the scores.
"""

from __future__ import annotations

from prefcli.errors import ConfigError
from prefcli.eval.judges.base import JudgeReply, JudgeRequest, PermanentJudgeError, TransientJudgeError
from prefcli.eval.judges.retry import backoff_delay, parse_retry_after
from prefcli.eval.judges.rule import DEMO_LABEL, RULES
from prefcli.suggest import did_you_mean

__all__ = [
    "DEMO_LABEL",
    "JudgeReply",
    "JudgeRequest",
    "PermanentJudgeError",
    "TransientJudgeError",
    "backoff_delay",
    "judge_kind",
    "make_judge",
    "parse_retry_after",
]


def judge_kind(spec: str) -> str:
    """``openai`` | ``hf`` | ``rule`` | ``reward`` | ``rm`` for a ``--judge`` value (ConfigError when it is none of
    them)."""
    if spec.startswith(("http://", "https://")):
        return "openai"
    if spec.startswith("hf:") and len(spec) > 3:
        return "hf"
    if spec.startswith("rule:"):
        rule = spec[len("rule:"):]
        if rule not in RULES:
            hint = did_you_mean(spec, ["rule:" + r for r in RULES]).strip()
            raise ConfigError(f"--judge: unknown rule {rule!r} (available: "
                              f"{', '.join('rule:' + r for r in RULES)})" + (f"; {hint}" if hint else ""))
        return "rule"
    if spec.startswith("reward:"):
        from prefcli.eval.judges.reward import split_spec

        split_spec(spec)
        return "reward"
    if spec.startswith("rm:") and len(spec) > 3:
        return "rm"
    raise ConfigError(f"--judge: {spec!r} is not an http(s):// base URL, hf:PATH, rule:NAME, "
                      "reward:FILE.py:FUNCTION, reward:package.module:FUNCTION or rm:PATH_OR_ID")


def make_judge(spec: str | list[str], *, protocol, model: str | None = None, api_key: str | None = None,
               timeout: float = 120.0):
    """Build the judge a ``--judge`` spec names; several URLs (one judge model behind several endpoints) make one
    judge that spreads calls by load."""
    if not isinstance(spec, str):
        specs = list(spec)
        if len(specs) > 1:
            if any(judge_kind(one) != "openai" for one in specs):
                raise ConfigError("--judge: several values must all be http(s):// URLs of one judge model")
            from prefcli.eval.judges.openai_compat import PooledJudge

            return PooledJudge([make_judge(one, protocol=protocol, model=model, api_key=api_key, timeout=timeout)
                                for one in specs])
        spec = specs[0]
    kind = judge_kind(spec)
    if kind == "openai":
        if not model:
            raise ConfigError("--judge-model is required with an OpenAI-compatible --judge URL "
                              "(the model name the server expects)")
        from prefcli.eval.judges.openai_compat import OpenAICompatibleJudge

        return OpenAICompatibleJudge(spec.rstrip("/"), model, api_key=api_key, timeout=timeout)
    if kind == "hf":
        from prefcli.eval.judges.hf_local import LocalHFJudge

        return LocalHFJudge(spec[len("hf:"):])
    if kind == "reward":
        from prefcli.eval.judges.reward import RewardJudge

        return RewardJudge(spec, protocol)
    if kind == "rm":
        from prefcli.eval.judges.rm import RewardModelJudge

        return RewardModelJudge(spec[len("rm:"):], protocol)
    from prefcli.eval.judges.rule import LengthRuleJudge

    return LengthRuleJudge(protocol)
