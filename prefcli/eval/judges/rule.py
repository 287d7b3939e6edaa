"""``rule:length``: a deterministic DEMO judge that prefers the longer output. It is not a measure of quality:
it exists so the offline demo and tests can run a judged evaluation end to end without a model that can judge."""

from __future__ import annotations

from prefcli.eval.judges.base import JudgeReply, JudgeRequest

DEMO_LABEL = "demo judge: prefers the longer output, not a quality measure"
RULES = ("length",)


class LengthRuleJudge:
    """Longer output wins (by characters); at least twice as long is a strong win; equal lengths tie (or, in a
    protocol without a tie label, go to the first output). The reply is phrased in the protocol's vocabulary."""

    is_demo = True

    def __init__(self, protocol):
        self.protocol = protocol
        self.name = "rule:length"

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        first, second = len(request.output_1), len(request.output_2)
        if first == second:
            return JudgeReply(self.protocol.reply_for(0.5))
        longer, shorter = max(first, second), min(first, second)
        strong = longer >= 2 * max(shorter, 1)
        return JudgeReply(self.protocol.reply_for(1.0 if first > second else 0.0, strong=strong))

    async def aclose(self) -> None:
        return None
