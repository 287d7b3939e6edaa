"""AOT: written-out sorted-quantile formula, permutation invariance, the unpaired reduction to the elementwise
objective, soft sort -> hard sort, and the global sort under 2 gloo processes equal to one process."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from prefcli.losses import get_loss

OBJECTIVES = ("logistic", "hinge2", "ls")


def objective_value(delta: float, objective: str, beta: float, eps: float = 0.0) -> float:
    if objective == "logistic":
        return (1 - eps) * math.log1p(math.exp(-beta * delta)) + eps * math.log1p(math.exp(beta * delta))
    if objective == "hinge2":
        return max(beta - delta, 0.0) ** 2
    return (beta - delta) ** 2


def batch(size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(-(torch.rand(size, generator=generator, dtype=torch.float64) * 40) for _ in range(4))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_paired_aot_matches_sorted_quantile_formula(objective):
    pw, pl, rw, rl = batch(seed=1)
    eps = 0.1 if objective == "logistic" else 0.0
    out = get_loss("aot", beta=0.3, objective=objective, label_smoothing=eps)(pw, pl, rw, rl)
    u = sorted(float(a) - float(b) for a, b in zip(pw, pl))
    u_ref = sorted(float(a) - float(b) for a, b in zip(rw, rl))
    expected = [objective_value(a - b, objective, 0.3, eps) for a, b in zip(u, u_ref)]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.chosen_rewards, 0.3 * (pw - rw))
    torch.testing.assert_close(out.rejected_rewards, 0.3 * (pl - rl))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_unpaired_aot_with_sorted_inputs_is_the_elementwise_objective(objective):
    generator = torch.Generator().manual_seed(3)
    chosen_ratio = torch.sort(torch.randn(10, generator=generator, dtype=torch.float64) * 5).values
    rejected_ratio = torch.sort(torch.randn(10, generator=generator, dtype=torch.float64) * 5).values
    reference = -torch.rand(10, generator=generator, dtype=torch.float64) * 20
    out = get_loss("aot-unpaired", beta=0.4, objective=objective)(
        reference + chosen_ratio, reference + rejected_ratio, reference, reference)
    expected = [objective_value(float(a) - float(b), objective, 0.4) for a, b in zip(chosen_ratio, rejected_ratio)]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("sort", ["hard", "soft"])
def test_permuting_the_batch_leaves_the_loss_unchanged(sort):
    pw, pl, rw, rl = batch(size=12, seed=4)
    permutation = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    other = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    for objective in OBJECTIVES:
        paired = get_loss("aot", objective=objective, sort=sort, temperature=0.5)
        base = paired(pw, pl, rw, rl)
        shuffled = paired(pw[permutation], pl[permutation], rw[permutation], rl[permutation])
        torch.testing.assert_close(shuffled.loss, base.loss, atol=1e-12, rtol=0)
        # sorted positions: the per-position losses are unchanged too
        torch.testing.assert_close(shuffled.losses, base.losses, atol=1e-12, rtol=0)
        unpaired = get_loss("aot-unpaired", objective=objective, sort=sort, temperature=0.5)
        base = unpaired(pw, pl, rw, rl)
        # unpaired: desirable and undesirable examples may be shuffled independently
        shuffled = unpaired(pw[permutation], pl[other], rw[permutation], rl[other])
        torch.testing.assert_close(shuffled.loss, base.loss, atol=1e-12, rtol=0)
    # a different pairing does change the paired loss (the test above is not vacuous)
    assert not torch.allclose(get_loss("aot")(pw, pl[other], rw, rl[other]).loss, get_loss("aot")(pw, pl, rw, rl).loss)


def test_soft_sort_tends_to_hard_sort_as_temperature_goes_to_zero():
    pw, pl, rw, rl = batch(size=10, seed=5)
    for name in ("aot", "aot-unpaired"):
        hard = get_loss(name, objective="ls")(pw, pl, rw, rl).losses
        gaps = []
        for temperature in (10.0, 1.0, 0.1, 1e-3):
            soft = get_loss(name, objective="ls", sort="soft", temperature=temperature)(pw, pl, rw, rl).losses
            gaps.append(float((soft - hard).abs().max()))
        assert gaps[0] > 1e-2 and all(a >= b for a, b in itertools.pairwise(gaps)), gaps
        assert gaps[-1] < 1e-6, gaps


def test_soft_sort_keeps_ties_exact():
    from prefcli.losses.sorting import soft_sort

    values = torch.tensor([3.0, 1.0, 3.0, -2.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(soft_sort(values, 1e-4), torch.sort(values).values, atol=1e-9, rtol=0)


def test_global_sort_without_process_group_is_the_local_sort():
    pw, pl, rw, rl = batch(seed=6)
    local = get_loss("aot", sort="soft")(pw, pl, rw, rl)
    global_ = get_loss("aot", sort="soft", global_sort=True)(pw, pl, rw, rl)
    torch.testing.assert_close(global_.losses, local.losses, atol=0, rtol=0)


WORKER = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    from prefcli.losses import get_loss

    rank, world, init_file, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world)
    full = torch.load(out_dir + "/inputs.pt")
    results = {}
    for key, (name, hparams, sizes, reduction) in full["cases"].items():
        start = sum(sizes[:rank])
        local = [t[start:start + sizes[rank]].clone().requires_grad_(True) for t in full["tensors"]]
        out = get_loss(name, global_sort=True, **hparams)(*local)
        (out.loss if reduction == "mean" else out.losses.sum()).backward()
        results[key] = {"losses": out.losses.detach(), "loss": out.loss.detach(),
                        "grads": [t.grad for t in local], "metrics": out.metrics}
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
""")


