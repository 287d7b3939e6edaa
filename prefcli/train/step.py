"""One micro-step: from example indices to the loss and its metrics, for each data layout.

The layout follows from the loss's capability flags (see ``prefcli.train.data``); the loss itself is only ever
called through its public API. Per layout:

- pair: one grad forward over the B chosen + B rejected rows (prompts shared).
- candidates, loss with ``draw`` (MC-PO and kin): a no-grad forward over every candidate (prompts shared) gives
  the policy log-probs the sampler needs; ``loss.draw`` picks K negatives per record; one grad forward then runs
  over chosen + the *distinct* drawn candidates only (a candidate drawn twice is scored once and gathered twice,
  which gives the same gradient as scoring it twice).
- candidates, loss without ``draw``: one grad forward over chosen + every candidate.
- unpaired: one grad forward over B desirable + B undesirable rows; for ``needs_kl_pairs`` a no-grad forward
  over B mismatched (prompt, other completion) pairs gives KTO's reference point.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from prefcli.train.collate import collate
from prefcli.train.data import CANDIDATES, PAIR
from prefcli.train.reference import ReferenceLogps
from prefcli.train.tokenize import Example


@dataclass
class MicroResult:
    loss: torch.Tensor
    metrics: dict[str, float]
    tokens: int
    examples: int


def reward_metrics(chosen: torch.Tensor, rejected: torch.Tensor, unpaired: bool) -> dict[str, float]:
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
    return {"rewards/chosen": float(chosen.mean()), "rewards/rejected": float(rejected.mean()),
            "rewards/margin": float(margin), "rewards/accuracy": float(accuracy)}


class StepRunner:
    """Computes one micro-step's loss for a layout; reference log-probs come from the cache or a scorer."""

    def __init__(self, loss, layout: str, examples: list[Example], scorer, pad_id: int, device, *,
                 reference: ReferenceLogps | None = None, reference_scorer=None, reference_context=None,
                 autocast=contextlib.nullcontext):
        self.loss = loss
        self.layout = layout
        self.examples = examples
        self.scorer = scorer
        self.pad_id = pad_id
        self.device = device
        self.reference = reference
        self.reference_scorer = reference_scorer
        self.reference_context = reference_context or contextlib.nullcontext
        self.autocast = autocast
        self.needs_reference = not getattr(loss, "reference_free", False)

    # ---- scoring helpers ------------------------------------------------------------------------------------
    def _full_rows(self, scorer) -> bool:
        module = getattr(scorer, "module", scorer)
        return not module.uses_shared_prompt()

    def _score(self, prompts, rows, grad: bool) -> tuple[torch.Tensor, int]:
        batch = collate(prompts, rows, self.pad_id, full=self._full_rows(self.scorer)).to(self.device)
        if grad:
            with self.autocast():
                return self.scorer(batch).float(), batch.token_count()
        module = getattr(self.scorer, "module", self.scorer)
        was_training = module.training
        module.eval()  # no dropout and prompt sharing even under gradient checkpointing
        try:
            with torch.no_grad(), self.autocast():
                return self.scorer(batch).float(), batch.token_count()
        finally:
            module.train(was_training)

    def _reference(self, indices: list[int], picks: list[list[int]], prompts=None, rows=None) -> torch.Tensor:
        """Reference log-probs of completions ``picks[i]`` of example ``indices[i]`` (a [len, k] tensor)."""
        if self.reference is not None:
            values = [[float(self.reference.of(index)[pick]) for pick in chosen]
                      for index, chosen in zip(indices, picks)]
            return torch.tensor(values, dtype=torch.float32, device=self.device)
        batch_rows = [(position, self.examples[index].scored()[pick])
                      for position, (index, chosen) in enumerate(zip(indices, picks)) for pick in chosen]
        batch = collate([self.examples[index].prompt for index in indices], batch_rows, self.pad_id,
                        full=self._full_rows(self.reference_scorer)).to(self.device)
        with torch.no_grad(), self.reference_context(), self.autocast():
            logps = self.reference_scorer(batch).float()
        return logps.view(len(indices), -1)

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

    def _finish(self, out, tokens: int, examples: int, unpaired: bool, extra_metrics=None) -> MicroResult:
        metrics = reward_metrics(out.chosen_rewards, out.rejected_rewards, unpaired)
        metrics.update({key: float(value) for key, value in (out.metrics or {}).items()})
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
        if not hasattr(self.loss, "draw"):
            rows = [(i, self.examples[index].completions[pick]) for i, index in enumerate(indices)
                    for pick in [0] + picks[i]]
            logps, tokens = self._score(prompts, rows, grad=True)
            logps = logps.view(size, width + 1)
            out = self.loss(logps[:, 0], logps[:, 1:], reference_chosen_logps=reference_chosen,
                            reference_rejected_logps=reference_candidates,
                            chosen_lengths=self._lengths(indices, 0), rejected_lengths=lengths,
                            generator=generator, candidate_mask=mask)
            return self._finish(out, tokens, size, unpaired=False)

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
        # one grad row per distinct drawn candidate; duplicates gather the same log-prob
        rows = [(i, self.examples[index].completions[0]) for i, index in enumerate(indices)]
        slot: dict[tuple[int, int], int] = {}
        for i, index in enumerate(indices):
            for candidate in drawn[i].tolist():
                if (i, candidate) not in slot:
                    slot[(i, candidate)] = len(rows)
                    rows.append((i, self.examples[index].completions[candidate + 1]))
        logps, grad_tokens = self._score(prompts, rows, grad=True)
        gather = torch.tensor([[slot[(i, c)] for c in drawn[i].tolist()] for i in range(size)], device=self.device)
        negatives = logps[gather]
        out = self.loss(logps[:size], negatives, reference_chosen_logps=reference_chosen,
                        reference_rejected_logps=None if reference_candidates is None
                        else reference_candidates.gather(1, drawn),
                        chosen_lengths=self._lengths(indices, 0), rejected_lengths=lengths.gather(1, drawn),
                        generator=generator, negative_indices=drawn, candidate_mask=mask)
        extra = {key: float(value) for key, value in (draw_metrics or {}).items()}
        extra["negatives/distinct"] = (len(rows) - size) / size
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
            # mismatched pairs (prompt of one example, completion of another), alternating the two halves
            kl_indices = [desirable[i] if i % 2 == 0 else undesirable[i] for i in range(size)]
            kl_rows = [(i, self.examples[index].kl_completion) for i, index in enumerate(kl_indices)]
            policy_kl, kl_tokens = self._score([self.examples[index].prompt for index in kl_indices], kl_rows,
                                               grad=False)
            tokens += kl_tokens
            extra["policy_kl_logps"] = policy_kl
            if self.needs_reference:
                extra["reference_kl_logps"] = self._reference(kl_indices, [[1]] * size)[:, 0]
        lengths = self._lengths(indices, 0)
        out = self.loss(logps[:size], logps[size:], reference_chosen_logps=reference_chosen,
                        reference_rejected_logps=reference_rejected, chosen_lengths=lengths[:size],
                        rejected_lengths=lengths[size:], generator=generator, **extra)
        return self._finish(out, tokens, 2 * size, unpaired=True)
