"""``reward:FILE.py:FUNCTION`` and ``reward:package.module:FUNCTION``: a Python reward function as the judge.

The function is ``FUNCTION(prompt: list[dict], completion: str) -> float``. A pairwise verdict compares the two
outputs' scores (higher wins, equal scores tie). The judge's name, which keys every stored verdict, carries the
sha256 of the source file that defines the function, so editing the function never reuses an old verdict. A
function that raises or returns a non-finite or non-numeric score is a failed judgment (with the reason), never a
stored verdict. The judge sees the instruction text; it is passed as one user turn.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from prefcli.errors import ConfigError
from prefcli.eval.judges.base import JudgeReply, JudgeRequest, PermanentJudgeError

PREFIX = "reward:"


class RewardFunctionError(ValueError):
    """The reward function raised, or returned something that is not a finite number."""


def split_spec(spec: str) -> tuple[str, str]:
    """``(target, function)`` of ``reward:TARGET:FUNCTION``; ConfigError when the shape is wrong or the file is
    missing (checked before any work starts)."""
    body = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    target, _, function = body.rpartition(":")
    if not target or not function.isidentifier():
        raise ConfigError(f"--judge {spec!r}: expected reward:FILE.py:FUNCTION or reward:package.module:FUNCTION")
    if not target.endswith(".py") and not all(part.isidentifier() for part in target.split(".")):
        raise ConfigError(f"--judge {spec!r}: {target!r} is neither a .py file nor a dotted module name")
    if target.endswith(".py") and not Path(target).is_file():
        raise ConfigError(f"--judge {spec}: {target}: no such file")
    return target, function


@dataclass(frozen=True)
class RewardFunction:
    """A loaded reward function, named by its spec and the hash of its source."""

    spec: str
    function: object
    source_sha256: str

    @property
    def name(self) -> str:
        return f"{self.spec}@{self.source_sha256[:16]}"

    def score(self, prompt: list[dict], completion: str) -> float:
        """The function's score; RewardFunctionError when it raises or the value is not a finite number."""
        try:
            value = self.function(prompt, completion)
        except Exception as error:  # noqa: BLE001 - any failure of user code is a failed judgment
            raise RewardFunctionError(f"{self.spec} raised {type(error).__name__}: {error}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                import numpy

                if isinstance(value, numpy.generic) and numpy.issubdtype(type(value), numpy.number):
                    value = float(value)
            except ImportError:  # pragma: no cover - numpy ships with torch
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RewardFunctionError(f"{self.spec} returned {type(value).__name__} {value!r}, not a number")
        if not math.isfinite(value):
            raise RewardFunctionError(f"{self.spec} returned a non-finite score ({value!r})")
        return float(value)


def load_reward_function(spec: str) -> RewardFunction:
    """Import the function ``spec`` names (ConfigError naming the file or module when it cannot be loaded)."""
    target, name = split_spec(spec)
    spec = f"{PREFIX}{target}:{name}"
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ConfigError(f"--judge {spec}: {path}: no such file")
        source = path.read_bytes()
        module_name = f"prefcli_reward_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
            module_spec.loader.exec_module(module)
        except Exception as error:  # noqa: BLE001 - user code
            sys.modules.pop(module_name, None)
            raise ConfigError(f"--judge {spec}: {path}: cannot import it ({type(error).__name__}: {error})") from None
    else:
        try:
            module = importlib.import_module(target)
        except Exception as error:  # noqa: BLE001 - user code
            raise ConfigError(f"--judge {spec}: cannot import module {target!r} "
                              f"({type(error).__name__}: {error})") from None
        try:
            source = inspect.getsource(module).encode()
        except (OSError, TypeError):
            raise ConfigError(f"--judge {spec}: module {target!r} has no readable source to hash") from None
    function = getattr(module, name, None)
    if function is None:
        public = sorted(key for key, value in vars(module).items() if callable(value) and not key.startswith("_"))
        raise ConfigError(f"--judge {spec}: {target} defines no {name!r} (functions: {', '.join(public) or 'none'})")
    if not callable(function):
        raise ConfigError(f"--judge {spec}: {target}:{name} is not callable")
    return RewardFunction(spec, function, hashlib.sha256(source).hexdigest())


def verdict_for(protocol, first: float, second: float) -> JudgeReply:
    """The protocol's reply for two scores: the higher one wins, equal scores tie. A protocol without a tie label
    but with log-prob weighting (AlpacaEval) gets its two verdict tokens at equal probability, which it reads as
    exactly 1/2 (a tie)."""
    if first != second:
        return JudgeReply(protocol.reply_for(1.0 if first > second else 0.0))
    has_tie_label = any(float(spec["first"]) == 0.5 for spec in protocol.labels.values())
    if has_tie_label or not protocol.logprobs:
        return JudgeReply(protocol.reply_for(0.5))
    half = math.log(0.5)
    return JudgeReply(protocol.reply_for(1.0), top_logprobs=[
        {"token": protocol.logprobs["first_token"], "logprob": half},
        {"token": protocol.logprobs["second_token"], "logprob": half}])


class RewardJudge:
    """Pairwise judge from a reward function: scores both outputs and compares them."""

    is_demo = False

    def __init__(self, spec: str, protocol):
        self.reward = load_reward_function(spec)
        self.protocol = protocol
        self.name = self.reward.name

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        prompt = [{"role": "user", "content": request.instruction}]
        scores = []
        for which, output in (("output 1", request.output_1), ("output 2", request.output_2)):
            try:
                scores.append(self.reward.score(prompt, output))
            except RewardFunctionError as error:
                raise PermanentJudgeError(f"{error} (scoring {which})") from None
        return verdict_for(self.protocol, *scores)

    async def aclose(self) -> None:
        return None
