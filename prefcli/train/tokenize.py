"""Turn records into token ids, in batches.

A prompt (a list of chat messages) is rendered exactly as the tokenizer's chat template renders it for
generation (``add_generation_prompt=True``), then tokenized without adding special tokens: the template already
writes the BOS token when the model uses one. A tokenizer whose encoder adds a BOS that its template leaves out
gets it prepended once; a doubled BOS is collapsed.

A completion is the assistant turn as the template renders it: the conversation with the completion appended as
an assistant message is rendered, and the completion is what follows the prompt's rendering, so it ends with the
template's own end-of-turn tokens (``<|eot_id|>``, ``<|im_end|>\\n``, ``</s>``, ``<end_of_turn>\\n``), as TRL's
``DPOTrainer`` renders it. A template whose full rendering does not start with the prompt's rendering gets the
raw completion text plus ``eos_token`` (counted as ``template_fallbacks``). Only the completion's tokens are
scored (the prompt is masked out).

Truncation policy: the prompt keeps its END (the latest turns and the generation prompt) and is cut from the
left to ``max_prompt_length``, except that a leading BOS token stays in front (a model never sees text without
it); then each completion is cut at the right to fit ``max_length`` (prompt included), so a cut completion loses
its end-of-turn tokens. Truncated records are counted and reported.

Tokenizer calls are batched (a fast tokenizer encodes a batch in parallel in Rust) and templates are rendered
for a whole batch of records at a time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from prefcli.errors import ConfigError

#: Bump when the token ids this module produces for the same inputs change (invalidates token caches).
ENCODING_VERSION = 2


@dataclass
class Example:
    """One training example as token ids: a prompt and the completions scored against it.

    ``completions[0]`` is the completion trained toward (a pair's or candidate set's ``chosen``, or an unpaired
    record's ``completion``); ``completions[1:]`` are its alternatives from the same record (a pair's
    ``rejected``, or the candidates). ``kl_completion`` (unpaired layout only) is another record's completion,
    scored against this prompt for KTO's reference point.
    """

    prompt: list[int]
    completions: list[list[int]]
    label: bool | None = None
    source_line: int | None = None
    kl_completion: list[int] | None = None

    @property
    def chosen(self) -> list[int]:
        return self.completions[0]

    @property
    def alternatives(self) -> list[list[int]]:
        return self.completions[1:]

    def scored(self) -> list[list[int]]:
        """Every completion scored against the prompt: ``completions`` then ``kl_completion`` when present."""
        return self.completions + ([self.kl_completion] if self.kl_completion is not None else [])


@dataclass
class Encoded:
    """One tokenized (prompt, completions) item and what truncation did to it."""

    prompt: list[int]
    completions: list[list[int]]
    prompt_cut: bool = False
    completions_cut: int = 0
    fallbacks: int = 0


@dataclass
class TruncationStats:
    prompts: int = 0
    completions: int = 0
    examples: set = field(default_factory=set)
    template_fallbacks: int = 0
    checked: int = 0  # examples counted (a run counts the examples its steps use)

    def add(self, encoded: Encoded, example_key) -> None:
        self.checked += 1
        self.prompts += encoded.prompt_cut
        self.completions += encoded.completions_cut
        self.template_fallbacks += encoded.fallbacks
        if encoded.prompt_cut or encoded.completions_cut:
            self.examples.add(example_key)

    def as_dict(self) -> dict:
        return {"truncated_prompts": self.prompts, "truncated_completions": self.completions,
                "truncated_examples": len(self.examples), "template_fallbacks": self.template_fallbacks,
                "examples_checked": self.checked}


def tokenizer_fingerprint(tokenizer) -> str:
    """A content hash of a tokenizer: its vocabulary, merges, normalizer and special tokens (not its path)."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    special = {"map": tokenizer.special_tokens_map, "added": sorted(str(t) for t in tokenizer.added_tokens_encoder)}
    digest.update(json.dumps(special, sort_keys=True, default=str).encode())
    return digest.hexdigest()


