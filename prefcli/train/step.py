"""One micro-step: from example indices to the loss and its metrics, for each data layout.

The layout follows from the loss's capability flags (see ``prefcli.train.data``); the loss itself is only ever
called through its public API. Per layout:

- pair: one grad forward over the B chosen + B rejected rows (prompts shared).
- candidates (MC-PO and kin: every candidate loss has ``draw``): a no-grad forward over every candidate (prompts
  shared) gives the policy log-probs the sampler needs; ``loss.draw`` picks K negatives per record; one grad
  forward then runs over chosen + the *distinct* drawn candidates only (a candidate drawn twice is scored once and
  gathered twice, which gives the same gradient as scoring it twice).
- unpaired: one grad forward over B desirable + B undesirable rows; for ``needs_kl_pairs`` a no-grad forward
  over 2B (or, with ``kl_pairs="half"``, B) mismatched (prompt, other completion) pairs gives KTO's reference
  point.

Metrics stay tensors (no host synchronisation per micro-step); the loop reduces them once per optimizer step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass

import torch

from prefcli.train.collate import collate
from prefcli.train.data import CANDIDATES, PAIR
from prefcli.train.reference import Reference, full_rows
from prefcli.train.tokenize import Example


@dataclass
class MicroResult:
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]  # 0-dim tensors, on the device
    tokens: int
    examples: int


def reward_metrics(chosen: torch.Tensor, rejected: torch.Tensor, unpaired: bool) -> dict[str, torch.Tensor]:
    """Mean rewards, margin and accuracy. Paired: accuracy = share of (chosen, rejected_k) with chosen ahead.
    Unpaired: share of all (desirable, undesirable) combinations with the desirable one ahead (an AUC)."""
    chosen, rejected = chosen.detach().float(), rejected.detach().float()
    if unpaired:
        accuracy = (chosen.unsqueeze(1) > rejected.unsqueeze(0)).float().mean()
        margin = chosen.mean() - rejected.mean()
    else:
        rejected_2d = rejected.reshape(chosen.shape[0], -1)
        accuracy = (chosen.unsqueeze(1) > rejected_2d).float().mean()
        margin = (chosen - rejected_2d.mean(dim=1)).mean()
    return {"rewards/chosen": chosen.mean(), "rewards/rejected": rejected.mean(), "rewards/margin": margin,
            "rewards/accuracy": accuracy}


@dataclass
class StepRunner:
    """Computes one micro-step's loss for a layout; reference log-probs come from a :class:`Reference`."""

    loss: object
    layout: str
    examples: list[Example]
    scorer: object
    pad_id: int
    device: object
    _: KW_ONLY
    reference: Reference | None = None
    autocast: Callable = contextlib.nullcontext

    @property
    def needs_reference(self) -> bool:
        return not getattr(self.loss, "reference_free", False)

    # ---- scoring helpers ------------------------------------------------------------------------------------
    def _score(self, prompts, rows, grad: bool) -> tuple[torch.Tensor, int]:
        batch = collate(prompts, rows, self.pad_id, full=full_rows(self.scorer))
        tokens = batch.token_count()  # counted on the host, before the copy to the device
        batch = batch.to(self.device)
        if grad:
            with self.autocast():
                return self.scorer(batch).float(), tokens
        module = getattr(self.scorer, "module", self.scorer)
        was_training = module.training
        module.eval()  # no dropout and prompt sharing even under gradient checkpointing
        try:
            with torch.no_grad(), self.autocast():
                return self.scorer(batch).float(), tokens
        finally:
            module.train(was_training)

    def _reference(self, indices: list[int], picks: list[list[int]]) -> torch.Tensor:
        return self.reference.logps(indices, picks)

    def _lengths(self, indices: list[int], pick: int) -> torch.Tensor:
        return torch.tensor([len(self.examples[index].completions[pick]) for index in indices],
                            dtype=torch.float32, device=self.device)

    # ---- layouts ----------------------------------------------------------------------------------------------
    def run(self, batch_indices, generator: torch.Generator | None) -> MicroResult:
        if self.layout == PAIR:
            return self._pair(batch_indices, generator)
        if self.layout == CANDIDATES:
            return self._candidates(batch_indices, generator)
        return self._unpaired(batch_indices, generator)

    def _on_device(self, metrics: dict | None) -> dict[str, torch.Tensor]:
        return {key: torch.as_tensor(value, device=self.device).detach() for key, value in (metrics or {}).items()}

    def _finish(self, out, tokens: int, examples: int, unpaired: bool, extra_metrics=None) -> MicroResult:
        metrics = reward_metrics(out.chosen_rewards, out.rejected_rewards, unpaired)
        metrics.update(self._on_device(out.metrics))
        metrics.update(extra_metrics or {})
        return MicroResult(out.loss, metrics, tokens, examples)

    def _pair(self, indices: list[int], generator) -> MicroResult:
        size = len(indices)
        prompts = [self.examples[index].prompt for index in indices]
        rows = [(i, self.examples[index].completions[0]) for i, index in enumerate(indices)]
        rows += [(i, self.examples[index].completions[1]) for i, index in enumerate(indices)]
        logps, tokens = self._score(prompts, rows, grad=True)
        reference_chosen = reference_rejected = None
        if self.needs_reference:
            reference = self._reference(indices, [[0, 1]] * size)
            reference_chosen, reference_rejected = reference[:, 0], reference[:, 1]
        out = self.loss(logps[:size], logps[size:], reference_chosen_logps=reference_chosen,
                        reference_rejected_logps=reference_rejected, chosen_lengths=self._lengths(indices, 0),
                        rejected_lengths=self._lengths(indices, 1), generator=generator)
        return self._finish(out, tokens, size, unpaired=False)

    def _candidates(self, indices: list[int], generator) -> MicroResult:
        size = len(indices)
        counts = [len(self.examples[index].completions) - 1 for index in indices]
        width = max(counts)
        mask = torch.tensor([[c < count for c in range(width)] for count in counts], device=self.device)
        prompts = [self.examples[index].prompt for index in indices]
        picks = [list(range(1, count + 1)) + [1] * (width - count) for count in counts]  # pad with candidate 1
        lengths = torch.tensor([[len(self.examples[index].completions[pick]) for pick in row]
                                for index, row in zip(indices, picks)], dtype=torch.float32, device=self.device)
        reference_candidates = reference_chosen = None
        if self.needs_reference:
            reference = self._reference(indices, [[0] + row for row in picks])
            reference_chosen, reference_candidates = reference[:, 0], reference[:, 1:]
        tokens = 0
        policy_candidates = None
        if getattr(self.loss, "draw_needs_policy", True):
            rows = [(i, self.examples[index].completions[pick]) for i, index in enumerate(indices)
                    for pick in range(1, counts[i] + 1)]
            flat, tokens = self._score(prompts, rows, grad=False)
            policy_candidates = torch.zeros(size, width, device=self.device)
            policy_candidates[mask] = flat
        drawn, draw_metrics = self.loss.draw(policy_candidates, reference_candidates, generator,
                                             candidate_mask=mask)
        drawn = drawn.to(self.device)
        drawn_rows = drawn.tolist()  # the draw decides which rows to score: one host copy per micro-step
        # one grad row per distinct drawn candidate; duplicates gather the same log-prob
        rows = [(i, self.examples[index].completions[0]) for i, index in enumerate(indices)]
        slot: dict[tuple[int, int], int] = {}
        for i, index in enumerate(indices):
            for candidate in drawn_rows[i]:
                if (i, candidate) not in slot:
                    slot[(i, candidate)] = len(rows)
                    rows.append((i, self.examples[index].completions[candidate + 1]))
        logps, grad_tokens = self._score(prompts, rows, grad=True)
        gather = torch.tensor([[slot[(i, c)] for c in drawn_rows[i]] for i in range(size)], device=self.device)
        negatives = logps[gather]
        out = self.loss(logps[:size], negatives, reference_chosen_logps=reference_chosen,
                        reference_rejected_logps=None if reference_candidates is None
                        else reference_candidates.gather(1, drawn),
                        chosen_lengths=self._lengths(indices, 0), rejected_lengths=lengths.gather(1, drawn),
                        generator=generator, negative_indices=drawn, candidate_mask=mask)
        extra = self._on_device(draw_metrics)
        extra["negatives/distinct"] = torch.tensor((len(rows) - size) / size, device=self.device)
        return self._finish(out, tokens + grad_tokens, size, unpaired=False, extra_metrics=extra)

    def _unpaired(self, halves, generator) -> MicroResult:
        desirable, undesirable = halves
        size = len(desirable)
        indices = list(desirable) + list(undesirable)
        prompts = [self.examples[index].prompt for index in indices]
        rows = [(i, self.examples[index].completions[0]) for i, index in enumerate(indices)]
        logps, tokens = self._score(prompts, rows, grad=True)
        reference_chosen = reference_rejected = None
        if self.needs_reference:
            reference = self._reference(indices, [[0]] * len(indices))[:, 0]
            reference_chosen, reference_rejected = reference[:size], reference[size:]
        extra = {}
        if getattr(self.loss, "needs_kl_pairs", False):
            # mismatched pairs (prompt of one example, completion of another record): every example's (TRL), or
            # one per desirable/undesirable pair, alternating the two halves (kl_pairs="half")
            if getattr(self.loss, "kl_pairs", "all") == "half":
                kl_indices = [desirable[i] if i % 2 == 0 else undesirable[i] for i in range(size)]
            else:
                kl_indices = indices
            kl_rows = [(i, self.examples[index].kl_completion) for i, index in enumerate(kl_indices)]
            policy_kl, kl_tokens = self._score([self.examples[index].prompt for index in kl_indices], kl_rows,
                                               grad=False)
            tokens += kl_tokens
            extra["policy_kl_logps"] = policy_kl
            if self.needs_reference:
                extra["reference_kl_logps"] = self._reference(kl_indices, [[1]] * len(kl_indices))[:, 0]
        lengths = self._lengths(indices, 0)
        out = self.loss(logps[:size], logps[size:], reference_chosen_logps=reference_chosen,
                        reference_rejected_logps=reference_rejected, chosen_lengths=lengths[:size],
                        rejected_lengths=lengths[size:], generator=generator, **extra)
        return self._finish(out, tokens, 2 * size, unpaired=True)
