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
    memory only (never written, never part of a message)."""

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
        top = None
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if content:
            first = content[0]
            top = [{"token": entry.token, "logprob": entry.logprob} for entry in (first.top_logprobs or [])]
            if not top and first.token is not None:
                top = [{"token": first.token, "logprob": first.logprob}]
        return JudgeReply(text=text, top_logprobs=top)

    def _redact(self, error) -> str:
        message = str(error)
        if self._api_key and self._api_key != "EMPTY":
            message = message.replace(self._api_key, "***")
        return message[:500]

    async def aclose(self) -> None:
        await self._client.close()
