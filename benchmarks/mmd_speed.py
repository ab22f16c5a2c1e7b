"""Speed and memory of the MMD loss, as ratios measured side by side in one run.

    python benchmarks/mmd_speed.py [--quick] [--device cuda] [--large-n 10000]

Targets (n = m = 1000, d = 784, the six MNIST scales, float32, CPU, forward + backward):
  mmd_loss <= 1.5 x the time of two (2000 x 784) @ (784 x 2000) matmuls, and
  mmd_loss >= 2 x faster than the straightforward autograd loss of public GMMN code.
Then n = m = 10000 in a fresh subprocess: peak resident memory must stay under 1.5 GiB.
Timings interleave the contenders and report medians, so load from other processes cancels.
With --device cuda the same cases run on the GPU (one setting: the OpenMP ones are CPU only;
inputs are drawn on the CPU and moved, so both devices time the same numbers) and the large
case also reports peak GPU memory (torch.cuda.max_memory_allocated).

The timings run in fresh subprocesses under three OpenMP settings, all reported: the default,
OMP_WAIT_POLICY=PASSIVE and one thread. On an oversubscribed machine (a shared 2-core VM) the
default spin-waiting of idle OpenMP workers steals the core from the thread doing the work
between parallel regions, which punishes code made of many short ops far more than one long
GEMM; the passive policy (idle workers sleep) removes that effect.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gmmn.mmd import mmd_loss, paper_sigmas  # noqa: E402

SIGMAS = paper_sigmas("mnist")
GIB = 2**30


def naive_loss(x: torch.Tensor, y: torch.Tensor, sigmas: list[float]) -> torch.Tensor:
    """What public GMMN ports do: cat, cdist, one exp per scale, block means, sqrt."""
    n = x.shape[0]
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).pow(2)
    k = sum(torch.exp(-d2 / (2 * s * s)) for s in sigmas)
    loss = k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()
    return torch.sqrt(torch.clamp(loss, min=0) + 1e-12)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def speed(repeats: int, device: torch.device) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)  # CPU draws, moved: the same inputs on any device
    x = torch.rand(1000, 784, generator=gen).to(device).requires_grad_()
    y = torch.rand(1000, 784, generator=gen).to(device)
    a = torch.rand(2000, 784, generator=gen).to(device)
    b = torch.rand(784, 2000, generator=gen).to(device)

    def fast():
        mmd_loss(x, y, sigmas=SIGMAS).backward()
        x.grad = None

    def naive():
        naive_loss(x, y, SIGMAS).backward()
        x.grad = None

    def two_matmuls():
        a @ b
        a @ b

    runs = {"two matmuls": two_matmuls, "mmd_loss": fast, "naive autograd": naive}
    for fn in runs.values():  # warm-up: thread pools, allocator
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(time_once(fn, device))
    return {k: statistics.median(v) for k, v in times.items()}


def agreement(device: torch.device) -> dict[str, float]:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1000, 784, generator=gen).to(device)
    y = (torch.rand(1000, 784, generator=gen) * 0.9).to(device)
    ref = float(naive_loss(x.double(), y.double(), SIGMAS))
    dense = float(mmd_loss(x, y, sigmas=SIGMAS, block_size=1000))
    blocked = float(mmd_loss(x, y, sigmas=SIGMAS, block_size=96))
    return {"float64 reference": ref, "dense tile": dense, "96-row tiles": blocked}


def large_child(n: int, device: torch.device) -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(n, 784, generator=gen).to(device).requires_grad_()
    y = torch.rand(n, 784, generator=gen).to(device)
    sync(device)
    start = time.perf_counter()
    loss = mmd_loss(x, y, sigmas=SIGMAS)
    loss.backward()
    sync(device)
    seconds = time.perf_counter() - start
    peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status")
                    if line.startswith("VmHWM"))
    gpu_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    print(json.dumps({"loss": float(loss), "seconds": seconds, "peak_bytes": peak_kib * 1024,
                      "gpu_peak_bytes": gpu_peak,
                      "grad_finite": bool(torch.isfinite(x.grad).all())}))


SETTINGS = {
    "default OpenMP": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}


def child(args: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=True, env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:k]")
    parser.add_argument("--large-n", type=int, default=10000,
                        help="n = m of the memory case (default 10000)")
    parser.add_argument("--large-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--speed-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no CUDA device")
    if args.large_child:
        return large_child(args.large_child, device)
    if args.speed_child:
        torch.manual_seed(0)
        med = speed(args.speed_child, device)
        med["threads"] = torch.get_num_threads()
        print(json.dumps(med))
        return None

    repeats = 5 if args.quick else 11
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    settings = SETTINGS if device.type == "cpu" else {"default": {}}
    dev = ["--device", args.device]
    print(f"{where}, float32, torch {torch.__version__}; n = m = 1000, d = 784, six MNIST scales, "
          f"forward + backward; median of {repeats} interleaved repeats (ms)")
    print(f"  {'setting':<24} {'threads':>7} {'2 matmuls':>10} {'mmd_loss':>9} {'naive':>8}"
          f" {'loss/mm (<=1.5)':>16} {'naive/loss (>=2)':>17}")
    for label, env in settings.items():
        med = child(["--speed-child", str(repeats), *dev], env)
        vs_mm = med["mmd_loss"] / med["two matmuls"]
        vs_naive = med["naive autograd"] / med["mmd_loss"]
        print(f"  {label:<24} {med['threads']:>7} {med['two matmuls'] * 1e3:>10.1f} "
              f"{med['mmd_loss'] * 1e3:>9.1f} {med['naive autograd'] * 1e3:>8.1f} "
              f"{vs_mm:>9.2f} {'met' if vs_mm <= 1.5 else 'MISSED':>6} "
              f"{vs_naive:>10.2f} {'met' if vs_naive >= 2 else 'MISSED':>6}")

    agree = agreement(device)
    print("agreement of mmd_loss, n = m = 1000 (float32 unless said):")
    for name, v in agree.items():
        print(f"  {name:<18} {v:.8f}")
    ref = agree["float64 reference"]
    print(f"  max relative difference to float64: "
          f"{max(abs(v - ref) / ref for v in agree.values()):.2e}")

    big = child(["--large-child", str(args.large_n), *dev], {})
    peak = big["peak_bytes"] / GIB
    print(f"n = m = {args.large_n}, d = 784, forward + backward, fresh subprocess, "
          f"default OpenMP, {device}:")
    print(f"  time {big['seconds']:.1f} s, loss {big['loss']:.6f}, finite grad: "
          f"{big['grad_finite']}")
    print(f"  peak resident memory {peak:.2f} GiB  (target < 1.5 GiB: "
          f"{'met' if peak < 1.5 else 'MISSED'})")
    if big["gpu_peak_bytes"] is not None:
        print(f"  peak GPU memory (max_memory_allocated) {big['gpu_peak_bytes'] / GIB:.2f} GiB")


if __name__ == "__main__":
    main()
