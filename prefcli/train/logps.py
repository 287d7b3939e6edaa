"""Summed completion log-probs, computed where they are needed and nowhere else.

``SequenceScorer`` wraps a causal LM (plain or peft) and returns ``log p(completion | prompt)`` summed over the
completion's tokens for every row of a :class:`~prefcli.train.collate.SequenceBatch`:

- the decoder runs once per step over all rows (chosen + rejected + drawn negatives); rows are padded only to
  their group's longest, where groups of similar length are chosen to minimise padded tokens plus a per-call
  overhead (on GPUs the overhead is set high, so it is usually one group: the batch's longest row);
- with ``share_prompt`` each prompt is encoded once and every completion continues from the prompt's KV cache,
  so a prompt with C completions costs one prompt pass, not C (gradients flow through the cache);
- hidden states are gathered at completion positions BEFORE the LM head, and the log-softmax runs on those rows
  in chunks (each chunk re-computed in the backward pass when there are several), so no
  ``[tokens × vocab]`` float32 tensor is ever held.

Being an ``nn.Module`` whose ``forward`` does all of this, it is what accelerate wraps (DDP / FSDP / DeepSpeed),
so every launch mode sees one forward per step.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from prefcli.train.collate import SequenceBatch

LOGITS_BUDGET = 1 << 25  # float32 logits per chunk of the selective log-softmax (128 MiB)
#: What one more decoder call costs, in padded tokens: small on CPU (compute-bound), large on GPUs (latency-bound)
GROUP_OVERHEAD_TOKENS = {"cpu": 64}
DEFAULT_GROUP_OVERHEAD_TOKENS = 8192


def length_groups(lengths: list[int], overhead_tokens: int) -> list[list[int]]:
    """Split rows into groups of similar length, minimising padded tokens + ``overhead_tokens`` per group.

    Padding every row to the batch's longest wastes compute on pad tokens; one decoder call per row wastes
    per-call overhead. Rows sorted by length, the best contiguous split is a small dynamic programme.
    """
    order = sorted(range(len(lengths)), key=lambda row: -lengths[row])
    count = len(order)
    best = [0.0] + [float("inf")] * count  # best[j]: cost of the first j rows (longest first)
    cut = [0] * (count + 1)
    for end in range(1, count + 1):
        for start in range(end):
            cost = best[start] + (end - start) * lengths[order[start]] + overhead_tokens
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], count
    while end > 0:
        groups.append(order[cut[end]:end])
        end = cut[end]
    return groups[::-1]


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

    def __init__(self, model: nn.Module, share_prompt: bool = True, chunk_rows: int | None = None,
                 group_by_length: bool = True):
        super().__init__()
        self.model = model
        self.share_prompt = share_prompt
        self.group_by_length = group_by_length
        base = base_model(model)
        config = base.config
        # the config's vocab size: under ZeRO-3 the head's weight is a partitioned placeholder
        vocab = getattr(config.get_text_config(), "vocab_size", None) or base.get_output_embeddings().weight.shape[0]
        self.chunk_rows = chunk_rows or max(1, LOGITS_BUDGET // vocab)
        # FSDP's transformer auto-wrap policy looks for the block class names on the module it wraps
        self._no_split_modules = getattr(base, "_no_split_modules", None)
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

    def _groups(self, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Row groups for separate decoder calls (one group when grouping is off)."""
        if not self.group_by_length or lengths.numel() <= 1:
            return [torch.arange(lengths.numel(), device=lengths.device)]
        overhead = GROUP_OVERHEAD_TOKENS.get(lengths.device.type, DEFAULT_GROUP_OVERHEAD_TOKENS)
        return [torch.tensor(group, device=lengths.device) for group in length_groups(lengths.tolist(), overhead)]

    def _shared_prompt_hidden(self, batch: SequenceBatch):
        from transformers import DynamicCache

        decoder = self._decoder()
        prompt_mask = _length_mask(batch.prompt_lengths, batch.prompt_ids.shape[1])
        # rows are right-padded: under the causal mask no real token sees a pad, so the prompt pass needs no
        # padding mask (the fast causal attention path); pads' keys are masked in the completion passes below
        prompt_out = decoder(input_ids=batch.prompt_ids, use_cache=True)
        prompts = torch.arange(batch.prompt_ids.shape[0], device=batch.prompt_ids.device)
        last_prompt_hidden = prompt_out.last_hidden_state[prompts, batch.prompt_lengths - 1]
        prompt_cache = [(layer.keys, layer.values) for layer in _output_cache(prompt_out).layers]
        config = base_model(self.model).config

        hidden_parts, target_parts, row_parts = [], [], []
        for rows in self._groups(batch.completion_lengths):
            lengths = batch.completion_lengths[rows]
            width = int(lengths.max())
            completion_ids = batch.completion_ids[rows, :width]
            row_prompt = batch.row_prompt[rows]
            cache = DynamicCache(ddp_cache_data=[(keys[row_prompt], values[row_prompt])
                                                 for keys, values in prompt_cache], config=config)
            completion_mask = _length_mask(lengths, width)
            attention_mask = torch.cat([prompt_mask[row_prompt], completion_mask], dim=1)
            offsets = torch.arange(width, device=completion_ids.device)
            position_ids = batch.prompt_lengths[row_prompt].unsqueeze(1) + offsets.unsqueeze(0)
            out = decoder(input_ids=completion_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=True, **{_cache_keyword(type(decoder)): cache})
            # token t of a completion is predicted by the hidden state before it: the prompt's last one for t = 0
            hidden = torch.cat([last_prompt_hidden[row_prompt].unsqueeze(1), out.last_hidden_state[:, :-1]], dim=1)
            selected = completion_mask.bool()
            hidden_parts.append(hidden[selected])
            target_parts.append(completion_ids[selected])
            row_parts.append(rows.unsqueeze(1).expand(-1, width)[selected])
        return torch.cat(hidden_parts), torch.cat(target_parts), torch.cat(row_parts)

    def _full_row_hidden(self, batch: SequenceBatch):
        if batch.full_ids is None:
            raise ValueError("this batch was collated without full rows (collate(..., full=True))")
        decoder = self._decoder()
        hidden_parts, target_parts, row_parts = [], [], []
        for rows in self._groups(batch.full_lengths):
            lengths = batch.full_lengths[rows]
            width = int(lengths.max())
            ids = batch.full_ids[rows, :width]
            attention_mask = _length_mask(lengths, width)
            out = decoder(input_ids=ids, use_cache=False)  # right-padded rows: causal attention suffices
            positions = torch.arange(width, device=ids.device).unsqueeze(0)
            starts = batch.prompt_lengths[batch.row_prompt[rows]].unsqueeze(1)
            target_mask = (positions >= starts) & attention_mask.bool()
            hidden_mask = torch.zeros_like(target_mask)
            hidden_mask[:, :-1] = target_mask[:, 1:]
            hidden_parts.append(out.last_hidden_state[hidden_mask])
            target_parts.append(ids[target_mask])
            row_parts.append(rows.unsqueeze(1).expand(-1, width)[target_mask])
        return torch.cat(hidden_parts), torch.cat(target_parts), torch.cat(row_parts)


@functools.cache
def _cache_keyword(decoder_class) -> str:
    """The decoder's KV-cache argument: ``cache`` since transformers 5.24, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(decoder_class.forward).parameters else "past_key_values"


def _output_cache(output):
    return output.cache if "cache" in output else output.past_key_values


def _length_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    return (torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)).long()
