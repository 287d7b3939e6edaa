"""A fault-injecting OpenAI-compatible judge on 127.0.0.1 (an ephemeral port), for the judged-evaluation tests and
``benchmarks/judge_throughput.py``.

Verdicts are known in advance: each output carries a quality marker ``q=N`` (the last one in the output counts)
and the judge prefers the higher one. Arena replies name the winner ``[[A>B]]`` / ``[[B>A]]`` (``>>`` when the
difference is 3 or more, ``[[A=B]]`` when equal), after a decoy tag of the opposite verdict so that only the LAST
tag gives the right answer; AlpacaEval replies are ``m`` (first output, also on equal quality) or ``M``. With
``logprobs=True`` an AlpacaEval reply also carries top log-probs with p(m) = q1 / (q1 + q2).

Faults are markers anywhere in the prompt, counted per distinct prompt:
``FAULT-500xK`` (first K calls answer 500), ``FAULT-429`` (first call: 429 with ``Retry-After``), ``FAULT-SLOW``
(first call answers after ``slow_seconds``), ``FAULT-GARBAGE`` (every reply unparseable), ``FAULT-GARBAGExK`` (first
K replies unparseable), ``FAULT-MALFORMED`` (first call: a 200 whose body is not JSON), ``FAULT-400`` (always 400),
``BIAS-A`` (the judge always prefers the first output: a position-biased judge, for the flip rate),
``FAULT-LP-NAN`` / ``FAULT-LP-INF`` / ``FAULT-LP-BIG`` / ``FAULT-LP-STR`` (every AlpacaEval reply's log-prob of ``m``
is NaN / -Infinity / 1000 / a string; with ``xK`` only the first K replies), ``FAULT-ECHO-KEY`` (the reply and a
first-call 500 body quote the request's API key), ``FAULT-NEEDS-N`` (a request with ``max_tokens`` < N gets the
first max_tokens characters of the verdict reply with ``finish_reason: length``; an AlpacaEval reply then comes
back empty).

Every reply carries ``usage`` (prompt_tokens 7, completion_tokens 3) and ``system_fingerprint`` ``fp-test``.

Run as a script (``python tests/judge_servers.py --delay 0.2``) it prints ``PORT <n>`` and serves until killed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ALPACA_OUTPUT = re.compile(r'"model_identifier": "(m|M)",\s*"output": """(.*?)"""\s*\}', re.DOTALL)
_ARENA_OUTPUT = re.compile(r"<\|The Start of Assistant (A|B)'s Answer\|>\n(.*?)\n<\|The End of Assistant \1's Answer\|>",
                           re.DOTALL)
_QUALITY = re.compile(r"q=(\d+)")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connect at once; the default backlog of 5 would drop SYNs


def prompt_key(messages: list[dict]) -> str:
    """The identity of a prompt as this server counts it (tests compute it from the rendered messages)."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def quality(output: str) -> int:
    found = _QUALITY.findall(output)
    return int(found[-1]) if found else 0