class ChatEncoder:
    """Encodes prompts and completions for one tokenizer, with the rendering and truncation policy above."""

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

    def fingerprint(self) -> str:
        """What the token ids depend on: tokenizer content, chat template, limits and this module's version."""
        fields = {"version": ENCODING_VERSION, "tokenizer": tokenizer_fingerprint(self.tokenizer),
                  "template": self.tokenizer.chat_template, "max_length": self.max_length,
                  "max_prompt_length": self.max_prompt_length}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()

    # ---- rendering --------------------------------------------------------------------------------------------
    def _render(self, conversations: list[list[dict]], generation_prompt: bool) -> list[str]:
        if not conversations:
            return []
        return self.tokenizer.apply_chat_template(conversations, add_generation_prompt=generation_prompt,
                                                  tokenize=False)

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def _fix_bos(self, ids: list[int]) -> list[int]:
        if self.bos_id is not None:
            if self.encoder_adds_bos and (not ids or ids[0] != self.bos_id):
                ids = [self.bos_id] + ids
            while len(ids) >= 2 and ids[0] == self.bos_id and ids[1] == self.bos_id:
                ids = ids[1:]
        return ids

    def completion_texts(self, messages: list[dict], prompt_text: str, completions: list[str]) -> tuple[list[str], int]:
        """Each completion as the template renders the assistant turn after ``prompt_text``; also how many fell
        back to ``text + eos_token`` because the full rendering does not extend the prompt's."""
        fulls = self._render([messages + [{"role": "assistant", "content": text}] for text in completions], False)
        texts, fallbacks = [], 0
        for text, full in zip(completions, fulls):
            if full.startswith(prompt_text) and len(full) > len(prompt_text):
                texts.append(full[len(prompt_text):])
            else:
                texts.append(text + self.tokenizer.eos_token)
                fallbacks += 1
        return texts, fallbacks

    # ---- public API -------------------------------------------------------------------------------------------
    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The untruncated prompt ids."""
        return self._fix_bos(self._ids(self._render([messages], True))[0])

    def completion_ids(self, messages: list[dict], text: str) -> list[int]:
        """The untruncated ids of one completion of ``messages``."""
        prompt_text = self._render([messages], True)[0]
        texts, _ = self.completion_texts(messages, prompt_text, [text])
        return self._ids(texts)[0]

    def truncate_prompt(self, ids: list[int]) -> tuple[list[int], bool]:
        """Keep the end of the prompt, and its leading BOS."""
        if len(ids) <= self.max_prompt_length:
            return ids, False
        head = [ids[0]] if self.bos_id is not None and ids and ids[0] == self.bos_id else []
        keep = self.max_prompt_length - len(head)
        return head + (ids[len(ids) - keep:] if keep > 0 else []), True

    def encode_many(self, items: list[tuple[list[dict], list[str]]]) -> list[Encoded]:
        """Tokenize a batch of ``(messages, completions)``: one template pass and one tokenizer call for all
        prompts, then for all completions."""
        prompt_texts = self._render([messages for messages, _ in items], True)
        completion_texts: list[str] = []
        fallbacks: list[int] = []
        for (messages, completions), prompt_text in zip(items, prompt_texts):
            texts, fell_back = self.completion_texts(messages, prompt_text, list(completions))
            completion_texts += texts
            fallbacks.append(fell_back)
        prompt_ids = self._ids(prompt_texts)
        completion_ids = self._ids(completion_texts)
        out, cursor = [], 0
        for (_messages, completions), ids, fell_back in zip(items, prompt_ids, fallbacks):
            prompt, prompt_cut = self.truncate_prompt(self._fix_bos(ids))
            room = self.max_length - len(prompt)
            encoded = Encoded(prompt, [], prompt_cut, 0, fell_back)
            for completion in completion_ids[cursor:cursor + len(completions)]:
                if len(completion) > room:
                    completion = completion[:room]
                    encoded.completions_cut += 1
                encoded.completions.append(completion)
            cursor += len(completions)
            out.append(encoded)
        return out

    def encode(self, messages: list[dict], completions: list[str], stats: TruncationStats | None = None,
               example_key=None) -> tuple[list[int], list[list[int]]]:
        """Prompt ids and each completion's ids for one record, truncated by the policy above."""
        encoded = self.encode_many([(messages, completions)])[0]
        if stats is not None:
            stats.add(encoded, example_key)
        return encoded.prompt, encoded.completions
