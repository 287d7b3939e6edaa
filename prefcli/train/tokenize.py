"""Turn records into token ids, once, before training.

A prompt (a list of chat messages) is rendered exactly as the tokenizer's chat template renders it for
generation (``add_generation_prompt=True``), then tokenized without adding special tokens: the template already
writes the BOS token when the model uses one. A tokenizer whose encoder adds a BOS that its template leaves out
gets it prepended once; a doubled BOS is collapsed. A completion is tokenized alone and ends with EOS. Only the
completion's tokens are scored (the prompt is masked out).

Truncation policy: the prompt keeps its END (the latest turns and the generation prompt) and is cut from the
left to ``max_prompt_length``; then each completion is cut at the right to fit ``max_length`` (prompt included),
so a cut completion loses its EOS. Truncated records are counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefcli.errors import ConfigError


@dataclass
class Example:
    """One training example as token ids: a prompt shared by its completions.

    ``completions`` depends on the layout: pair → [chosen, rejected]; candidates → [chosen, candidate_1, ...];
    unpaired → [completion, kl_completion] (the KL completion is another example's, for KTO's reference point).
    """

    prompt: list[int]
    completions: list[list[int]]
    label: bool | None = None
    source_line: int | None = None


@dataclass
class TruncationStats:
    prompts: int = 0
    completions: int = 0
    examples: set = field(default_factory=set)

    def as_dict(self) -> dict:
        return {"truncated_prompts": self.prompts, "truncated_completions": self.completions,
                "truncated_examples": len(self.examples)}


class ChatEncoder:
    """Encodes prompts and completions for one tokenizer, with the truncation policy above."""

    def __init__(self, tokenizer, max_length: int, max_prompt_length: int):
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("the model's tokenizer has no chat template; set tokenizer.chat_template "
                              "(tokenizer_config.json) to the format the model was fine-tuned on")
        if tokenizer.eos_token_id is None:
            raise ConfigError("the model's tokenizer has no EOS token")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_prompt_length = max_prompt_length
        self.eos_id = tokenizer.eos_token_id
        self.bos_id = tokenizer.bos_token_id
        probe = tokenizer("x", add_special_tokens=True)["input_ids"]
        self.encoder_adds_bos = self.bos_id is not None and bool(probe) and probe[0] == self.bos_id

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.bos_id is not None:
            if self.encoder_adds_bos and (not ids or ids[0] != self.bos_id):
                ids = [self.bos_id] + ids
            while len(ids) >= 2 and ids[0] == self.bos_id and ids[1] == self.bos_id:
                ids = ids[1:]
        return ids

    def completion_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.eos_id]

    def encode(self, messages: list[dict], completions: list[str], stats: TruncationStats | None = None,
               example_key=None) -> tuple[list[int], list[list[int]]]:
        """Prompt ids and each completion's ids, truncated by the policy above."""
        prompt = self.prompt_ids(messages)
        cut = False
        if len(prompt) > self.max_prompt_length:
            prompt = prompt[len(prompt) - self.max_prompt_length:]
            if stats is not None:
                stats.prompts += 1
            cut = True
        room = self.max_length - len(prompt)
        encoded = []
        for ids in self.tokenizer(list(completions), add_special_tokens=False)["input_ids"]:
            ids = ids + [self.eos_id]
            if len(ids) > room:
                ids = ids[:room]
                if stats is not None:
                    stats.completions += 1
                cut = True
            encoded.append(ids)
        if cut and stats is not None:
            stats.examples.add(example_key)
        return prompt, encoded
