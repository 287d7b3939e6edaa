"""Training runs end to end on the tiny model: the numbers in metrics.jsonl are the formulas applied to the
right batch, every record kind reaches its losses, and the outputs load."""

from __future__ import annotations

import math

import pytest
import torch
from train_helpers import write_pairs, write_unpaired

from prefcli.train import TrainConfig, train
from prefcli.train.metrics import read_metrics


def tiny(model, data, output, **changes) -> TrainConfig:
    settings = {"model": str(model), "data": str(data), "output": str(output), "batch_size": 2, "max_steps": 3,
                "lr": 1e-3, "warmup": 0, "scheduler": "constant", "max_length": 96, "max_prompt_length": 48,
                "seed": 7, "ref_cache_dir": str(output) + "-cache"}
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def shifted_reference(tiny_model, tmp_path_factory):
    """A reference that differs from the policy (same tokenizer): the tiny model with perturbed weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("shifted-reference")
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(path)
    return path


def sequence_logps(model, prompt, completion) -> float:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logprobs = model(input_ids=ids).logits[0].log_softmax(-1)
    return float(sum(logprobs[len(prompt) - 1 + t, token] for t, token in enumerate(completion)))


def test_first_step_dpo_loss_is_the_formula_on_the_planned_batch(tiny_model, shifted_reference, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefcli.losses import get_loss
    from prefcli.train.data import build_examples, load_records
    from prefcli.train.sampler import BatchPlan
    from prefcli.train.tokenize import ChatEncoder

    data = write_pairs(tmp_path / "pairs.jsonl", rows=8)
    config = tiny(tiny_model, data, tmp_path / "run", ref_model=str(shifted_reference), beta=0.5, batch_size=4)
    summary = train(config)
    first = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]

    # independently: the examples the plan puts in step 1, scored one sequence at a time
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    examples, _ = build_examples(load_records(data, get_loss("dpo"), "dpo"), ChatEncoder(tokenizer, 96, 48))
    batch = BatchPlan([None] * len(examples), 4, 1, 0, seed=7, unpaired=False).local_batch(0)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(shifted_reference, dtype=torch.float32)
    losses, chosen_rewards, rejected_rewards = [], [], []
    for index in batch:
        prompt, (chosen, rejected) = examples[index].prompt, examples[index].completions
        rho_chosen = sequence_logps(policy, prompt, chosen) - sequence_logps(reference, prompt, chosen)
        rho_rejected = sequence_logps(policy, prompt, rejected) - sequence_logps(reference, prompt, rejected)
        losses.append(-math.log(1 / (1 + math.exp(-0.5 * (rho_chosen - rho_rejected)))))
        chosen_rewards.append(0.5 * rho_chosen)
        rejected_rewards.append(0.5 * rho_rejected)
    assert first["step"] == 1
    assert first["loss"] == pytest.approx(sum(losses) / 4, abs=1e-4)
    assert first["rewards/chosen"] == pytest.approx(sum(chosen_rewards) / 4, abs=1e-4)
    assert first["rewards/rejected"] == pytest.approx(sum(rejected_rewards) / 4, abs=1e-4)
    assert first["rewards/margin"] == pytest.approx((sum(chosen_rewards) - sum(rejected_rewards)) / 4, abs=1e-4)
    accuracy = sum(c > r for c, r in zip(chosen_rewards, rejected_rewards)) / 4
    assert first["rewards/accuracy"] == pytest.approx(accuracy)
    for key in ("lr", "grad_norm", "tokens_per_s", "examples_per_s", "epoch", "step_seconds"):
        assert key in first
    assert summary["steps"] == 3 and summary["reference"].startswith("precomputed")

    # the same run with the reference model in memory (no precompute) logs the same losses
    again = tiny(tiny_model, data, tmp_path / "run-live", ref_model=str(shifted_reference), beta=0.5, batch_size=4,
                 precompute_ref=False)
    train(again)
    live = [line["loss"] for line in read_metrics(tmp_path / "run-live" / "metrics.jsonl")]
    cached = [line["loss"] for line in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert live == pytest.approx(cached, abs=1e-5)

    # outputs: a loadable model that moved, its tokenizer, the resolved config
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "run")
    assert not torch.equal(trained.lm_head.weight, policy.lm_head.weight)
    assert AutoTokenizer.from_pretrained(tmp_path / "run").chat_template == tokenizer.chat_template
    from prefcli.train.config import load_config

    assert load_config(tmp_path / "run" / "config.yaml") == config


def test_reference_cache_is_reused(tiny_model, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", rows=8)
    first = train(tiny(tiny_model, data, tmp_path / "a", max_steps=1, ref_cache_dir=str(tmp_path / "cache")))
    second = train(tiny(tiny_model, data, tmp_path / "b", max_steps=1, ref_cache_dir=str(tmp_path / "cache"),
                        loss="ipo"))
    assert not first["reference_cache_hit"] and second["reference_cache_hit"]
    assert first["reference_cache"] == second["reference_cache"]
    third = train(tiny(tiny_model, data, tmp_path / "c", max_steps=1, ref_cache_dir=str(tmp_path / "cache"),
                       max_length=80))
    assert not third["reference_cache_hit"]  # another truncation, another key


def test_reference_rows_are_scored_only_when_reached_and_added_to_the_cache(tiny_model, tmp_path):
    """A 2-step run scores the 4 examples its steps use; a 4-step rerun loads those and scores 4 more; the full
    precompute (ref_rows: all) scores only the 8 no run reached; every run's losses match a run that scored all."""
    from prefcli.train.sampler import BatchPlan

    data = write_pairs(tmp_path / "pairs.jsonl", rows=16)
    cache = str(tmp_path / "cache")
    short = train(tiny(tiny_model, data, tmp_path / "a", max_steps=2, ref_cache_dir=cache))
    plan = BatchPlan([None] * 16, 2, 1, 0, 7, unpaired=False)
    assert short["reference_scored"] == len(plan.examples_reached(0, 2)) == 4 and short["reference_loaded"] == 0
    longer = train(tiny(tiny_model, data, tmp_path / "b", max_steps=4, ref_cache_dir=cache))
    assert (longer["reference_loaded"], longer["reference_scored"]) == (4, 4)
    everything = train(tiny(tiny_model, data, tmp_path / "c", max_steps=4, ref_cache_dir=cache, ref_rows="all"))
    assert (everything["reference_loaded"], everything["reference_scored"]) == (8, 8)
    assert everything["reference"].startswith("precomputed 8 of 16 examples, 8 from cache")
    fresh = train(tiny(tiny_model, data, tmp_path / "d", max_steps=4, ref_cache_dir=str(tmp_path / "fresh"),
                       ref_rows="all"))
    assert fresh["reference_scored"] == 16
    assert [h["loss"] for h in longer["history"]] == pytest.approx([h["loss"] for h in fresh["history"]], abs=1e-6)


