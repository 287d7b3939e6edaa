"""A judge behind any OpenAI-compatible chat endpoint (vLLM, TGI, SGLang, ``transformers serve``, hosted APIs).

The ``openai`` client runs with ``max_retries=0``: retries belong to the judging loop, which counts attempts, honors
``Retry-After`` and records failures durably. This class only turns each response or error into a
:class:`JudgeReply`, a :class:`TransientJudgeError` (retry), a :class:`PermanentJudgeError` (fail this item) or a
:class:`~prefcli.errors.JudgeError` (stop: nothing can succeed, e.g. a rejected key or an unknown model).
"""

from __future__ import annotations

from prefcli.errors import JudgeError
from prefcli.eval.judges.base import JudgeReply, JudgeRequest, PermanentJudgeError, TransientJudgeError
from prefcli.eval.judges.retry import parse_retry_after


class OpenAICompatibleJudge:
    """``base_url`` like ``http://127.0.0.1:8000/v1``; ``model`` as the server names it; ``api_key`` is held in
    memory only (never written, never part of a message; a reply that echoes it gets it replaced by ``***``)."""

    is_demo = False

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 120.0):
        from openai import AsyncOpenAI

        self.base_url, self.model = base_url, model
        self.name = model
        self._api_key = api_key or "EMPTY"
        self._client = AsyncOpenAI(base_url=base_url, api_key=self._api_key, max_retries=0, timeout=timeout)
        self._send_logprobs = True

    async def check(self) -> None:
        """Fail fast when nothing listens at ``base_url`` (otherwise every judgment would wait out its retries).
        Only a connection failure counts: servers without ``/models`` or with other errors are left to the run."""
        import openai

        try:
            await self._client.models.list()
        except openai.APITimeoutError:
            return
        except openai.APIConnectionError as error:
            raise JudgeError(f"cannot reach the judge at {self.base_url}: {self._redact(error)}") from None
        except Exception:  # noqa: BLE001 - any answer at all means the server is there
            return

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        import openai

        kwargs = {"model": self.model, "messages": request.messages, "max_tokens": request.max_tokens,
                  "temperature": request.temperature}
        if request.top_logprobs and self._send_logprobs:
            kwargs.update({"logprobs": True, "top_logprobs": request.top_logprobs})
        try:
            response = await self._client.chat.completions.create(**kwargs)
        except openai.APITimeoutError:
            raise TransientJudgeError("timeout") from None
        except openai.APIConnectionError as error:
            raise TransientJudgeError(f"connection error: {self._redact(error)}") from None
        except openai.APIStatusError as error:
            self._raise_for_status(error, asked_logprobs="logprobs" in kwargs)
            return await self.complete(request)  # the server refused logprobs: asked again without them
        except (openai.OpenAIError, ValueError, TypeError, KeyError) as error:  # a body that is not a completion
            raise TransientJudgeError(f"malformed response: {type(error).__name__}: {self._redact(error)}") from None
        return self._reply(response)

    def _raise_for_status(self, error, asked_logprobs: bool) -> None:
        status = error.status_code
        retry_after = parse_retry_after(error.response.headers.get("retry-after"))
        if retry_after is None and error.response.headers.get("retry-after-ms"):
            retry_after = (parse_retry_after(error.response.headers.get("retry-after-ms")) or 0.0) / 1000
        if status == 429 or status >= 500 or status in (408, 409):
            raise TransientJudgeError(f"HTTP {status}: {self._redact(error)}", retry_after=retry_after) from None
        if status in (401, 403):
            raise JudgeError(f"the judge at {self.base_url} refused the request (HTTP {status}): check the key "
                             "named by --judge-key-env") from None
        if status == 404:
            raise JudgeError(f"the judge at {self.base_url} answered 404 for model {self.model!r}: check --judge "
                             "(the base URL usually ends in /v1) and --judge-model") from None
        if asked_logprobs and "logprob" in str(error).lower():
            self._send_logprobs = False
            return
        raise PermanentJudgeError(f"HTTP {status}: {self._redact(error)}") from None

    def _reply(self, response) -> JudgeReply:
        try:
            choice = response.choices[0]
        except (AttributeError, IndexError, TypeError):
            raise TransientJudgeError("malformed response: no choices") from None
        text = (getattr(choice.message, "content", None) or "") if choice.message is not None else ""
        if not isinstance(text, str):
            raise TransientJudgeError(f"malformed response: content is {type(text).__name__}, not text")
        top = None
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if content:
            first = content[0]
            top = [{"token": self.redact_text(str(entry.token)), "logprob": entry.logprob}
                   for entry in (first.top_logprobs or [])]
            if not top and first.token is not None:
                top = [{"token": self.redact_text(str(first.token)), "logprob": first.logprob}]
        usage = getattr(response, "usage", None)
        return JudgeReply(text=self.redact_text(text), top_logprobs=top,
                          finish_reason=getattr(choice, "finish_reason", None),
                          prompt_tokens=_count(getattr(usage, "prompt_tokens", None)),
                          completion_tokens=_count(getattr(usage, "completion_tokens", None)),
                          system_fingerprint=_short_text(getattr(response, "system_fingerprint", None)),
                          endpoint=self.base_url)

    def redact_text(self, text: str) -> str:
        """``text`` with the API key replaced by ``***``."""
        if self._api_key and self._api_key != "EMPTY" and self._api_key in text:
            return text.replace(self._api_key, "***")
        return text

    def _redact(self, error) -> str:
        return self.redact_text(str(error))[:500]

    async def aclose(self) -> None:
        await self._client.close()


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _short_text(value) -> str | None:
    return value[:100] if isinstance(value, str) and value else None


class PooledJudge:
    """One judge model served by several OpenAI-compatible endpoints (``--judge URL --judge URL2``). Each call
    goes to the endpoint with the fewest calls in flight (ties: the one used least so far), so a slower replica
    gets fewer calls. Judgments are keyed by the model name, so they are shared whichever endpoint answered."""

    is_demo = False

    def __init__(self, judges: list[OpenAICompatibleJudge]):
        self.judges = judges
        self.name = judges[0].name
        self.base_url = " ".join(judge.base_url for judge in judges)
        self.in_flight = [0] * len(judges)
        self.calls = [0] * len(judges)

    async def check(self) -> None:
        for judge in self.judges:
            await judge.check()

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        index = min(range(len(self.judges)), key=lambda i: (self.in_flight[i], self.calls[i]))
        self.in_flight[index] += 1
        self.calls[index] += 1
        try:
            return await self.judges[index].complete(request)
        finally:
            self.in_flight[index] -= 1

    def redact_text(self, text: str) -> str:
        return self.judges[0].redact_text(text)

    async def aclose(self) -> None:
        for judge in self.judges:
            await judge.aclose()
