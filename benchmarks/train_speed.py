"""GMMN training speed next to the cost of its MMD alone (one run, side by side, medians).

Data-space GMMN with the paper's MNIST sizes (10-64-256-256-1024-784, sigmoid output, the
released code's six MNIST scales) on random 784-dimensional data, 1000 generated samples and
1000 data points per step. Each timed training step is followed by one timed
``mmd_loss`` forward + backward on tensors of the same sizes, so both see the same machine
load. Target: a training step costs at most 1.3x its MMD.

    python benchmarks/train_speed.py [--steps 30] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gmmn.families import build_model
from gmmn.families.gmmn import GMMNStage
from gmmn.mmd import mmd_loss
from gmmn.presets import get_preset
from gmmn.training.loop import train_loop


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps (default 30)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = get_preset("mnist-gmmn").override(device=args.device,
                              iterations=args.warmup + args.steps)
    data = torch.rand(10000, 784, device=device)
    model = build_model(cfg, 784, unit_interval=True).to(device)
    stage = GMMNStage(model, data, cfg)
    sigmas = list(cfg.sigmas)
    x0 = torch.rand(cfg.sample_batch_size, 784, device=device)
    y0 = torch.rand(cfg.data_batch_size, 784, device=device)
    step_times, mmd_times = [], []
    clock = {"start": 0.0}

    def on_step(info) -> None:
        sync(device)
        end = time.perf_counter()
        if info.iteration > args.warmup:
            step_times.append(end - clock["start"])
        x = x0.clone().requires_grad_(True)  # the MMD alone, same sizes, same load
        t0 = time.perf_counter()
        mmd_loss(x, y0, sigmas=sigmas).backward()
        sync(device)
        if info.iteration > args.warmup:
            mmd_times.append(time.perf_counter() - t0)
        clock["start"] = time.perf_counter()

    clock["start"] = time.perf_counter()
    train_loop(stage, on_step=on_step)
    step, mmd = statistics.median(step_times), statistics.median(mmd_times)
    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"{args.steps} steps, batch {cfg.sample_batch_size}/{cfg.data_batch_size}")
    print(f"GMMN training step : {step * 1e3:8.1f} ms  ({1 / step:.2f} iterations/s)")
    print(f"mmd_loss fwd+bwd   : {mmd * 1e3:8.1f} ms")
    print(f"ratio step / MMD   : {step / mmd:8.2f}  (target <= 1.3)")


if __name__ == "__main__":
    main()
