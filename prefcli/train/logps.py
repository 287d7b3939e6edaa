"""Summed completion log-probs, computed where they are needed and nowhere else.

``SequenceScorer`` wraps a causal LM (plain or peft) and returns ``log p(completion | prompt)`` summed over the
completion's tokens for every row of a :class:`~prefcli.train.collate.SequenceBatch`:

- the decoder runs once per step over all rows (chosen + rejected + drawn negatives), padded only to the batch's
  longest row;
- with ``share_prompt`` each prompt is encoded once and every completion continues from the prompt's KV cache,
  so a prompt with C completions costs one prompt pass, not C (gradients flow through the cache);
- hidden states are gathered at completion positions BEFORE the LM head, and the log-softmax runs on those rows
  in chunks (each chunk re-computed in the backward pass when there are several), so no
  ``[tokens × vocab]`` float32 tensor is ever held.

Being an ``nn.Module`` whose ``forward`` does all of this, it is what accelerate wraps (DDP / FSDP / DeepSpeed),
so every launch mode sees one forward per step.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from prefcli.train.collate import SequenceBatch

LOGITS_BUDGET = 1 << 25  # float32 logits per chunk of the selective log-softmax (128 MiB)


def base_model(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _token_logps(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, logit_scale: float | None,
                 softcap: float | None) -> torch.Tensor:
    logits = head(hidden).float()
    if logit_scale is not None:
        logits = logits * logit_scale
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def selective_logps(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunk_rows: int,
                    logit_scale: float | None = None, softcap: float | None = None) -> torch.Tensor:
    """``log softmax(head(hidden))[targets]`` for ``hidden`` [M, H], chunk by chunk; returns float32 [M]."""
    if hidden.shape[0] <= chunk_rows:
        return _token_logps(head, hidden, targets, logit_scale, softcap)
    recompute = torch.is_grad_enabled()
    parts = []
    for start in range(0, hidden.shape[0], chunk_rows):
        chunk, chunk_targets = hidden[start:start + chunk_rows], targets[start:start + chunk_rows]
        if recompute:
            parts.append(checkpoint(_token_logps, head, chunk, chunk_targets, logit_scale, softcap,
                                    use_reentrant=False))
        else:
            parts.append(_token_logps(head, chunk, chunk_targets, logit_scale, softcap))
    return torch.cat(parts)


class SequenceScorer(nn.Module):
    """Summed completion log-probs of a causal LM; see the module docstring."""

    def __init__(self, model: nn.Module, share_prompt: bool = True, chunk_rows: int | None = None):
        super().__init__()
        self.model = model
        self.share_prompt = share_prompt
        base = base_model(model)
        vocab = base.get_output_embeddings().weight.shape[0]
        self.chunk_rows = chunk_rows or max(1, LOGITS_BUDGET // vocab)
        config = base.config
        self.logit_scale = getattr(config, "logit_scale", None)
        self.softcap = getattr(config, "final_logit_softcapping", None)

    def _decoder(self):
        return base_model(self.model).get_decoder()

    def _head(self):
        return base_model(self.model).get_output_embeddings()

    def uses_shared_prompt(self) -> bool:
        """Prompt sharing needs the KV cache, which gradient checkpointing turns off while training."""
        base = base_model(self.model)
        flag = "is_activation_checkpointing" if hasattr(type(base), "is_activation_checkpointing") \
            else "is_gradient_checkpointing"
        checkpointing = bool(getattr(base, flag, False)) and self.training
        return self.share_prompt and not checkpointing

    def forward(self, batch: SequenceBatch) -> torch.Tensor:
        """Summed log-probs [N] (float32) of each row's completion given its prompt."""
        if self.uses_shared_prompt():
            hidden, targets, rows = self._shared_prompt_hidden(batch)
        else:
            hidden, targets, rows = self._full_row_hidden(batch)
        token_logps = selective_logps(self._head(), hidden, targets, self.chunk_rows, self.logit_scale,
                                      self.softcap)
        summed = torch.zeros(batch.num_rows, dtype=token_logps.dtype, device=token_logps.device)
        return summed.index_add(0, rows, token_logps)

    def _shared_prompt_hidden(self, batch: SequenceBatch):
        decoder = self._decoder()
        prompt_mask = _length_mask(batch.prompt_lengths, batch.prompt_ids.shape[1])
        prompt_out = decoder(input_ids=batch.prompt_ids, attention_mask=prompt_mask, use_cache=True)
        prompts = torch.arange(batch.prompt_ids.shape[0], device=batch.prompt_ids.device)
        last_prompt_hidden = prompt_out.last_hidden_state[prompts, batch.prompt_lengths - 1]
        cache = prompt_out.past_key_values
        cache.reorder_cache(batch.row_prompt)

        width = batch.completion_ids.shape[1]
        completion_mask = _length_mask(batch.completion_lengths, width)
        attention_mask = torch.cat([prompt_mask[batch.row_prompt], completion_mask], dim=1)
        offsets = torch.arange(width, device=batch.completion_ids.device)
        position_ids = batch.prompt_lengths[batch.row_prompt].unsqueeze(1) + offsets.unsqueeze(0)
        completion_out = decoder(input_ids=batch.completion_ids, attention_mask=attention_mask,
                                 position_ids=position_ids, past_key_values=cache, use_cache=True)
        # token t of a completion is predicted by the hidden state before it: the prompt's last one for t = 0
        hidden = torch.cat([last_prompt_hidden[batch.row_prompt].unsqueeze(1),
                            completion_out.last_hidden_state[:, :-1]], dim=1)
        rows = torch.arange(batch.num_rows, device=hidden.device).unsqueeze(1).expand(-1, width)
        selected = completion_mask.bool()
        return hidden[selected], batch.completion_ids[selected], rows[selected]

    def _full_row_hidden(self, batch: SequenceBatch):
        if batch.full_ids is None:
            raise ValueError("this batch was collated without full rows (collate(..., full=True))")
        width = batch.full_ids.shape[1]
        attention_mask = _length_mask(batch.full_lengths, width)
        out = self._decoder()(input_ids=batch.full_ids, attention_mask=attention_mask, use_cache=False)
        positions = torch.arange(width, device=batch.full_ids.device).unsqueeze(0)
        starts = batch.prompt_lengths[batch.row_prompt].unsqueeze(1)
        target_mask = (positions >= starts) & attention_mask.bool()
        hidden_mask = torch.zeros_like(target_mask)
        hidden_mask[:, :-1] = target_mask[:, 1:]
        rows = torch.arange(batch.num_rows, device=target_mask.device).unsqueeze(1).expand(-1, width)
        return out.last_hidden_state[hidden_mask], batch.full_ids[target_mask], rows[target_mask]


def _length_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    return (torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)).long()
