"""Tiny offline assets for tests, demos and benchmarks: a random Llama model with a BPE tokenizer trained in
seconds and a chat template, plus synthetic data in the public datasets' schemas. Nothing touches the network."""

from __future__ import annotations

import json
import random
from pathlib import Path

from prefcli.data.atomic import atomic_open, write_json

CHAT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

_WORDS = (
    "the a an model answer question data good bad helpful harmless honest reply user assistant explain why how "
    "what when where which list write code python function return value number one two three four five red "
    "blue green tree river city music science history math story poem short long clear wrong right because "
    "first then finally please thanks sure here is are was be can will should would could not very more less "
    "élan naïve café 東京 数据 привет мир 🙂"
).split()


def synthetic_sentence(rng: random.Random, low: int = 4, high: int = 16) -> str:
    """A random sentence over a small vocabulary (with some non-ASCII words)."""
    words = [rng.choice(_WORDS) for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + rng.choice([".", "!", "?"])


def build_tokenizer(vocab_size: int = 512, add_bos: bool = True, seed: int = 0):
    """Train a byte-level BPE tokenizer on synthetic text and wrap it as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(seed)
    corpus = [synthetic_sentence(rng, 4, 30) for _ in range(2000)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    if add_bos:
        bos_id = tokenizer.token_to_id("<s>")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)])
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>" if add_bos else None, eos_token="<|end|>",
        pad_token="<pad>", unk_token=None, additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(output_dir: str | Path, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                     vocab_size: int = 512, max_position_embeddings: int = 1024, add_bos: bool = True,
                     seed: int = 0) -> Path:
    """Write a random Llama-architecture causal LM and its tokenizer to ``output_dir`` (an HF model directory)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    output_dir = Path(output_dir)
    tokenizer = build_tokenizer(vocab_size=vocab_size, add_bos=add_bos, seed=seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, do_sample=False)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def nectar_row(rng: random.Random, index: int, num_answers: int = 7, turns: int = 1) -> dict:
    """One row in the Nectar schema: Anthropic-style prompt text and ranked ``answers`` in shuffled order.

    Answers are paragraphs of 1-10 sentences, so a row weighs what a real Nectar row does (about 5.7 kB: 183k rows
    make about 1 GB).
    """
    prompt = ""
    for turn in range(turns):
        prompt += f"\n\nHuman: {synthetic_sentence(rng)}\n\nAssistant:"
        if turn < turns - 1:
            prompt += f" {synthetic_sentence(rng)}"
    answers = [{"answer": " ".join(synthetic_sentence(rng, 6, 40) for _ in range(rng.randint(1, 10))),
                "model": f"model-{rank}", "rank": float(rank)}
               for rank in range(1, num_answers + 1)]
    rng.shuffle(answers)
    return {"prompt": prompt, "answers": answers, "turns": turns, "num_responses": num_answers,
            "source": ["synthetic"], "good_natured": True, "id": index}


def write_synthetic_nectar(path: str | Path, rows: int = 64, seed: int = 0) -> Path:
    """A JSONL file of ``rows`` Nectar-schema rows (one in four multi-turn)."""
    rng = random.Random(seed)
    with atomic_open(path) as handle:
        for index in range(rows):
            row = nectar_row(rng, index, turns=2 if index % 4 == 3 else 1)
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


def write_synthetic_instructions(path: str | Path, rows: int = 16, seed: int = 0) -> Path:
    """A JSON list of ``{"instruction"}`` items, like AlpacaEval's evaluation set."""
    rng = random.Random(seed)
    items = [{"instruction": synthetic_sentence(rng), "dataset": "synthetic"} for _ in range(rows)]
    write_json(path, items)
    return Path(path)


def build_tiny_reward_model(output_dir: str | Path, *, hidden_size: int = 64, num_layers: int = 2,
                            num_heads: int = 4, vocab_size: int = 512, seed: int = 0) -> Path:
    """Write a random Llama sequence-classification model with one output logit (a reward model for
    ``--judge rm:PATH`` and ``prefcli eval reward --reward rm:PATH``) and the fixtures' tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    output_dir = Path(output_dir)
    tokenizer = build_tokenizer(vocab_size=vocab_size, add_bos=True, seed=seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=1024, num_labels=1, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
