"""Generation with vLLM (used only when ``backend="vllm"`` is asked for and the ``vllm`` package is installed).
vLLM renders the chat template itself and serves a LoRA adapter on top of its base model without merging."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from prefcli.errors import ConfigError
from prefcli.generate import GenerationParams
from prefcli.generate.loading import ModelRef


def require_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ConfigError("backend 'vllm' was asked for but the vllm package is not installed "
                          "(pip install vllm, or use --backend hf)") from None


def generate_vllm(ref: ModelRef, conversations: list[list[dict]], params: GenerationParams,
                  progress: Callable[[int], None] | None = None) -> list[list[str]]:
    """``num_return_sequences`` replies for each conversation, in input order (vLLM batches internally)."""
    from vllm import LLM, SamplingParams

    engine_args = {"model": ref.base, "tokenizer": ref.tokenizer, "seed": params.seed}
    lora_request = None
    if ref.is_adapter:
        from vllm.lora.request import LoRARequest

        rank = json.loads((Path(ref.adapter) / "adapter_config.json").read_text(encoding="utf-8")).get("r", 16)
        engine_args.update(enable_lora=True, max_lora_rank=max(int(rank), 8))
        lora_request = LoRARequest("prefcli-adapter", 1, ref.adapter)
    llm = LLM(**engine_args)
    sampling = SamplingParams(n=params.num_return_sequences, max_tokens=params.max_new_tokens,
                              temperature=float(params.temperature),
                              top_p=float(params.top_p) if params.do_sample else 1.0,
                              seed=params.seed, skip_special_tokens=True)
    outputs = llm.chat(conversations, sampling, use_tqdm=False, lora_request=lora_request,
                       add_generation_prompt=True)
    replies = [[completion.text for completion in output.outputs] for output in outputs]
    if progress is not None:
        progress(len(replies))
    return replies
