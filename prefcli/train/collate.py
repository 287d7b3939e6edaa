"""Pad token ids into tensors: only to the batch's longest sequence, never to ``max_length``.

A batch is a set of prompts and a set of completion rows, each row pointing at its prompt. The scorer either
encodes each prompt once and continues every row from the prompt's KV cache (``SequenceBatch.prompt_*`` +
``completion_*``), or scores full ``prompt + completion`` rows (``full_*``, built when asked for).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class SequenceBatch:
    prompt_ids: torch.Tensor          # [P, Pmax] right-padded
    prompt_lengths: torch.Tensor      # [P]
    completion_ids: torch.Tensor      # [N, Lmax] right-padded
    completion_lengths: torch.Tensor  # [N]
    row_prompt: torch.Tensor          # [N] index of each row's prompt
    full_ids: torch.Tensor | None = None       # [N, Tmax] prompt + completion, right-padded
    full_lengths: torch.Tensor | None = None   # [N]

    def to(self, device) -> SequenceBatch:
        return SequenceBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                                for f in fields(self)})

    @property
    def num_rows(self) -> int:
        return self.completion_ids.shape[0]

    def token_count(self) -> int:
        """Non-pad tokens scored: each prompt once (shared) + every completion."""
        return int(self.prompt_lengths.sum()) + int(self.completion_lengths.sum())


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    padded = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for index, row in enumerate(rows):
        padded[index, :len(row)] = torch.tensor(row, dtype=torch.long)
    return padded, torch.tensor([len(row) for row in rows], dtype=torch.long)


def collate(prompts: list[list[int]], rows: list[tuple[int, list[int]]], pad_id: int,
            full: bool = False) -> SequenceBatch:
    """``rows`` are ``(prompt index, completion ids)``; ``full`` also builds the concatenated rows."""
    prompt_ids, prompt_lengths = _pad(prompts, pad_id)
    completion_ids, completion_lengths = _pad([completion for _, completion in rows], pad_id)
    row_prompt = torch.tensor([prompt for prompt, _ in rows], dtype=torch.long)
    batch = SequenceBatch(prompt_ids, prompt_lengths, completion_ids, completion_lengths, row_prompt)
    if full:
        batch.full_ids, batch.full_lengths = _pad([prompts[prompt] + completion for prompt, completion in rows],
                                                  pad_id)
    return batch
