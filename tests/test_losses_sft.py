"""``--loss sft``: the formula against its written-out value, and the trainer on chosen-only records."""

from __future__ import annotations

import json

import pytest
import torch

from prefcli.errors import DataError
from prefcli.losses import get_loss, list_losses
from prefcli.train import TrainConfig, train


def test_sft_is_the_length_averaged_nll_of_chosen():
    loss = get_loss("sft")
    chosen = torch.tensor([-6.0, -2.5, -9.0], requires_grad=True)
    lengths = torch.tensor([3.0, 5.0, 0.0])  # 0 is clamped to 1, as every length-normalised loss does
    out = loss(chosen, torch.tensor([-1.0, -50.0, 3.0]), chosen_lengths=lengths)
    # -log pi(y_w) / |y_w|: 6/3, 2.5/5, 9/1
    assert out.losses.tolist() == pytest.approx([2.0, 0.5, 9.0])
    assert float(out.loss.detach()) == pytest.approx((2.0 + 0.5 + 9.0) / 3)
    assert out.chosen_rewards.tolist() == pytest.approx([-2.0, -0.5, -9.0])
    assert out.rejected_rewards.tolist() == [0.0, 0.0, 0.0]
    out.loss.backward()
    assert chosen.grad.tolist() == pytest.approx([-1 / 9, -1 / 15, -1 / 3])  # d/dx of -x/(3 n)


def test_sft_ignores_rejected_and_needs_no_reference():
    loss = get_loss("sft")
    chosen, lengths = torch.tensor([-4.0]), torch.tensor([2.0])
    first = loss(chosen, torch.tensor([-1.0]), chosen_lengths=lengths).loss
    second = loss(chosen, torch.tensor([-99.0]), chosen_lengths=lengths).loss
    assert float(first) == float(second) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="chosen_lengths"):
        loss(chosen, torch.tensor([-1.0]))
    entry = next(info for info in list_losses() if info.name == "sft")
    assert entry.reference_free and entry.data_kind == "chosen"


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_trainer_runs_sft_on_prompt_and_chosen_only(tmp_path, tiny_model):
    rows = [{"id": i, "prompt": f"say {i}", "chosen": f"number {i} is here"} for i in range(8)]
    rows.append({"id": 8, "prompt": "pair", "chosen": "kept", "rejected": "ignored"})
    data = _write(tmp_path / "sft.jsonl", rows)
    config = TrainConfig(model=str(tiny_model), data=str(data), output=str(tmp_path / "run"), loss="sft",
                         lr=1e-2, batch_size=4, max_steps=6, warmup=0, max_length=64, seed=0)
    summary = train(config)
    assert summary["reference"] == "none (reference-free loss)"
    assert summary["reference_seconds"] == 0.0 and summary["records"] == 9
    losses = [row["loss"] for row in summary["history"]]
    assert losses[-1] < losses[0]  # the NLL of the demonstrations goes down


@pytest.mark.parametrize(("row", "field"), [
    ({"id": 0, "prompt": "p", "completion": "c", "label": True}, "chosen"),
    ({"id": 0, "chosen": "c"}, "prompt"),
])
def test_sft_data_errors_name_line_and_field(tmp_path, tiny_model, row, field):
    data = _write(tmp_path / "bad.jsonl", [{"id": 9, "prompt": "ok", "chosen": "fine"}, row])
    config = TrainConfig(model=str(tiny_model), data=str(data), output=str(tmp_path / "run"), loss="sft",
                         max_steps=1)
    with pytest.raises(DataError, match=rf"bad.jsonl:2: {field}"):
        train(config)
