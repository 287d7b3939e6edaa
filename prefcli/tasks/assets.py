"""The files ``prefcli fixtures task`` writes: a word-level tokenizer over the task's vocabulary, a random tiny
Llama sized for it, SFT demonstrations, training prompts, held-out prompts and the reward function's source."""

from __future__ import annotations

import json
import random
from pathlib import Path

from prefcli.data.atomic import atomic_open
from prefcli.fixtures import CHAT_TEMPLATE, SPECIAL_TOKENS

UNKNOWN = "<unk>"


def build_task_tokenizer(words: list[str]):
    """A word-level tokenizer (whitespace and punctuation split; unknown words map to ``<unk>``) with the fixtures'
    chat template and special tokens. Decoding joins tokens with single spaces."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS, UNKNOWN, *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNKNOWN))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    bos_id = vocab["<s>"]
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                             special_tokens=[("<s>", bos_id)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="<|end|>", pad_token="<pad>", unk_token=UNKNOWN,
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_task_model(output_dir: Path, words: list[str], *, hidden_size: int, num_layers: int, num_heads: int,
                     seed: int) -> Path:
    """A random Llama-architecture causal LM over the task tokenizer, written as an HF model directory."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_task_tokenizer(words)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=128, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, do_sample=False)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_open(path) as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def distinct_prompts(make_prompt, rng: random.Random, count: int, exclude: set[str]) -> list[str]:
    """``count`` prompts, none repeated and none in ``exclude`` (the held-out set stays unseen)."""
    prompts: list[str] = []
    seen = set(exclude)
    attempts = 0
    while len(prompts) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise ValueError(f"the task has fewer than {count} distinct prompts outside the held-out set")
        prompt = make_prompt(rng)
        if prompt not in seen:
            seen.add(prompt)
            prompts.append(prompt)
    return prompts
