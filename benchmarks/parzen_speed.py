"""Time the whole Parzen protocol against one 10000 x 784 x 10000 float32 matmul.

The protocol at the paper's size: 10000 samples, 5000 validation rows x 20 bandwidths, then
10000 fresh samples against 10000 test rows. Printed as ratios to the matmul's time, medians
over ``--repeats`` interleaved runs on this machine, for ``gmmn.evaluate.parzen_protocol`` and
for the straightforward torch version (per bandwidth: cdist, square, logsumexp).

Data: Fashion-MNIST from /usr/share/datasets/fashion-mnist when present (the "generator"
draws training images, the hardest realistic case for the truncation since samples then sit
as close to the data as real images do); otherwise clustered synthetic data.
"""

from __future__ import annotations

import argparse
import gzip
import math
import pathlib
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

from gmmn.data import Splits  # noqa: E402
from gmmn.evaluate import MNIST_SIGMAS, parzen_protocol  # noqa: E402

FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")


def _idx_images(path: pathlib.Path) -> torch.Tensor:
    raw = gzip.open(path).read()
    n = int.from_bytes(raw[4:8], "big")
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=16).reshape(n, 784) / 255.0).float()


def load() -> tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(source, pool of 20000 'generated' rows, 5000 validation rows, 10000 test rows)."""
    if (FASHION / "train-images-idx3-ubyte.gz").exists():
        train = _idx_images(FASHION / "train-images-idx3-ubyte.gz")
        test = _idx_images(FASHION / "t10k-images-idx3-ubyte.gz")
        return "Fashion-MNIST", train[:20000], train[55000:60000], test
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(50, 784, generator=g)
    def draw(n):
        return (centres[torch.randint(50, (n,), generator=g)]
                + 0.15 * torch.randn(n, 784, generator=g)).clamp(0, 1)
    return "synthetic clusters", draw(20000), draw(5000), draw(10000)


def naive_protocol(pool: torch.Tensor, valid: torch.Tensor, test: torch.Tensor) -> float:
    """The straightforward version: recompute distances and logsumexp for every bandwidth."""
    d = valid.shape[1]
    s_val, s_test = pool[:10000], pool[10000:]
    def ll(samples, data, s):
        lse = torch.logsumexp(-torch.cdist(data, samples).pow(2) / (2 * s * s), dim=1)
        return (lse - math.log(samples.shape[0]) - 0.5 * d * math.log(2 * math.pi * s * s)).mean()
    curve = [float(ll(s_val, valid, s)) for s in MNIST_SIGMAS]
    return float(ll(s_test, test, MNIST_SIGMAS[int(np.argmax(curve))]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    source, pool, valid, test = load()
    splits = Splits("bench", pool, valid, test, None, None, None, (28, 28), source)
    def sample_fn(n, *, seed):
        return pool[10000 * seed:10000 * seed + n]  # seed 0: validation set, 1: fresh test set
    a, b = torch.rand(10000, 784), torch.rand(10000, 784)
    a @ b.T  # warm-up: thread pool and allocator, so the first timed matmul is not inflated
    t_mm, t_ours, t_naive = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        a @ b.T
        t1 = time.perf_counter()
        res = parzen_protocol(sample_fn, splits)
        t2 = time.perf_counter()
        naive = naive_protocol(pool, valid, test)
        t3 = time.perf_counter()
        t_mm.append(t1 - t0)
        t_ours.append(t2 - t1)
        t_naive.append(t3 - t2)
    mm = statistics.median(t_mm)
    print(f"data: {source}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved repeats, medians")
    print(f"matmul 10000x784x10000 float32: {mm:.3f} s")
    print(f"gmmn parzen_protocol:      {statistics.median(t_ours):.3f} s  "
          f"ratio {statistics.median(t_ours) / mm:.2f}x  "
          f"(score {res.mean:.2f} +- {res.stderr:.2f} nats at sigma {res.sigma:.2f})")
    print(f"straightforward torch:     {statistics.median(t_naive):.3f} s  "
          f"ratio {statistics.median(t_naive) / mm:.2f}x  "
          f"(score {naive:.2f} nats, float32 cdist)")


if __name__ == "__main__":
    main()
