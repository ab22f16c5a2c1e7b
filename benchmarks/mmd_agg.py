"""MMDAgg and MMD-FUSE on gmmn's tiled core against a straightforward dense NumPy version.

    python benchmarks/mmd_agg.py [--n 2000] [--d 10] [--memory-n 20000] [--skip-memory]

Side by side in one run, on ONE CPU thread (OMP/OpenBLAS/MKL threads set to 1 before numpy
and torch load):

1. speed at n = m = 2000, d = 10 (gmmn, the reference, gmmn again: the ratio is to the mean
   of the two gmmn runs), the papers' default collections (gaussian and laplace, 10
   bandwidths each: 20 kernels), MMDAgg with B1 = B2 = 2000 (the wild bootstrap, n = m) and
   B3 = 50, MMD-FUSE with B = 2000 permutations. The reference is written here from the
   papers' matrix formulation (MMDAgg, Appendix C): the pooled distance matrices, then per
   kernel the dense (N, N) float64 kernel matrix and one product with all simulated vectors
   (the wild bootstrap: R = [e; -e] against K with its four block diagonals zeroed; the
   permutations: the three indicator products V10, V01, V11), then Algorithm 1 or the
   log-sum-exp. It uses the very same collection, signs and relabellings (the same torch
   generator streams), so the two must give the same statistics (float32 rounding apart)
   and the same decisions;
2. peak memory at n = m = 20000, d = 10 (each test in a fresh subprocess; VmHWM, the peak
   resident set of the process from /proc, interpreter and torch included): a complete run
   with reduced counts (agg B1 = 400, B2 = 20; fuse B = 100), and the full counts' first
   ``--full-seconds`` CPU seconds (the whole chunk of relabellings and the tile buffers are
   allocated before the first tile pair; a full run would take tens of minutes on one core).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from gmmn.mmd import _agg, two_sample_test  # noqa: E402
from gmmn.mmd._methods import _generator  # noqa: E402

torch.set_num_threads(1)
OUT = Path(__file__).resolve().parents[1] / "results" / "two-sample-power"


# --- the dense NumPy reference -----------------------------------------------------------------

def ref_kernels(z: np.ndarray, families, bandwidths):
    """Yield each (N, N) float64 kernel matrix from the pooled distance matrices."""
    dist = {"l2": cdist(z, z, "euclidean"), "l1": cdist(z, z, "cityblock")}
    for fam, bw in zip(families, bandwidths, strict=True):
        if fam == "gaussian":
            yield np.exp(-dist["l2"] ** 2 / (2 * bw * bw))
        else:
            yield np.exp(-dist["l1"] / bw)


def ref_level_correction(stats, b1, w, alpha, steps):
    """Algorithm 1 of MMDAgg on (L, 1 + B1 + B2) statistics, column 0 observed."""
    ordered = np.sort(stats[:, : b1 + 1], axis=1)
    null = stats[:, b1 + 1 :]

    def quant(u):
        idx = np.clip(np.ceil((b1 + 1) * (1 - u * w)).astype(int) - 1, 0, b1)
        return ordered[np.arange(len(w)), idx]

    lo, hi = 0.0, float(np.min(1 / w))
    for _ in range(steps):
        u = (lo + hi) / 2
        if np.mean((null > quant(u)[:, None]).any(0)) <= alpha:
            lo = u
        else:
            hi = u
    return lo, stats[:, 0] > quant(lo)


def ref_agg_wild(x, y, families, bandwidths, signs, w, alpha, b1, steps):
    """MMDAgg with the wild bootstrap; ``signs`` (B1 + B2, n) in {-1, 1}."""
    n = x.shape[0]
    eps = np.concatenate([np.ones((1, n)), signs]).T  # (n, 1 + B)
    r = np.concatenate([eps, -eps])  # (2n, 1 + B)
    stats = np.zeros((len(families), r.shape[1]))
    idx = np.arange(n)
    for k, kmat in enumerate(ref_kernels(np.concatenate([x, y]), families, bandwidths)):
        for di, dj in ((0, 0), (0, n), (n, 0), (n, n)):  # the four block diagonals
            kmat[idx + di, idx + dj] = 0
        stats[k] = np.sum(r * (kmat @ r), 0) / (n * (n - 1))
    return stats, ref_level_correction(stats, b1, w, alpha, steps)


def ref_fuse(x, y, families, bandwidths, perms, multiplier=1.0):
    """MMD-FUSE; ``perms`` (B, N) relabellings (rows are permutations of range(N))."""
    n, m = x.shape[0], y.shape[0]
    big = n + m
    order = np.concatenate([np.arange(big)[None], perms])  # (1 + B, N), observed first
    member = np.zeros_like(order, dtype=float)
    np.put_along_axis(member, order[:, :n], 1.0, axis=1)
    v10, v01 = member.T, -(1 - member).T  # (N, 1 + B)
    v11 = v10 + v01
    small = min(n, m)
    lam = multiplier * math.sqrt(small * (small - 1))
    stats = np.zeros((len(families), order.shape[0]))
    for k, kmat in enumerate(ref_kernels(np.concatenate([x, y]), families, bandwidths)):
        np.fill_diagonal(kmat, 0)
        xx = np.sum(v10 * (kmat @ v10), 0)
        yy = np.sum(v01 * (kmat @ v01), 0)
        xy = (xx + yy - np.sum(v11 * (kmat @ v11), 0)) / 2
        mmd2 = xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2 * xy / (n * m)
        norm = math.sqrt(np.sum(kmat**2)) / (small * (small - 1))
        stats[k] = lam * mmd2 / norm
    top = stats.max(0)
    fused = np.log(np.mean(np.exp(stats - top), 0)) + top
    return stats, (1 + np.sum(fused[1:] >= fused[0])) / fused.size


# --- speed ------------------------------------------------------------------------------------

def speed(n: int, d: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, d, generator=gen, dtype=torch.float64)
    xn, yn = x.numpy(), y.numpy()
    out = {"n": n, "d": d, "threads": torch.get_num_threads()}
    b1 = b2 = 2000
    # Interleaved, so that a machine whose load changes over minutes stretches both sides
    # alike: gmmn, the reference, gmmn again; the ratio is the reference's time over the
    # mean of the two gmmn runs around it. Wall time and the process's CPU time (one
    # thread: the CPU time is the work itself, which other jobs stretch less than wall time).
    # Both sides draw their own signs / relabellings from the same generator stream, inside
    # the timing. A small first call keeps one-time costs out of the first gmmn run.
    two_sample_test(x[:50], y[:50], method="agg", seed=seed)
    two_sample_test(x[:50], y[:50], method="fuse", seed=seed)
    times = {"agg": [], "fuse": []}
    cpu = {"agg": [], "fuse": []}
    res = {}

    def run_gmmn(method):
        t, c = time.perf_counter(), time.process_time()
        res[method] = two_sample_test(x, y, method=method, seed=seed)
        times[method].append(time.perf_counter() - t)
        cpu[method].append(time.process_time() - c)

    for method in ("agg", "fuse"):
        run_gmmn(method)
    # the reference, with the same collection and the same signs / relabellings
    agg = res["agg"]
    fams = tuple(c.kernel for c in agg.kernels)
    bws = tuple(c.bandwidth for c in agg.kernels)
    w = np.array(_agg.weights(10, "uniform") * 2) / 2
    t, c = time.perf_counter(), time.process_time()
    signs = np.where(torch.rand(b1 + b2, n, generator=_generator(seed, 0)).numpy() < 0.5,
                     1.0, -1.0)
    ref_stats, (ref_u, ref_rejects) = ref_agg_wild(xn, yn, fams, bws, signs, w, 0.05, b1, 50)
    t_ref_agg, c_ref_agg = time.perf_counter() - t, time.process_time() - c
    run_gmmn("agg")
    fuse = res["fuse"]
    fams_f = tuple(c.kernel for c in fuse.kernels)
    bws_f = tuple(c.bandwidth for c in fuse.kernels)
    t, c = time.perf_counter(), time.process_time()
    perms = torch.argsort(torch.rand(2000, 2 * n, generator=_generator(seed, 0)), dim=1).numpy()
    ref_s, ref_p = ref_fuse(xn, yn, fams_f, bws_f, perms)
    t_ref_fuse, c_ref_fuse = time.perf_counter() - t, time.process_time() - c
    run_gmmn("fuse")
    ours = np.array([c.statistic for c in agg.kernels])
    out["agg"] = {
        "gmmn_s": float(np.mean(times["agg"])), "reference_s": t_ref_agg,
        "speedup": t_ref_agg / float(np.mean(times["agg"])),
        "gmmn_cpu_s": float(np.mean(cpu["agg"])), "reference_cpu_s": c_ref_agg,
        "cpu_speedup": c_ref_agg / float(np.mean(cpu["agg"])),
        "observed_rel_diff": float(np.max(np.abs(ours - ref_stats[:, 0])
                                          / np.abs(ref_stats).max(1))),
        "u_alpha": [agg.level_correction, ref_u], "reject": [agg.reject, bool(ref_rejects.any())],
        "rejecting_kernels": [len(agg.decided_by), int(ref_rejects.sum())]}
    ours = np.array([c.statistic for c in fuse.kernels])
    out["fuse"] = {
        "gmmn_s": float(np.mean(times["fuse"])), "reference_s": t_ref_fuse,
        "speedup": t_ref_fuse / float(np.mean(times["fuse"])),
        "gmmn_cpu_s": float(np.mean(cpu["fuse"])), "reference_cpu_s": c_ref_fuse,
        "cpu_speedup": c_ref_fuse / float(np.mean(cpu["fuse"])),
        "observed_rel_diff": float(np.max(np.abs(ours - ref_s[:, 0]) / np.abs(ref_s).max(1))),
        "p_value": [fuse.p_value, float(ref_p)]}
    out["gmmn_runs_s"], out["gmmn_runs_cpu_s"] = times, cpu
    return out


# --- memory -----------------------------------------------------------------------------------

_CHILD = """
import os, sys, torch
sys.path.insert(0, {src!r})
torch.set_num_threads(1)
from gmmn.mmd import two_sample_test
g = torch.Generator().manual_seed(0)
x = torch.randn({n}, {d}, generator=g, dtype=torch.float64)
y = torch.randn({n}, {d}, generator=g, dtype=torch.float64)
r = two_sample_test(x, y, method={method!r}, **{kw!r})
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(int(peak) * 1024, r.reject, r.p_value)
"""


def _peak_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(ln for ln in fh if ln.startswith("VmHWM")).split()[1]) * 1024


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) the process has used, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(n: int, d: int, method: str, kw: dict, limit: float | None) -> dict:
    """Peak resident memory of one test in a fresh interpreter: to completion, or for its
    first ``limit`` CPU seconds (CPU, not wall: on a loaded machine the wall clock says little
    about how far the child got; then the child, started here, is stopped by its pid)."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    code = _CHILD.format(src=src, n=n, d=d, method=method, kw=kw)
    env = dict(os.environ)
    t = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env=env)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, _peak_of(child.pid))
            used = _cpu_of(child.pid)
        except (OSError, StopIteration):
            used = 0.0
        if limit is not None and used > limit:
            child.kill()
            child.wait()
            return {"method": method, "counts": kw, "peak_gib": peak / 2**30,
                    "cpu_seconds": used, "seconds": time.perf_counter() - t,
                    "completed": False}
        time.sleep(0.2)
    line = child.stdout.read().split()
    return {"method": method, "counts": kw, "peak_gib": int(line[0]) / 2**30,
            "seconds": time.perf_counter() - t, "completed": True,
            "reject": line[1] == "True"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--d", type=int, default=10)
    p.add_argument("--memory-n", type=int, default=20000)
    p.add_argument("--full-seconds", type=float, default=60.0, help="CPU seconds")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-reduced", action="store_true",
                   help="memory: only the full counts' first --full-seconds seconds")
    p.add_argument("--out", default=str(OUT / "benchmark.json"))
    args = p.parse_args()
    report = {}
    if not args.skip_speed:
        report["speed"] = speed(args.n, args.d)
        print(json.dumps(report["speed"], indent=2), flush=True)
    if not args.skip_memory:
        runs = [("agg", {"permutations": 400, "level_permutations": 20}, None),
                ("fuse", {"permutations": 100}, None)] * (not args.skip_reduced) + [
                ("agg", {}, args.full_seconds), ("fuse", {}, args.full_seconds)]
        report["memory"] = []
        for method, kw, limit in runs:
            report["memory"].append(memory(args.memory_n, args.d, method, kw, limit))
            print(json.dumps(report["memory"][-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