class FaultyJudgeServer:
    """``with FaultyJudgeServer(delay=0.0) as server: server.base_url ...``; ``server.calls`` lists every request
    as ``{"key", "status", "time", "auth", "prompt", "max_tokens"}``; with ``require_key`` a request without
    ``Authorization: Bearer <key>`` gets 401."""

    def __init__(self, *, delay: float = 0.0, logprobs: bool = False, retry_after: float = 1.0,
                 slow_seconds: float = 2.5, port: int = 0, require_key: str | None = None):
        self.delay, self.logprobs, self.retry_after, self.slow_seconds = delay, logprobs, retry_after, slow_seconds
        self.require_key = require_key
        self.calls: list[dict] = []
        self._per_prompt: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FaultyJudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, key: str | None = None) -> int:
        with self._lock:
            return len(self.calls) if key is None else sum(call["key"] == key for call in self.calls)

    # ---- the judge's behaviour -------------------------------------------------------------------------------

    def respond(self, body: dict, auth: str | None) -> tuple[int, dict, bytes, float]:
        """(status, headers, body bytes, seconds to wait first) for one request."""
        messages = body.get("messages") or []
        key = prompt_key(messages)
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        with self._lock:
            nth = self._per_prompt.get(key, 0) + 1
            self._per_prompt[key] = nth
        status, headers, payload, wait = 200, {}, None, self.delay
        if self.require_key is not None and auth != f"Bearer {self.require_key}":
            self._log(key, 401, auth, prompt, body)
            return 401, {}, json.dumps({"error": {"message": "invalid key"}}).encode(), 0.0
        k500 = re.search(r"FAULT-500x(\d+)", prompt)
        garbage_k = re.search(r"FAULT-GARBAGEx(\d+)", prompt)
        if k500 and nth <= int(k500.group(1)):
            status, payload = 500, {"error": {"message": "injected server error"}}
        elif "FAULT-429" in prompt and nth == 1:
            status, payload = 429, {"error": {"message": "injected rate limit"}}
            headers["Retry-After"] = f"{self.retry_after:g}"
        elif "FAULT-400" in prompt:
            status, payload = 400, {"error": {"message": "injected bad request"}}
        elif "FAULT-MALFORMED" in prompt and nth == 1:
            self._log(key, status, auth, prompt, body)
            return 200, {}, b"<html>not json", wait
        elif "FAULT-SLOW" in prompt and nth == 1:
            wait = max(wait, self.slow_seconds)
        if "FAULT-ECHO-KEY" in prompt and nth == 1 and status == 200:
            status, payload = 500, {"error": {"message": f"upstream rejected {auth}"}}
        if status == 200:
            finish = "stop"
            if "FAULT-GARBAGE" in prompt and (garbage_k is None or nth <= int(garbage_k.group(1))):
                text, top = "I would rather not pick one.", None
            else:
                text, top = self.verdict(prompt, bool(body.get("logprobs")))
            lp_fault = re.search(r"FAULT-LP-(NAN|INF|BIG|STR)(?:x(\d+))?", prompt)
            if top and lp_fault and (lp_fault.group(2) is None or nth <= int(lp_fault.group(2))):
                bad = {"NAN": float("nan"), "INF": float("-inf"), "BIG": 1000.0, "STR": "high"}[lp_fault.group(1)]
                top = [dict(entry, logprob=bad) if entry["token"] == "m" else entry for entry in top]
            if "FAULT-ECHO-KEY" in prompt:
                text = f"Your key is {auth}. {text}" if "[[" in text else text
            needs = re.search(r"FAULT-NEEDS-(\d+)", prompt)
            budget = body.get("max_tokens") or 10**9
            if needs and budget < int(needs.group(1)):
                text, top, finish = ("" if len(text) <= 2 else text[:budget]), None, "length"
            payload = self._completion(body, text, top, finish)
        self._log(key, status, auth, prompt, body)
        return status, headers, json.dumps(payload).encode(), wait  # NaN/Infinity go out as bare tokens

    def verdict(self, prompt: str, want_logprobs: bool) -> tuple[str, list[dict] | None]:
        alpaca = dict(_ALPACA_OUTPUT.findall(prompt))
        if alpaca:
            q1, q2 = quality(alpaca.get("m", "")), quality(alpaca.get("M", ""))
            if "BIAS-A" in prompt:
                q1, q2 = 1, 0
            text = "m" if q1 >= q2 else "M"
            top = None
            if want_logprobs and self.logprobs:
                p_first = q1 / (q1 + q2) if q1 + q2 else 0.5
                top = [{"token": token, "logprob": math.log(p)} for token, p in (("m", p_first), ("M", 1 - p_first))
                       if p > 0] + [{"token": "The", "logprob": -9.0}]
            return text, top
        arena = dict(_ARENA_OUTPUT.findall(prompt))
        q1, q2 = quality(arena.get("A", "")), quality(arena.get("B", ""))
        if "BIAS-A" in prompt:
            q1, q2 = 1, 0
        diff = q1 - q2
        tag = ("A>>B" if diff >= 3 else "A>B" if diff > 0 else "A=B" if diff == 0
               else "B>A" if diff > -3 else "B>>A")
        decoy = {"A>>B": "B>>A", "A>B": "B>A", "A=B": "B>>A", "B>A": "A>B", "B>>A": "A>>B"}[tag]
        return f"At first glance one might say [[{decoy}]], but comparing carefully: My final verdict is [[{tag}]].", None

    def _completion(self, body: dict, text: str, top: list[dict] | None, finish: str = "stop") -> dict:
        choice = {"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text},
                  "logprobs": None}
        if top is not None:
            choice["logprobs"] = {"content": [{"token": text, "logprob": top[0]["logprob"],
                                               "bytes": None, "top_logprobs": [dict(e, bytes=None) for e in top]}]}
        return {"id": "judge-1", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "judge"), "choices": [choice], "system_fingerprint": "fp-test",
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}

    def _log(self, key: str, status: int, auth: str | None, prompt: str, body: dict) -> None:
        with self._lock:
            self.calls.append({"key": key, "status": status, "time": time.monotonic(), "auth": auth,
                               "prompt": prompt, "max_tokens": body.get("max_tokens")})

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would hold the second

            def log_message(self, *args) -> None:  # keep test output clean
                return

            def _send(self, status: int, headers: dict, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    self.close_connection = True

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {}, json.dumps({"object": "list", "data": [{"id": "judge"}]}).encode())
                else:
                    self._send(404, {}, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {}, b'{"error": {"message": "not found"}}')
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._send(400, {}, b'{"error": {"message": "bad json"}}')
                    return
                status, headers, payload, wait = server.respond(body, self.headers.get("Authorization"))
                if wait:
                    time.sleep(wait)
                self._send(status, headers, payload)

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with FaultyJudgeServer(delay=args.delay, port=args.port) as server:
        print(f"PORT {server.port}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    sys.exit(main())
