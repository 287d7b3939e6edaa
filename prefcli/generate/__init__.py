"""Batched generation of assistant replies for chat prompts, with the model's own chat template.

``generate_outputs`` is what the judged evaluation (``prefcli eval alpaca|arena --model``) and the online MC-PO loop
call. Backends: ``hf`` (transformers ``generate``; works everywhere) and ``vllm`` (when the ``vllm`` package is
installed). The parameters of a run are a ``GenerationParams``; write ``params.to_dict(model_path)`` next to the
outputs so a result can always be traced to how it was generated.
"""

from __future__ import annotations

from collections.abc import Callable

from prefcli.errors import ConfigError
from prefcli.settings.generation import BACKENDS, GenerationParams


def generate_outputs(model_path, prompts: list[list[dict]], *, max_new_tokens: int = 512, temperature: float = 0.0,
                     top_p: float = 1.0, batch_size: int = 8, seed: int = 0, backend: str = "hf",
                     num_return_sequences: int = 1,
                     progress: Callable[[int], None] | None = None) -> list[list[str]]:
    """Generate ``num_return_sequences`` replies per prompt: one list of replies per prompt, in prompt order
    (``[reply] for each prompt`` with the default of one).

    ``model_path`` is a full HF model directory, a PEFT/LoRA adapter directory (its base model is read from
    ``adapter_config.json``) or a hub id. Each prompt is a list of chat messages (a plain string is one user
    turn), rendered with the tokenizer's chat template and ``add_generation_prompt=True``. Only the new tokens are
    decoded, with special tokens skipped. ``progress(n_done)`` is called with the number of prompts finished.
    """
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                              batch_size=batch_size, seed=seed, backend=backend,
                              num_return_sequences=num_return_sequences)
    conversations = normalize_prompts(prompts)
    if not conversations:
        return []
    from prefcli.generate.loading import resolve_model

    if params.backend == "vllm":
        from prefcli.generate.vllm_backend import generate_vllm, require_vllm

        require_vllm()
        replies = generate_vllm(resolve_model(model_path), conversations, params, progress)
    else:
        from prefcli.generate.hf_backend import generate_hf

        replies = generate_hf(resolve_model(model_path), conversations, params, progress)
    return replies


def normalize_prompts(prompts) -> list[list[dict]]:
    """Check every prompt against the record contract; a bad one is a ``ConfigError`` naming its index."""
    from prefcli.data.records import RecordError, normalize_prompt

    if isinstance(prompts, (str, dict)) or not hasattr(prompts, "__iter__"):
        raise ConfigError("prompts: must be a list of prompts (each a list of chat messages or a string)")
    conversations = []
    for index, prompt in enumerate(prompts):
        try:
            conversations.append(normalize_prompt(prompt))
        except RecordError as error:
            where = error.field.replace("prompt", f"prompts[{index}]", 1)
            raise ConfigError(f"{where}: {error}") from None
    return conversations


__all__ = ["BACKENDS", "GenerationParams", "generate_outputs", "normalize_prompts"]
