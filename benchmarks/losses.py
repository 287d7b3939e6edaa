"""Benchmark: prefcli's loss modules against the same formulas written inline in TRL's style (the peer), in the
same run, forward + backward on one batch of summed log-probs.

The inline peer is what a trainer pays for the bare formula (TRL computes each loss as a few tensor expressions
inside its trainer). prefcli adds input checks, the float32 upcast, reward/metric assembly and, for MC-PO, the
kernel draw. The script first checks that both give the same loss value, then prints per loss the best time
of ``iters`` forward+backward passes and the ratio prefcli / peer. The ratio is dominated by a fixed Python
cost of a few tens of microseconds per call (checks and output assembly), negligible next to a model forward
(milliseconds to seconds). It also times AOT's soft sort (O(B^2)) and MC-PO's draw + gather.

    OMP_NUM_THREADS=1 python benchmarks/losses.py    # CPU, B = 256 (one thread: on a small shared machine the
                                                     # thread pool's wake-ups otherwise dominate sub-ms ops)
    python benchmarks/losses.py --device cuda --batch 1024
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from prefcli.losses import get_loss


def peer_formulas(beta: float):
    """The formulas as TRL writes them inline (sigmoid, ipo, hinge, robust, nca_pair, sppo_hard, apo, discopop,
    aot, aot_unpaired), on tensors (pw, pl, rw, rl, lw, ll)."""

    def dpo(pw, pl, rw, rl, lw, ll):
        return -F.logsigmoid(beta * ((pw - rw) - (pl - rl))).mean()

    def ipo(pw, pl, rw, rl, lw, ll):
        return (((pw - rw) / lw - (pl - rl) / ll) - 1 / (2 * beta)).pow(2).mean()

    def hinge(pw, pl, rw, rl, lw, ll):
        return torch.relu(1 - beta * ((pw - rw) - (pl - rl))).mean()

    def nca(pw, pl, rw, rl, lw, ll):
        cw, cl = beta * (pw - rw), beta * (pl - rl)
        return (-F.logsigmoid(cw) - 0.5 * F.logsigmoid(-cw) - 0.5 * F.logsigmoid(-cl)).mean()

    def sppo(pw, pl, rw, rl, lw, ll):
        return (((pw - rw) - 0.5 / beta) ** 2 + ((pl - rl) + 0.5 / beta) ** 2).mean()

    def apo_zero(pw, pl, rw, rl, lw, ll):
        return ((1 - torch.sigmoid(beta * (pw - rw))) + torch.sigmoid(beta * (pl - rl))).mean()

    def discopop(pw, pl, rw, rl, lw, ll):
        logits = beta * ((pw - rw) - (pl - rl))
        mix = torch.sigmoid(logits / 0.05)
        return (-F.logsigmoid(logits) * (1 - mix) + torch.exp(-logits) * mix).mean()

    def aot(pw, pl, rw, rl, lw, ll):
        delta = torch.sort(pw - pl).values - torch.sort(rw - rl).values
        return -F.logsigmoid(beta * delta).mean()

    def aot_unpaired(pw, pl, rw, rl, lw, ll):
        delta = torch.sort(pw - rw).values - torch.sort(pl - rl).values
        return -F.logsigmoid(beta * delta).mean()

    return {"dpo": dpo, "ipo": ipo, "hinge": hinge, "nca": nca, "sppo": sppo, "apo-zero": apo_zero,
            "discopop": discopop, "aot": aot, "aot-unpaired": aot_unpaired}


def peer_forward_backward(formula, *tensors) -> None:
    formula(*tensors).backward()


def forward_backward(loss, *tensors, **kwargs) -> None:
    loss(*tensors, **kwargs).loss.backward()


def best_seconds(step, iters: int, device: str, *args, **kwargs) -> float:
    """Fastest wall time of ``step(*args, **kwargs)`` over ``iters`` runs after one warm-up call. The minimum,
    not the median, so that a busy machine (other processes taking the cores) does not decide the ratio."""
    step(*args, **kwargs)
    times = []
    for _ in range(iters):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(*args, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()
    device, batch, beta = args.device, args.batch, 0.1
    generator = torch.Generator().manual_seed(0)
    base = [-(torch.rand(batch, generator=generator) * 200).to(device) for _ in range(4)]
    lengths = [torch.randint(20, 200, (batch,), generator=generator).float().to(device) for _ in range(2)]

    print(f"device={device} batch={batch} iters={args.iters} torch={torch.__version__}")
    print(f"{'loss':<14}{'peer us':>10}{'prefcli us':>12}{'ratio':>8}")
    ratios = []
    for name, peer in peer_formulas(beta).items():
        loss = get_loss(name, beta=beta)
        tensors = [t.clone().requires_grad_(True) for t in base]
        ours = loss(*tensors, chosen_lengths=lengths[0], rejected_lengths=lengths[1]).loss
        theirs = peer(*tensors, *lengths)
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5), (name, float(ours), float(theirs))

        peer_time = best_seconds(peer_forward_backward, args.iters, device, peer, *tensors, *lengths)
        our_time = best_seconds(forward_backward, args.iters, device, loss, *tensors,
                                  chosen_lengths=lengths[0], rejected_lengths=lengths[1])
        ratios.append(our_time / peer_time)
        print(f"{name:<14}{peer_time * 1e6:>10.1f}{our_time * 1e6:>12.1f}{our_time / peer_time:>8.2f}")
    print(f"{'geomean':<14}{'':>22}{statistics.geometric_mean(ratios):>8.2f}")

    print("\nAOT soft sort (forward + backward), O(B^2):")
    for size in (256, 1024, 4096):
        tensors = [-(torch.rand(size, generator=generator) * 200).to(device).requires_grad_(True) for _ in range(4)]
        hard = get_loss("aot")
        soft = get_loss("aot", sort="soft", temperature=0.1)
        hard_time = best_seconds(forward_backward, 20, device, hard, *tensors)
        soft_time = best_seconds(forward_backward, 20, device, soft, *tensors)
        print(f"  B={size:<6} hard {hard_time * 1e3:8.2f} ms   soft {soft_time * 1e3:8.2f} ms")

    print("\nMC-PO (draw + gather + loss) vs DPO, C candidates, K negatives:")
    dpo = get_loss("dpo")
    for candidates, negatives in ((4, 1), (16, 4)):
        chosen = [-(torch.rand(batch, generator=generator) * 200).to(device).requires_grad_(True) for _ in range(2)]
        cand = [-(torch.rand(batch, candidates, generator=generator) * 200).to(device).requires_grad_(True)
                for _ in range(2)]
        mcpo = get_loss("mcpo", negatives=negatives)
        draw_generator = torch.Generator().manual_seed(1)
        dpo_time = best_seconds(forward_backward, args.iters, device, dpo, chosen[0], cand[0][:, 0], chosen[1],
                                  cand[1][:, 0])
        mcpo_time = best_seconds(forward_backward, args.iters, device, mcpo, chosen[0], cand[0], chosen[1], cand[1],
                                   generator=draw_generator)
        print(f"  C={candidates:<3} K={negatives:<3} dpo {dpo_time * 1e6:8.1f} us   mcpo {mcpo_time * 1e6:8.1f} us   "
              f"ratio {mcpo_time / dpo_time:.2f}")


if __name__ == "__main__":
    main()
