"""Summed completion log-probs: the scorer (shared prompt or full rows, chunked or not) equals a brute-force
``log_softmax`` over the full logits of each sequence, in value and in gradient."""

from __future__ import annotations

import pytest
import torch

from prefcli.train.collate import collate
from prefcli.train.logps import SequenceScorer, selective_logps
from prefcli.train.tokenize import ChatEncoder


@pytest.fixture(scope="module")
def model_and_rows(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    encoder = ChatEncoder(tokenizer, 256, 128)
    first, (a, b) = encoder.encode([{"role": "user", "content": "Hello there"}],
                                   ["First answer.", "A second, longer answer with more words."])
    second, (c, d, e) = encoder.encode(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A much longer prompt, with words"},
         {"role": "assistant", "content": "Sure."}, {"role": "user", "content": "Go on"}],
        ["x", "Yes and no", "Another candidate answer."])
    prompts = [first, second]
    rows = [(0, a), (0, b), (1, c), (1, d), (1, e), (0, c)]
    return model, tokenizer, prompts, rows


def brute_force_logps(model, prompts, rows) -> torch.Tensor:
    """One sequence at a time, full logits, log_softmax, sum over the completion tokens."""
    totals = []
    for prompt_index, completion in rows:
        prompt = prompts[prompt_index]
        ids = torch.tensor([prompt + completion])
        logprobs = model(input_ids=ids).logits[0].float().log_softmax(-1)
        totals.append(sum(logprobs[len(prompt) - 1 + t, token] for t, token in enumerate(completion)))
    return torch.stack(totals)


def grads(model) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("share_prompt, chunk_rows", [(True, None), (False, None), (True, 5), (False, 3)])
def test_scorer_matches_brute_force_values_and_gradients(model_and_rows, share_prompt, chunk_rows):
    model, tokenizer, prompts, rows = model_and_rows
    model.zero_grad()
    expected = brute_force_logps(model, prompts, rows)
    expected.sum().backward()
    expected_grads = grads(model)

    model.zero_grad()
    scorer = SequenceScorer(model, share_prompt=share_prompt, chunk_rows=chunk_rows)
    batch = collate(prompts, rows, tokenizer.pad_token_id, full=not share_prompt)
    got = scorer(batch)
    got.sum().backward()
    assert got.dtype == torch.float32 and got.shape == (len(rows),)
    torch.testing.assert_close(got, expected.detach(), rtol=0, atol=1e-4)
    for mine, theirs in zip(grads(model), expected_grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-3, atol=1e-5)


def test_selective_logps_equals_log_softmax_gather():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(23, 8, requires_grad=True)
    targets = torch.randint(0, 50, (23,))
    expected = head(hidden).log_softmax(-1).gather(1, targets[:, None]).squeeze(1)
    for chunk in (1, 4, 23, 100):
        torch.testing.assert_close(selective_logps(head, hidden, targets, chunk), expected)
    softcapped = selective_logps(head, hidden, targets, 4, softcap=2.0)
    manual = (2.0 * torch.tanh(head(hidden) / 2.0)).log_softmax(-1).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(softcapped, manual)


def test_length_groups_minimise_padding_plus_call_overhead():
    from prefcli.train.logps import length_groups

    lengths = [100, 10, 98, 12, 11, 97]
    # cheap calls: two groups (the long rows, the short rows) beat padding everything to 100
    groups = length_groups(lengths, overhead_tokens=8)
    assert sorted(map(sorted, groups)) == [[0, 2, 5], [1, 3, 4]]
    # expensive calls: one group
    assert [sorted(g) for g in length_groups(lengths, overhead_tokens=10_000)] == [[0, 1, 2, 3, 4, 5]]
    # every row exactly once, whatever the overhead
    for overhead in (0, 1, 50, 300):
        assert sorted(row for group in length_groups(lengths, overhead) for row in group) == list(range(6))


@pytest.mark.parametrize("name, hf_name", [("cosine", "cosine"), ("linear", "linear"),
                                           ("constant", "constant_with_warmup")])
@pytest.mark.parametrize("warmup, total", [(0, 7), (3, 10), (10, 10), (1, 1)])
def test_schedules_equal_transformers_get_scheduler(name, hf_name, warmup, total):
    from transformers.optimization import get_scheduler

    from prefcli.train.schedule import lr_scheduler

    def learning_rates(make):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
        scheduler = make(optimizer)
        rates = []
        for _ in range(total + 2):
            rates.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        return rates

    ours = learning_rates(lambda opt: lr_scheduler(opt, name, warmup, total))
    theirs = learning_rates(lambda opt: get_scheduler(hf_name, opt, num_warmup_steps=warmup,
                                                      num_training_steps=total))
    assert ours == theirs
