"""What every judge shares: the request it gets, the reply it gives, and the two kinds of failure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JudgeRequest:
    """One judge call. ``messages`` is what a model judge reads; the raw fields are there for rule-based demo
    judges, which must not parse the rendered prompt."""

    messages: list[dict]
    instruction: str
    output_1: str
    output_2: str
    max_tokens: int
    temperature: float = 0.0
    top_logprobs: int | None = None


@dataclass(frozen=True)
class JudgeReply:
    """The judge's text and, when the endpoint returns them, the top log-probs of its first token
    (``[{"token": str, "logprob": float}, ...]``)."""

    text: str
    top_logprobs: list[dict] | None = None
    finish_reason: str | None = None  # "stop", "length" (cut at max_tokens), ... when the endpoint says
    prompt_tokens: int | None = None  # from the response's ``usage``
    completion_tokens: int | None = None
    system_fingerprint: str | None = None
    endpoint: str | None = None  # which base URL answered, when a judge has several

    @property
    def truncated(self) -> bool:
        """Cut at ``max_tokens`` or empty: asking again with the same budget would get the same reply."""
        return self.finish_reason == "length" or not self.text.strip()


class TransientJudgeError(Exception):
    """A call that may succeed if retried (429, 5xx, connection error, timeout); ``retry_after`` is the server's
    ``Retry-After`` in seconds when it sent one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentJudgeError(Exception):
    """A call that will fail again for this item (e.g. 400: the prompt is too long): recorded as failed at once."""