def test_a_damaged_or_half_written_cache_shard_is_never_trusted(tiny_model, tmp_path):
    from pathlib import Path

    data = write_pairs(tmp_path / "pairs.jsonl", rows=8)
    first = train(tiny(tiny_model, data, tmp_path / "a", max_steps=2, ref_cache_dir=str(tmp_path / "cache")))
    directory = Path(first["reference_cache"])
    (shard,) = directory.glob("part-*.pt")
    shard.write_bytes(shard.read_bytes()[:40])  # cut short, as a kill mid-write without the rename would
    (directory / ".part-123.tmp").write_bytes(b"half")  # what a kill during torch.save leaves: never read
    again = train(tiny(tiny_model, data, tmp_path / "b", max_steps=2, ref_cache_dir=str(tmp_path / "cache")))
    assert again["reference_loaded"] == 0 and again["reference_scored"] == first["reference_scored"]
    assert [h["loss"] for h in again["history"]] == [h["loss"] for h in first["history"]]


def test_gradient_accumulation_matches_the_large_batch(tiny_model, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", rows=8)
    big = train(tiny(tiny_model, data, tmp_path / "big", batch_size=4, grad_accum=1, max_steps=2, max_grad_norm=0))
    small = train(tiny(tiny_model, data, tmp_path / "acc", batch_size=2, grad_accum=2, max_steps=2, max_grad_norm=0))
    assert [h["loss"] for h in big["history"]] == pytest.approx([h["loss"] for h in small["history"]], abs=1e-6)
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "big" / "model.safetensors"), load_file(tmp_path / "acc" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=5e-5)  # Adam amplifies rounding (lr 1e-3)


