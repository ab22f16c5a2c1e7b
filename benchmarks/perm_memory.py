"""Peak memory and wall time of the tiled permutation test against the dense path.

    python benchmarks/perm_memory.py [--n 100000] [--d 10] [--permutations 200]
                                     [--dense-n 2000] [--threads T] [--device cuda]

Target (issue 15): n = m = 10^5, d = 10, 200 permutations within 1.5 GiB peak resident
memory. The dense path would hold the pooled (2n)^2 float64 kernel matrix (320 GB at that
size), so it is timed at ``--dense-n`` instead and extrapolated by its cost model, time
proportional to (n + m)^2 (docs/mmd.md). The tiled path is also timed at ``--dense-n``, so
the two are compared at one size too. Each measurement runs in a fresh interpreter, so each
peak RSS (``resource.getrusage``, ru_maxrss) is that run's own. The full size takes minutes
(hours on 2 cores); try ``--n 5000`` first. ``--device cuda`` runs the tests on the GPU
(data drawn on the CPU and moved, so the statistic is the same) and adds each run's peak GPU
memory (``torch.cuda.max_memory_allocated``) to its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

GIB = 2**30


def child(n: int, d: int, permutations: int, mode: str, threads: int | None,
          device: str = "cpu") -> dict:
    """One two-sample test in this interpreter; its wall time and peak RSS as a dict.

    mode "dense" forces the dense path, "tiled" the tiled one (with the default budget, or
    just under what the dense path would need), "auto" lets the default budget choose.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import torch

    from gmmn.mmd import PERM_MEMORY_BUDGET, two_sample_test
    from gmmn.mmd._perm import plan

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64).to(dev)
    y = (torch.randn(n, d, generator=gen, dtype=torch.float64) + 0.05).to(dev)
    budget = {"dense": 2**62, "auto": PERM_MEMORY_BUDGET,
              "tiled": min(PERM_MEMORY_BUDGET, 3 * 8 * (2 * n) ** 2 - 1)}[mode]
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    res = two_sample_test(x, y, sigmas=[d**0.5], permutations=permutations,
                          memory_budget=budget)
    wall = time.perf_counter() - start  # the result is a Python float: the GPU is done
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gpu_peak = torch.cuda.max_memory_allocated(dev) / GIB if dev.type == "cuda" else None
    how = plan(2 * n, d, "unbiased", budget, permutations)
    return {"n": n, "mode": mode, "device": device, "gpu_peak_gib": gpu_peak,
            "wall_s": wall, "peak_rss_gib": peak / GIB,
            "rss_before_gib": start_rss / GIB, "statistic": res.statistic,
            "p_value": res.p_value, "plan": how.__dict__, "threads": torch.get_num_threads()}


def run_child(n: int, args: argparse.Namespace, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--n", str(n), "--d", str(args.d),
           "--permutations", str(args.permutations), "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="rows per sample (n = m)")
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--dense-n", type=int, default=2000,
                        help="size at which the dense path is timed and extrapolated from")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:k]")
    parser.add_argument("--child", choices=("dense", "tiled", "auto"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.n, args.d, args.permutations, args.child, args.threads,
                               args.device)))
        return

    dense_small = run_child(args.dense_n, args, "dense")
    tiled_small = run_child(args.dense_n, args, "tiled")
    tiled = run_child(args.n, args, "auto")
    growth = (2 * args.n / (2 * args.dense_n)) ** 2
    extrapolated = dense_small["wall_s"] * growth
    dense_bytes = 8 * (2 * args.n) ** 2
    print(f"d={args.d}, {args.permutations} permutations, {tiled['threads']} torch threads, "
          f"device {args.device}")
    print(f"{'run':<34} {'n':>8} {'wall s':>10} {'peak RSS GiB':>13} {'p-value':>8}")
    for name, r in (("dense (measured)", dense_small), ("tiled (measured)", tiled_small),
                    ("default budget (measured)", tiled)):
        print(f"{name:<34} {r['n']:>8} {r['wall_s']:>10.2f} {r['peak_rss_gib']:>13.3f} "
              f"{r['p_value']:>8.3f}"
              + (f"  GPU peak {r['gpu_peak_gib']:.3f} GiB" if r["gpu_peak_gib"] is not None
                 else ""))
    print(f"{'dense (extrapolated, x (N/N0)^2)':<34} {args.n:>8} {extrapolated:>10.1f} "
          f"{dense_bytes / GIB:>13.1f}  (kernel matrix alone)")
    print(f"tiled / extrapolated dense time at n={args.n}: {tiled['wall_s'] / extrapolated:.2f}")
    print(f"plan at n={args.n}: {tiled['plan']}")
    ok = tiled["peak_rss_gib"] <= 1.5
    print(f"peak RSS target (<= 1.5 GiB): {'met' if ok else 'MISSED'}")
    print(json.dumps({"dense_small": dense_small, "tiled_small": tiled_small, "tiled": tiled,
                      "dense_extrapolated_s": extrapolated}))


if __name__ == "__main__":
    main()
