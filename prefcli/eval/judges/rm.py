"""``rm:PATH_OR_ID``: a Hugging Face sequence-classification reward model as the judge.

The model has one output logit, its score. The tokenizer's chat template renders the prompt followed by the
completion as the assistant's turn; texts are scored in batches (right-padded; the model reads the score at the
last non-padding token), on the GPU when there is one. A pairwise verdict compares the two scores (equal scores
tie). The judge's name carries a fingerprint of the model files (names, sizes, modification times), so a changed
model never reuses stored verdicts. A non-finite score is a failed judgment.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
from pathlib import Path

from prefcli.errors import ConfigError
from prefcli.eval.judges.base import JudgeReply, JudgeRequest, PermanentJudgeError
from prefcli.eval.judges.reward import RewardFunctionError, verdict_for

PREFIX = "rm:"


def model_fingerprint(path: Path) -> str:
    """sha256 over the model directory's file names, sizes and modification times (cheap for large models)."""
    digest = hashlib.sha256()
    for file in sorted(item for item in path.rglob("*") if item.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class RewardModelScorer:
    """Scores (prompt, completion) pairs with a one-logit sequence-classification model."""

    def __init__(self, path_or_id: str, *, device: str | None = None, batch_size: int = 16):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not path_or_id:
            raise ConfigError("--judge rm:PATH_OR_ID: the reward model path or hub id is empty")
        if batch_size < 1:
            raise ConfigError(f"reward model batch size must be at least 1, got {batch_size}")
        self.source = path_or_id
        local = Path(path_or_id)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path_or_id)
            self.model = AutoModelForSequenceClassification.from_pretrained(path_or_id).to(self.device).eval()
        except (OSError, ValueError) as error:
            raise ConfigError(f"rm:{path_or_id}: cannot load the reward model: {error}") from None
        if int(self.model.config.num_labels) != 1:
            raise ConfigError(f"rm:{path_or_id}: a reward model has one output logit; this one has "
                              f"{self.model.config.num_labels} labels")
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"rm:{path_or_id}: the tokenizer has no chat template to render prompt + completion")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"
        identity = model_fingerprint(local) if local.is_dir() else path_or_id
        self.name = f"{PREFIX}{local.resolve() if local.is_dir() else path_or_id}@" \
                    f"{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
        self._lock = threading.Lock()

    def render(self, prompt: list[dict], completion: str) -> str:
        return self.tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": completion}],
                                                  tokenize=False)

    def score_batch(self, prompts: list[list[dict]], completions: list[str]) -> list[float]:
        """One score per (prompt, completion); RewardFunctionError names the first non-finite one."""
        import torch

        texts = [self.render(prompt, completion) for prompt, completion in zip(prompts, completions)]
        scores: list[float] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                encoded = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt", padding=True,
                                         add_special_tokens=False).to(self.device)
                logits = self.model(**encoded).logits.float()
                scores.extend(float(value) for value in logits[:, 0].tolist())
        for index, value in enumerate(scores):
            if not math.isfinite(value):
                raise RewardFunctionError(f"{PREFIX}{self.source} gave a non-finite score ({value!r}) for item "
                                          f"{index}")
        return scores

    def score(self, prompt: list[dict], completion: str) -> float:
        return self.score_batch([prompt], [completion])[0]


class RewardModelJudge:
    """Pairwise judge from a reward model: scores both outputs in one batch and compares them."""

    is_demo = False

    def __init__(self, path_or_id: str, protocol, *, device: str | None = None):
        self.scorer = RewardModelScorer(path_or_id, device=device)
        self.protocol = protocol
        self.name = self.scorer.name

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        prompt = [{"role": "user", "content": request.instruction}]
        try:
            first, second = await asyncio.to_thread(self.scorer.score_batch, [prompt, prompt],
                                                    [request.output_1, request.output_2])
        except RewardFunctionError as error:
            raise PermanentJudgeError(str(error)) from None
        return verdict_for(self.protocol, first, second)

    async def aclose(self) -> None:
        return None