def test_mcpo_with_one_candidate_and_one_negative_is_dpo(tiny_model, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", rows=8, candidates=1)
    dpo = train(tiny(tiny_model, data, tmp_path / "dpo", loss="dpo", beta=0.3))
    mcpo = train(tiny(tiny_model, data, tmp_path / "mcpo", loss="mcpo", beta=0.3, negatives=1))
    assert mcpo["layout"] == "candidates"
    assert [h["loss"] for h in mcpo["history"]] == pytest.approx([h["loss"] for h in dpo["history"]], abs=1e-6)


def test_fast_candidate_path_equals_the_library_path(tiny_model, tmp_path):
    """Draw once over every candidate's logps, then a grad pass over chosen + distinct draws == the loss's own
    library path given all candidates (same generator seed, so the same draws)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefcli.losses import get_loss
    from prefcli.train.data import build_examples, load_records
    from prefcli.train.logps import SequenceScorer
    from prefcli.train.reference import Reference, score_examples
    from prefcli.train.step import StepRunner
    from prefcli.train.tokenize import ChatEncoder

    data = write_pairs(tmp_path / "pairs.jsonl", rows=4, candidates=[3, 5, 4, 3], with_rejected=False)
    loss = get_loss("mcpo", beta=2.0, negatives=3)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    examples, _ = build_examples(load_records(data, loss, "mcpo"), ChatEncoder(tokenizer, 96, 48))
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():  # make the reference differ, so the kernel weights are not uniform
        reference_model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        for parameter in reference_model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    scored = score_examples(SequenceScorer(reference_model), examples, list(range(4)), 2, tokenizer.pad_token_id, "cpu")
    table = {index: torch.tensor(values) for index, values in scored.items()}
    reference = Reference("cached", examples, tokenizer.pad_token_id, "cpu", table=table)
    scorer = SequenceScorer(model)
    runner = StepRunner(loss, "candidates", examples, scorer, tokenizer.pad_token_id, "cpu", reference=reference)
    fast = runner.run([0, 1, 2, 3], torch.Generator().manual_seed(5))

    width = 5
    policy_all, reference_all, mask = torch.zeros(4, width), torch.zeros(4, width), torch.zeros(4, width, dtype=bool)
    chosen, reference_chosen = [], []
    for i, example in enumerate(examples):
        chosen.append(sequence_logps(model, example.prompt, example.completions[0]))
        reference_chosen.append(float(table[i][0]))
        for c, completion in enumerate(example.completions[1:]):
            policy_all[i, c] = sequence_logps(model, example.prompt, completion)
            reference_all[i, c] = float(table[i][c + 1])
            mask[i, c] = True
    library = loss(torch.tensor(chosen), policy_all, reference_chosen_logps=torch.tensor(reference_chosen),
                   reference_rejected_logps=reference_all, generator=torch.Generator().manual_seed(5),
                   candidate_mask=mask)
    assert float(fast.loss.detach()) == pytest.approx(float(library.loss), abs=1e-4)
    fast.loss.backward()  # the gradient reaches the policy through the chosen and drawn rows
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("loss, kind", [("kto", "unpaired"), ("aot-unpaired", "unpaired"), ("kto", "pairs"),
                                        ("rnce", "ragged candidates"), ("aot", "pairs"), ("simpo", "pairs")])
def test_each_record_kind_reaches_its_losses(tiny_model, tmp_path, loss, kind):
    if kind == "unpaired":
        data = write_unpaired(tmp_path / "data.jsonl", rows=12, desirable_every=3)  # 4 desirable, 8 undesirable
    elif kind == "ragged candidates":
        data = write_pairs(tmp_path / "data.jsonl", rows=8, candidates=[2, 5, 3, 2, 4, 2, 2, 3], with_rejected=False)
    else:
        data = write_pairs(tmp_path / "data.jsonl", rows=8)
    extra = {"negatives": 2} if loss == "rnce" else {}
    summary = train(tiny(tiny_model, data, tmp_path / "run", loss=loss, **extra))
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert all(math.isfinite(line["loss"]) for line in lines)
    if loss == "kto":
        assert "kto/kl" in lines[0]
    if loss == "simpo":
        assert summary["reference"].startswith("none")
    if kind == "pairs" and loss == "kto":
        assert summary["examples"] == 16  # each pair split into a desirable and an undesirable example


def test_non_finite_loss_stops_and_keeps_the_last_good_state(tiny_model, tmp_path, monkeypatch):
    from prefcli.train import loop, preflight
    from prefcli.train.checkpoint import latest_checkpoint, read_trainer_state

    real_build = preflight.build_loss
    calls = {"n": 0}

    def poisoned(config):
        loss = real_build(config)
        forward = loss.forward

        def forward_with_nan(*args, **kwargs):
            out = forward(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] == 3:
                out.loss = out.loss * float("nan")
            return out

        loss.forward = forward_with_nan
        return loss

    monkeypatch.setattr(preflight, "build_loss", poisoned)
    data = write_pairs(tmp_path / "pairs.jsonl", rows=8)
    with pytest.raises(loop.TrainingDiverged, match=r"loss is nan at step 3; .*after step 2"):
        train(tiny(tiny_model, data, tmp_path / "run", max_steps=5))
    step, path = latest_checkpoint(tmp_path / "run")
    assert step == 2 and read_trainer_state(path)["step"] == 2
    assert [line["step"] for line in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2]


def test_lora_run_writes_merged_weights_and_the_adapter(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    data = write_pairs(tmp_path / "pairs.jsonl", rows=8)
    summary = train(tiny(tiny_model, data, tmp_path / "run", lora_r=4, max_steps=2, lr=1e-2))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "run")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    changed = [name for name, p in merged.named_parameters() if not torch.equal(p, dict(base.named_parameters())[name])]
    assert changed and all("proj" in name or "lm_head" in name for name in changed)
    assert summary["final_loss"] is not None


def test_memory_options_do_not_change_the_numbers(tiny_model, tmp_path):
    """Gradient checkpointing (full rows, no KV-cache prompt sharing) and --no-share-prompt log the same losses
    as the default shared-prompt path."""
    data = write_pairs(tmp_path / "pairs.jsonl", rows=8)
    default = train(tiny(tiny_model, data, tmp_path / "default"))
    for name, changes in (("checkpointing", {"gradient_checkpointing": True}), ("full", {"share_prompt": False})):
        other = train(tiny(tiny_model, data, tmp_path / name, **changes))
        assert [h["loss"] for h in other["history"]] == pytest.approx([h["loss"] for h in default["history"]],
                                                                      abs=1e-5), name


def test_accelerate_state_reset_adapter():
    """The adapter over accelerate's private ``_reset_state``: after it, a second Accelerator in the same process
    takes its own settings. Fails loudly when an accelerate upgrade removes or changes the private API."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    from prefcli.train.accelerate_compat import reset_accelerate_state

    assert callable(getattr(AcceleratorState, "_reset_state", None)), "accelerate removed AcceleratorState._reset_state"
    assert callable(getattr(GradientState, "_reset_state", None)), "accelerate removed GradientState._reset_state"
    try:
        first = Accelerator(cpu=True, gradient_accumulation_steps=3)
        assert first.gradient_accumulation_steps == 3
        reset_accelerate_state()
        second = Accelerator(cpu=True, gradient_accumulation_steps=1, mixed_precision="no")
        assert second.gradient_accumulation_steps == 1 and GradientState().num_steps == 1
    finally:
        reset_accelerate_state()