@pytest.mark.slow
def test_global_sort_two_gloo_processes_equal_one_process_on_the_concatenated_batch(tmp_path):
    generator = torch.Generator().manual_seed(7)
    tensors = [-(torch.rand(12, generator=generator, dtype=torch.float64) * 30) for _ in range(4)]
    cases = {
        "paired-hard-logistic": ("aot", {"objective": "logistic", "beta": 0.2}, [6, 6], "mean"),
        "paired-soft-hinge2": ("aot", {"objective": "hinge2", "sort": "soft", "temperature": 0.7}, [6, 6], "mean"),
        "unpaired-hard-ls": ("aot-unpaired", {"objective": "ls"}, [6, 6], "mean"),
        "unpaired-soft-uneven": ("aot-unpaired", {"sort": "soft", "temperature": 0.3}, [5, 7], "sum"),
    }
    torch.save({"tensors": tensors, "cases": cases}, tmp_path / "inputs.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(rank), "2",
                                   str(tmp_path / "rendezvous"), str(tmp_path)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for rank in range(2)]
    for process in processes:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]

    for key, (name, hparams, _sizes, reduction) in cases.items():
        whole = [t.clone().requires_grad_(True) for t in tensors]
        single = get_loss(name, **hparams)(*whole)
        (single.loss if reduction == "mean" else single.losses.sum()).backward()
        # each process returns the losses of its own slice of sorted positions
        torch.testing.assert_close(torch.cat([r[key]["losses"] for r in ranks]), single.losses.detach(),
                                   atol=1e-12, rtol=0)
        assert ranks[0][key]["metrics"][f"{name}/sorted_batch_size"] == 12.0
        for index in range(4):
            gathered = torch.cat([r[key]["grads"][index] for r in ranks])
            if reduction == "mean":
                # each process backpropagates the mean of its slice; DDP then averages over the 2 processes
                torch.testing.assert_close(gathered / 2, whole[index].grad, atol=1e-12, rtol=0)
            else:
                torch.testing.assert_close(gathered, whole[index].grad, atol=1e-12, rtol=0)
        if reduction == "mean":
            mean_over_ranks = sum(float(r[key]["loss"]) for r in ranks) / 2
            assert abs(mean_over_ranks - float(single.loss.detach())) < 1e-12


def test_aot_hparam_errors():
    with pytest.raises(ValueError, match="label_smoothing applies only to objective='logistic'"):
        get_loss("aot", objective="hinge2", label_smoothing=0.1)
    with pytest.raises(ValueError, match="'objective' must be one of 'logistic', 'hinge2', 'ls'"):
        get_loss("aot", objective="hinge")
    with pytest.raises(ValueError, match=r"'temperature' must be > 0"):
        get_loss("aot-unpaired", sort="soft", temperature=0.0)
    with pytest.raises(ValueError, match="one undesirable example per desirable one"):
        pw, pl, rw, rl = batch()
        get_loss("aot-unpaired")(pw, pl[:5], rw, rl[:5])
