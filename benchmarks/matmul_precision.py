"""The loss at n = m = 1000 under lower-precision matrix products: time and error, side by side.

    python benchmarks/matmul_precision.py [--rounds 7]

At n = m = 1000, d = 784 the exact MMD loss is bound by its matrix products (docs/benchmarks.md,
issue 15's 1.5x target). CPUs with AMX or AVX512-BF16 units multiply bfloat16 matrices several
times faster than float32 ones, so this script measures what those units would buy and cost:

- the pooled Gram product Z Z^T (Z = [x; y], 2000 x 784) in float32; in one bfloat16 pass
  (torch.set_float32_matmul_precision("medium"): inputs rounded to bfloat16, float32
  accumulation); and in three bfloat16 passes (each input split as hi + lo, both bfloat16,
  products hi hi' + hi lo' + lo hi' in one GEMM of depth 3d), the usual emulation of float32;
- gmmn's ``mmd_loss`` forward + backward with float32 products and with the one-pass setting,

each against float64 references (the Gram matrix's error relative to its largest entry; the
loss and its gradient relative to their float64 values). Rounds alternate between contenders
and medians are reported, so load from other processes falls on all of them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gmmn.mmd import mmd_loss, paper_sigmas  # noqa: E402

SIGMAS = paper_sigmas("mnist")


def split_bf16(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z = hi + lo + O(2^-16 |z|), hi and lo exactly representable in bfloat16 (held as float32)."""
    hi = z.bfloat16().float()
    return hi, (z - hi).bfloat16().float()


def gram_fp32(z: torch.Tensor) -> torch.Tensor:
    torch.set_float32_matmul_precision("highest")
    return z @ z.T


def gram_bf16(z: torch.Tensor) -> torch.Tensor:
    torch.set_float32_matmul_precision("medium")
    return z @ z.T


def gram_bf16x3(z: torch.Tensor) -> torch.Tensor:
    hi, lo = split_bf16(z)
    torch.set_float32_matmul_precision("medium")  # inputs already bfloat16-exact: no rounding
    return torch.cat([hi, lo, hi], 1) @ torch.cat([hi, hi, lo], 1).T


def loss_step(x: torch.Tensor, y: torch.Tensor, precision: str) -> tuple[float, torch.Tensor]:
    torch.set_float32_matmul_precision(precision)
    x = x.detach().requires_grad_(True)
    loss = mmd_loss(x, y, sigmas=SIGMAS)
    loss.backward()
    return loss.item(), x.grad


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    # MNIST-like inputs: pixels in [0, 1], mostly dark.
    x = torch.rand(1000, 784, generator=g).pow(4)
    y = torch.rand(1000, 784, generator=g).pow(4)
    z = torch.cat([x, y])

    gram64 = z.double() @ z.double().T
    grams = {"float32": gram_fp32, "bfloat16, one pass": gram_bf16,
             "bfloat16 x3 (hi/lo split)": gram_bf16x3}
    times: dict[str, list[float]] = {k: [] for k in grams}
    for _ in range(args.rounds):
        for name, f in grams.items():
            t0 = time.perf_counter()
            f(z)
            times[name].append(time.perf_counter() - t0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"medians of {args.rounds} alternating rounds")
    print("\nGram product Z Z^T, Z of 2000 x 784:\n")
    print("| product | median | speed-up over float32 | max error / max entry |")
    print("|---|---|---|---|")
    base = median_ms(times["float32"])
    for name, f in grams.items():
        err = ((f(z).double() - gram64).abs().max() / gram64.abs().max()).item()
        ms = median_ms(times[name])
        print(f"| {name} | {ms:.1f} ms | {base / ms:.2f}x | {err:.1e} |")

    torch.set_float32_matmul_precision("highest")
    ref_loss, ref_grad = loss_step(x.double(), y.double(), "highest")
    modes = {"float32 products": "highest", "bfloat16, one pass": "medium"}
    ltimes: dict[str, list[float]] = {k: [] for k in modes}
    for _ in range(args.rounds):
        for name, prec in modes.items():
            t0 = time.perf_counter()
            loss_step(x, y, prec)
            ltimes[name].append(time.perf_counter() - t0)
    print("\nmmd_loss forward + backward, n = m = 1000, d = 784, the six MNIST scales:\n")
    print("| products | median | speed-up over float32 | loss rel. error | gradient rel. error |")
    print("|---|---|---|---|---|")
    base = median_ms(ltimes["float32 products"])
    for name, prec in modes.items():
        val, grad = loss_step(x, y, prec)
        lerr = abs(val - ref_loss) / abs(ref_loss)
        gerr = ((grad.double() - ref_grad).norm() / ref_grad.norm()).item()
        ms = median_ms(ltimes[name])
        print(f"| {name} | {ms:.1f} ms | {base / ms:.2f}x | {lerr:.1e} | {gerr:.1e} |")
    torch.set_float32_matmul_precision("highest")


if __name__ == "__main__":
    main()
