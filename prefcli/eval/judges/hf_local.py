"""``hf:PATH``: a local Hugging Face causal LM as the judge (greedy, with the model's chat template). Calls are
serialized on one model in a worker thread, so the event loop stays free; the top log-probs of the first generated
token are returned so AlpacaEval's probability weighting works locally too."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from prefcli.errors import JudgeError
from prefcli.eval.judges.base import JudgeReply, JudgeRequest


class LocalHFJudge:
    is_demo = False

    def __init__(self, path: str | Path, *, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path)
        if not self.path.is_dir():
            raise JudgeError(f"hf:{path}: not a model directory")
        self.name = f"hf:{self.path.resolve()}"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForCausalLM.from_pretrained(self.path).to(self.device).eval()
        except (OSError, ValueError) as error:
            raise JudgeError(f"hf:{path}: cannot load the judge model: {error}") from None
        if self.tokenizer.chat_template is None:
            raise JudgeError(f"hf:{path}: the tokenizer has no chat template")
        self._lock = threading.Lock()

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        return await asyncio.to_thread(self._generate, request)

    def _generate(self, request: JudgeRequest) -> JudgeReply:
        import torch

        with self._lock, torch.inference_mode():
            encoded = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True,
                                                         return_tensors="pt", return_dict=True)
            encoded = {key: value.to(self.device) for key, value in encoded.items()}
            output = self.model.generate(**encoded, max_new_tokens=request.max_tokens, do_sample=False,
                                         output_scores=True, return_dict_in_generate=True,
                                         pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
            new_tokens = output.sequences[0, encoded["input_ids"].shape[1]:]
            text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
            top = None
            if request.top_logprobs and output.scores:
                logprobs = torch.log_softmax(output.scores[0][0].float(), dim=-1)
                values, indices = logprobs.topk(min(request.top_logprobs, logprobs.numel()))
                top = [{"token": self.tokenizer.decode([int(i)]), "logprob": float(v)}
                       for v, i in zip(values.tolist(), indices.tolist())]
        return JudgeReply(text=text, top_logprobs=top)

    async def aclose(self) -> None:
        return None
