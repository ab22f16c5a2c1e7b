"""Training step of one stacked-CAE layer: the written-out gradient against autograd.

    python benchmarks/cae_step.py [--steps 300] [--rounds 5]

The ``mnist-scae`` recipe takes 2 x 1.1 million steps of batch 10 (docs/baselines.md), so the
time of one step decides whether it fits a session. Both paths run the same layer (784 -> 1000
and 1000 -> 1000, tied, lambda 0.1) on the same batches with the optimiser the stage uses;
rounds alternate between the paths and the medians are reported, so load from other processes
falls on both. The two paths' gradients agree to float64 precision (tests/test_baselines_cae.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gmmn.baselines.cae import CAE, cae_loss  # noqa: E402
from gmmn.training.optim import ReleasedSGD  # noqa: E402


def time_steps(n_in: int, *, fast: bool, steps: int, batch: int = 10) -> float:
    """Seconds per step: zero_grad, loss, backward, optimiser step."""
    g = torch.Generator().manual_seed(0)
    cae = CAE(n_in, 1000, generator=g)
    data = torch.rand(steps * batch, n_in, generator=g)
    opt = ReleasedSGD(cae.parameters(), lr=0.001, momentum=0.0)
    t0 = time.perf_counter()
    for i in range(steps):
        opt.zero_grad()
        cae_loss(cae, data[i * batch:(i + 1) * batch], contraction=0.1, fast=fast).backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 10")
    print("| layer | autograd ms/step | written-out ms/step | speed-up |")
    print("|---|---|---|---|")
    for n_in in (784, 1000):
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for fast in (False, True):
                times[fast].append(time_steps(n_in, fast=fast, steps=args.steps))
        slow, fast = (statistics.median(times[k]) * 1e3 for k in (False, True))
        print(f"| {n_in} -> 1000 | {slow:.2f} | {fast:.2f} | {slow / fast:.2f}x |")


if __name__ == "__main__":
    main()
