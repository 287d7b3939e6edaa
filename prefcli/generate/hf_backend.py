"""Generation with transformers: prompts sorted by length and batched with left padding, so each batch wastes
little compute on padding and every prompt ends at the same position (the new tokens are simply the columns
after it). The original order is restored at the end."""

from __future__ import annotations

from collections.abc import Callable

from prefcli.errors import ConfigError
from prefcli.generate import GenerationParams
from prefcli.generate.loading import ModelRef, default_device, load_causal_lm, load_tokenizer


def generate_hf(ref: ModelRef, conversations: list[list[dict]], params: GenerationParams,
                progress: Callable[[int], None] | None = None, device: str | None = None) -> list[list[str]]:
    """``num_return_sequences`` replies for each conversation, in input order."""
    import torch

    device = device or default_device()
    tokenizer = load_tokenizer(ref, padding_side="left")
    prompt_ids = encode_prompts(tokenizer, conversations, ref)
    model = load_causal_lm(ref, device)
    generation_config = build_generation_config(model, tokenizer, params)
    stop_ids = set(generation_config.eos_token_id)

    order = sorted(range(len(prompt_ids)), key=lambda index: len(prompt_ids[index]), reverse=True)
    replies: list[list[str] | None] = [None] * len(prompt_ids)
    done = 0
    cuda_devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    # Seed inside a forked RNG so sampling is reproducible and the caller's random state is left untouched.
    with torch.random.fork_rng(devices=cuda_devices), torch.inference_mode():
        torch.manual_seed(params.seed)
        for start in range(0, len(order), params.batch_size):
            batch = order[start:start + params.batch_size]
            inputs = tokenizer.pad({"input_ids": [prompt_ids[index] for index in batch]}, padding=True,
                                   return_tensors="pt").to(device)
            output = model.generate(**inputs, generation_config=generation_config)
            new_tokens = output[:, inputs["input_ids"].shape[1]:].tolist()
            per_prompt = params.num_return_sequences
            for position, index in enumerate(batch):
                rows = new_tokens[position * per_prompt:(position + 1) * per_prompt]
                replies[index] = [tokenizer.decode(cut_at_stop(row, stop_ids), skip_special_tokens=True)
                                  for row in rows]
            done += len(batch)
            if progress is not None:
                progress(done)
    return replies  # type: ignore[return-value]


def encode_prompts(tokenizer, conversations: list[list[dict]], ref: ModelRef) -> list[list[int]]:
    """Token ids of each conversation rendered with the chat template plus the assistant header. The template
    writes any BOS itself, so the tokenizer must not add another one."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{ref.tokenizer}: the tokenizer has no chat template; prompts cannot be rendered "
                          "(add a chat_template to tokenizer_config.json)")
    texts = [tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
             for messages in conversations]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def build_generation_config(model, tokenizer, params: GenerationParams):
    """An explicit ``GenerationConfig``: nothing inherited from the checkpoint except its stop tokens, so the
    recorded ``GenerationParams`` describe the decoding completely (no hidden top-k or repetition penalty)."""
    from transformers import GenerationConfig

    stop_ids = stop_token_ids(model, tokenizer)
    sampling = {"do_sample": True, "temperature": float(params.temperature), "top_p": float(params.top_p),
                "top_k": 0} if params.do_sample else {"do_sample": False}
    return GenerationConfig(max_new_tokens=params.max_new_tokens, num_return_sequences=params.num_return_sequences,
                            eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                            bos_token_id=tokenizer.bos_token_id, **sampling)


def stop_token_ids(model, tokenizer) -> list[int]:
    """The tokenizer's EOS plus any EOS ids in the checkpoint's generation config (chat models often end a turn
    with a token other than the tokenizer's EOS, e.g. ``<|eot_id|>``)."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in [tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])]:
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    if not ids:
        raise ConfigError("the model has no EOS token: generation would never stop before max_new_tokens")
    return ids


def cut_at_stop(tokens: list[int], stop_ids: set[int]) -> list[int]:
    for position, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[:position]
    return tokens
