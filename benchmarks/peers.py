"""gmmn's MMD core against peer libraries, timed side by side in one run.

    python benchmarks/peers.py [--quick] [--cases loss1000,perm500] [--rounds 3]
                               [--peers alibi,hyppo] [--full frouros] [--slow-after 30]
                               [--memory-limit-gib 16] [--device cpu] [--json OUT]

Cases (issue 15; results and the machine in docs/benchmarks.md):

  loss1000 / loss4000  MMD^2 forward + backward, n = m = 1000 (4000), d = 784, the paper's six
                       MNIST scales (standard deviations sqrt(2, 5, 10, 20, 40, 80)), float32.
  perm2000             permutation test, n = m = 2000, d = 784, 1000 permutations.
  perm500              permutation test, n = m = 500, d = 10, 1000 permutations.

Each round times gmmn, then every peer, in that order, in this one process; the report gives
per-contender medians over rounds and ratio = peer time / gmmn time (> 1: gmmn is faster).
A peer whose full run would take more than ``--slow-after`` seconds (judged from a 10-
permutation probe) is timed at 10 and 20 permutations instead and extrapolated linearly to
the full count, t(P) = t(10) + (P - 10) (t(20) - t(10)) / 10, in the first round only; the
output marks such rows "extrapolated" (``--full NAME`` never extrapolates a peer). A peer
that runs out of memory (``--memory-limit-gib`` caps the address space, so a huge request
fails here instead of reaching the OOM killer) is reported as such.

Every contender prints its exact call, dtype and estimator, and the statistic it returned;
each statistic is checked against gmmn's (or a hand-written reference) after converting
between estimators: biased V-statistic vs unbiased U-statistic, GeomLoss's 1/2 factor,
torchdrift's kept diagonal. Peers are imported lazily: a missing one prints
"not installed (pip install 'gmmn[bench]')" and the run goes on.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import json
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gmmn.mmd import mmd2, paper_sigmas, two_sample_test  # noqa: E402

SIGMAS = paper_sigmas("mnist")
MISSING = "not installed (pip install 'gmmn[bench]')"
PROBE = (10, 20)  # permutation counts of the two-point extrapolation
# Collect garbage before each timed call, so one contender's freed cycles are not collected
# on the next one's clock; it costs ~0.5 s with torch loaded, so --quick skips it.
COLLECT = {"before_each_call": True}


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "loss" or "perm"
    n: int
    d: int
    permutations: int = 0


CASES = {
    "loss1000": Case("loss1000", "loss", 1000, 784),
    "loss4000": Case("loss4000", "loss", 4000, 784),
    "perm2000": Case("perm2000", "perm", 2000, 784, 1000),
    "perm500": Case("perm500", "perm", 500, 10, 1000),
}
QUICK = {
    "loss1000": Case("loss1000", "loss", 64, 32),
    "loss4000": Case("loss4000", "loss", 128, 32),
    "perm2000": Case("perm2000", "perm", 80, 32, 40),
    "perm500": Case("perm500", "perm", 60, 4, 40),
}


@dataclass
class Contender:
    """One library's way of computing a case; ``run(P)`` returns (statistic, p-value)."""

    name: str
    modules: tuple[str, ...]  # what must import; the first one's version is reported
    call: str
    dtype: str
    estimator: str
    run: Callable[[int], tuple[float, float | None]] | None = None
    status: str = "ok"
    times: list[float] = field(default_factory=list)
    statistic: float | None = None
    p_value: float | None = None
    extrapolated: bool = False
    note: str = ""


# ---------------------------------------------------------------- pure helpers (tested)

def peer_missing(modules: tuple[str, ...]) -> str | None:
    """None if every module imports, else the message to print instead of the peer's row."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            return MISSING
    return None


def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cdist_mmd2(x: torch.Tensor, y: torch.Tensor, sigmas: list[float]) -> torch.Tensor:
    """Biased MMD^2 written by hand in plain torch: cat, cdist, one exp per scale, block means."""
    n = x.shape[0]
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).pow(2)  # (N, N)
    k = sum(torch.exp(d2 / (-2 * s * s)) for s in sigmas)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """V-statistic energy distance 2 E|x-y| - E|x-x'| - E|y-y'| (a reference for energy tests)."""
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean()
                 - torch.cdist(y, y).mean())


def extrapolate(t_small: float, p_small: int, t_large: float, p_large: int, target: int) -> float:
    """Linear fit t(P) = a + b P through two timed permutation counts, evaluated at target."""
    slope = max(t_large - t_small, 0.0) / (p_large - p_small)
    return t_small + (target - p_small) * slope


def relative_gap(value: float, reference: float) -> float:
    return abs(value - reference) / max(abs(reference), 1e-300)


def agrees(value: float, reference: float, *, kernel_scale: float, rtol: float = 1e-4,
           atol: float = 1e-6) -> bool:
    """Equal to rtol, or to atol x the largest kernel value (float32 rounding of the kernel
    sums, which matters when MMD^2 is a small difference of numbers near kernel_scale)."""
    gap = abs(value - reference)
    return gap <= rtol * abs(reference) or gap <= atol * kernel_scale


# ---------------------------------------------------------------- contenders

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mixture_kernel(x, y, blur=None, use_keops=False, ranges=None):
    """The six-scale Gaussian mixture as a GeomLoss kernel (blur is ignored: scales fixed)."""
    if use_keops:
        from pykeops.torch import LazyTensor

        xi = LazyTensor(x[..., :, None, :])
        yj = LazyTensor(y[..., None, :, :])
        d2 = ((xi - yj) ** 2).sum(-1)
        k = (d2 / (-2 * SIGMAS[0] ** 2)).exp()
        for s in SIGMAS[1:]:
            k = k + (d2 / (-2 * s * s)).exp()
        return k
    # (B, N, M) squared distances, as GeomLoss's own tensorized kernels compute them
    d2 = ((x * x).sum(-1, keepdim=True) - 2 * x @ y.transpose(-1, -2)
          + (y * y).sum(-1).unsqueeze(-2))
    return sum(torch.exp(d2 / (-2 * s * s)) for s in SIGMAS)


def loss_contenders(device: torch.device) -> list[Contender]:
    sig = "paper_sigmas('mnist')"
    rows = [
        Contender("gmmn", ("gmmn",), f"gmmn.mmd.mmd2(x, y, sigmas={sig}).backward()",
                  "float32", "biased (V)"),
        Contender("GeomLoss mixture (tensorized)", ("geomloss",),
                  "SamplesLoss('gaussian', kernel=<6-scale mixture>, backend='tensorized')"
                  "(x, y).backward()", "float32", "biased / 2"),
        Contender("torch cdist by hand", ("torch",),
                  "cat, cdist(z, z)**2, one exp per scale, block means; .backward()",
                  "float32", "biased (V)"),
        Contender("alibi-detect mmd2 per scale", ("alibi_detect.utils.pytorch",),
                  "sum(mmd2(x, y, GaussianRBF(sigma=tensor([s]))) for s in sigmas)"
                  ".backward()", "float32", "unbiased (U)"),
        Contender("GeomLoss per scale (tensorized)", ("geomloss",),
                  "sum(SamplesLoss('gaussian', blur=s, backend='tensorized')(x, y) "
                  "for s in sigmas).backward()", "float32", "biased / 2"),
        Contender("GeomLoss mixture (KeOps online)", ("geomloss", "pykeops"),
                  "SamplesLoss('gaussian', kernel=<6-scale LazyTensor mixture>, "
                  "backend='online')(x, y).backward()", "float32", "biased / 2"),
    ]
    return rows


def bind_loss(rows: list[Contender], x: torch.Tensor, y: torch.Tensor,
              device: torch.device) -> None:
    """Attach a run function to each available loss contender."""
    def wrap(compute):
        def run(_permutations: int) -> tuple[float, None]:
            out = compute()
            out.backward()
            x.grad = None
            _sync(device)
            return float(out.detach()), None
        return run

    for row in rows:
        if row.status != "ok":  # left out by --peers: not even imported
            continue
        row.status = peer_missing(row.modules) or "ok"
        if row.status != "ok":
            continue
        if row.name == "gmmn":
            row.run = wrap(lambda: mmd2(x, y, sigmas=SIGMAS))
        elif row.name == "torch cdist by hand":
            row.run = wrap(lambda: cdist_mmd2(x, y, SIGMAS))
        elif row.name.startswith("GeomLoss mixture"):
            from geomloss import SamplesLoss

            backend = "online" if "KeOps" in row.name else "tensorized"
            fn = SamplesLoss("gaussian", kernel=_mixture_kernel, backend=backend)
            row.run = wrap(lambda fn=fn: fn(x, y))
        elif row.name == "GeomLoss per scale (tensorized)":
            from geomloss import SamplesLoss

            fns = [SamplesLoss("gaussian", blur=s, backend="tensorized") for s in SIGMAS]
            row.run = wrap(lambda fns=fns: sum(fn(x, y) for fn in fns))
        elif row.name == "alibi-detect mmd2 per scale":
            from alibi_detect.utils.pytorch import GaussianRBF
            from alibi_detect.utils.pytorch.distance import mmd2 as alibi_mmd2

            kernels = [GaussianRBF(sigma=torch.tensor([s], device=device)).to(device)
                       for s in SIGMAS]
            row.run = wrap(lambda ks=kernels: sum(alibi_mmd2(x, y, k) for k in ks))


def perm_contenders() -> list[Contender]:
    return [
        Contender("gmmn", ("gmmn",),
                  "gmmn.mmd.two_sample_test(x, y, sigmas=[s], permutations=P, seed=0)",
                  "float64 (always)", "unbiased (U)"),
        Contender("alibi-detect MMDDrift", ("alibi_detect.cd",),
                  "MMDDrift(x, backend='pytorch', sigma=np.array([s]), "
                  "configure_kernel_from_x_ref=False, n_permutations=P).predict(y)",
                  "float32", "unbiased (U)"),
        Contender("torchdrift kernel MMD", ("torchdrift",),
                  "torchdrift.detectors.mmd.kernel_mmd(x, y, n_perm=P, "
                  "kernel=GaussianKernel(lengthscale=s))", "float32",
                  "U normalisation, diagonal kept (= U + 1/(n-1) + 1/(m-1))"),
        Contender("hyppo MMD", ("hyppo.ksample",),
                  "hyppo.ksample.MMD(compute_kernel='gaussian', gamma=1/(2 s^2))"
                  ".test(x, y, reps=P, workers=1, auto=False, random_state=0)",
                  "float64", "HSIC-based (unbiased HSIC, rescaled)"),
        Contender("hyppo Energy", ("hyppo.ksample",),
                  "hyppo.ksample.Energy().test(x, y, reps=P, workers=1, auto=False, "
                  "random_state=0)", "float64", "energy distance (HSIC-based)"),
        Contender("frouros MMD", ("frouros",),
                  "frouros MMD(kernel=partial(rbf_kernel, sigma=s), callbacks="
                  "[PermutationTestDistanceBased(num_permutations=P, random_state=0)])"
                  ".fit(x); .compare(y)", "float64", "unbiased (U)"),
        Contender("dcor energy test", ("dcor",),
                  "dcor.homogeneity.energy_test(x, y, num_resamples=P, random_state=0)",
                  "float64", "energy distance V-statistic x n m / (n + m)"),
    ]


def bind_perm(rows: list[Contender], x64: np.ndarray, y64: np.ndarray, sigma: float,
              device: torch.device) -> None:
    """Attach a run function to each available permutation-test contender."""
    x32, y32 = x64.astype(np.float32), y64.astype(np.float32)
    tx, ty = torch.from_numpy(x64).to(device), torch.from_numpy(y64).to(device)
    tx32, ty32 = tx.float(), ty.float()
    for row in rows:
        if row.status != "ok":  # left out by --peers: not even imported
            continue
        row.status = peer_missing(row.modules) or "ok"
        if row.status != "ok":
            continue
        if row.name == "gmmn":
            def run(p):
                res = two_sample_test(tx, ty, sigmas=[sigma], permutations=p, seed=0)
                return res.statistic, res.p_value
        elif row.name == "alibi-detect MMDDrift":
            from alibi_detect.cd import MMDDrift

            def run(p):
                det = MMDDrift(x32, backend="pytorch", sigma=np.array([sigma]),
                               configure_kernel_from_x_ref=False, n_permutations=p,
                               device=device.type)
                data = det.predict(y32)["data"]
                return float(data["distance"]), float(data["p_val"])
        elif row.name == "torchdrift kernel MMD":
            from torchdrift.detectors.mmd import GaussianKernel, kernel_mmd

            def run(p):
                stat, pv = kernel_mmd(tx32, ty32, n_perm=p,
                                      kernel=GaussianKernel(lengthscale=sigma))
                return float(stat), float(pv)
        elif row.name == "hyppo MMD":
            from hyppo.ksample import MMD

            def run(p):
                out = MMD(compute_kernel="gaussian", gamma=1 / (2 * sigma**2)).test(
                    x64, y64, reps=p, workers=1, auto=False, random_state=0)
                return float(out[0]), float(out[1])
        elif row.name == "hyppo Energy":
            from hyppo.ksample import Energy

            def run(p):
                out = Energy().test(x64, y64, reps=p, workers=1, auto=False, random_state=0)
                return float(out[0]), float(out[1])
        elif row.name == "frouros MMD":
            from functools import partial

            from frouros.callbacks import PermutationTestDistanceBased
            from frouros.detectors.data_drift import MMD as FrourosMMD
            from frouros.utils.kernels import rbf_kernel

            def run(p):
                det = FrourosMMD(kernel=partial(rbf_kernel, sigma=sigma),
                                 callbacks=[PermutationTestDistanceBased(
                                     num_permutations=p, random_state=0, name="perm")])
                det.fit(X=x64)
                result, logs = det.compare(X=y64)
                return float(result.distance), float(logs["perm"]["p_value"])
        elif row.name == "dcor energy test":
            import dcor

            def run(p):
                out = dcor.homogeneity.energy_test(x64, y64, num_resamples=p, random_state=0)
                return float(out.statistic), float(out.pvalue)
        row.run = run


# ---------------------------------------------------------------- timing

def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def timed(row: Contender, permutations: int, device: torch.device) -> float | None:
    """Seconds for one call; records statistic and p-value; None (status set) on failure."""
    if COLLECT["before_each_call"]:
        gc.collect()
    _sync(device)
    start = time.perf_counter()
    try:
        stat, p = row.run(permutations)
    except (MemoryError, torch.cuda.OutOfMemoryError) as exc:
        row.status = f"out of memory ({first_line(exc)[:120]})"
        return None
    except Exception as exc:  # noqa: BLE001 - a peer's own failure is a result to report
        row.status = f"failed: {type(exc).__name__}: {first_line(exc)[:160]}"
        return None
    seconds = time.perf_counter() - start
    row.statistic, row.p_value = stat, p
    return seconds


def time_case(case: Case, rows: list[Contender], rounds: int, slow_after: float,
              device: torch.device, log: Callable[[str], None],
              prior: dict[str, tuple[int, float]], full_only: tuple[str, ...] = ()) -> None:
    """Alternating rounds: gmmn, then every peer; slow peers extrapolated in round 1 only.

    ``prior`` maps a loss contender to (n, median seconds) from a smaller loss case: one whose
    time there, scaled by (n / n0)^2, exceeds 10 x slow_after is not run but extrapolated.
    """
    full = case.permutations or 1
    once: set[str] = set()  # contenders timed in the first round only
    for row in rows:  # warm-up (thread pools, allocator, KeOps compilation) and probe
        if row.status != "ok":
            continue
        if case.kind == "loss" and row.name in prior and row.name != "gmmn":
            n0, t0 = prior[row.name]
            guess = t0 * (case.n / n0) ** 2
            if guess > 10 * slow_after:
                row.times, row.extrapolated = [guess], True
                row.note = (f"not run: extrapolated as (n / {n0})^2 x its {t0:.2f} s at "
                            f"n = {n0}")
                continue
        probe = min(PROBE[0], full) if case.kind == "perm" else 1
        t = timed(row, probe, device)
        if t is None:
            log(f"    {row.name}: {row.status}")
            continue
        never = any(row.name.lower().startswith(f) for f in full_only)
        if (case.kind == "perm" and row.name != "gmmn" and not never
                and t * full / probe > slow_after):
            row.extrapolated = True
        elif case.kind == "loss" and t > slow_after:
            once.add(row.name)
            row.note = f"timed in round 1 only (one call took over {slow_after:g} s)"
    for r in range(rounds):
        for row in rows:
            if row.status != "ok" or (r > 0 and (row.extrapolated or row.name in once)):
                continue
            if row.extrapolated and case.kind == "loss":
                continue
            if row.extrapolated:
                t_small = timed(row, PROBE[0], device)
                t_large = None if t_small is None else timed(row, PROBE[1], device)
                if t_large is None:
                    continue
                t = extrapolate(t_small, PROBE[0], t_large, PROBE[1], full)
                row.note = (f"extrapolated linearly from {PROBE[0]} ({t_small:.2f} s) and "
                            f"{PROBE[1]} ({t_large:.2f} s) permutations to {full}")
            else:
                t = timed(row, full, device)
                if t is None:
                    continue
            row.times.append(t)
        log(f"    round {r + 1}/{rounds} done")


# ---------------------------------------------------------------- statistics check

def check_statistics(case: Case, rows: list[Contender], x: torch.Tensor,
                     y: torch.Tensor, sigma: float | None) -> list[str]:
    """Convert each statistic to gmmn's estimator (or a reference) and compare."""
    lines = []
    n, m = x.shape[0], y.shape[0]
    xd, yd = x.detach().double().cpu(), y.detach().double().cpu()
    if case.kind == "loss":
        biased = float(mmd2(xd, yd, sigmas=SIGMAS))
        unbiased = float(mmd2(xd, yd, sigmas=SIGMAS, estimator="unbiased"))
        refs = {"biased (V)": (biased, 1.0, "gmmn float64 biased"),
                "biased / 2": (biased, 2.0, "gmmn float64 biased, GeomLoss value x 2"),
                "unbiased (U)": (unbiased, 1.0, "gmmn float64 unbiased")}
        scale = float(len(SIGMAS))
    else:
        unbiased = float(mmd2(xd, yd, sigmas=[sigma], estimator="unbiased"))
        biased = float(mmd2(xd, yd, sigmas=[sigma]))
        energy = energy_distance(xd, yd)
        refs = {"unbiased (U)": (unbiased, 1.0, "gmmn float64 unbiased"),
                "U normalisation, diagonal kept (= U + 1/(n-1) + 1/(m-1))":
                    (unbiased + 1 / (n - 1) + 1 / (m - 1), 1.0,
                     "gmmn unbiased + 1/(n-1) + 1/(m-1)"),
                "energy distance V-statistic x n m / (n + m)":
                    (energy * n * m / (n + m), 1.0, "hand-written cdist energy x n m/(n+m)"),
                }
        scale = 1.0
    for row in rows:
        if row.statistic is None:
            continue
        if row.estimator in refs:
            ref, factor, what = refs[row.estimator]
            value = row.statistic * factor
            ok = agrees(value, ref, kernel_scale=scale if row.name != "dcor energy test"
                        else abs(ref))
            lines.append(f"  {row.name:<34} {row.statistic:+.6e}  vs {what} {ref:+.6e}: "
                         f"relative gap {relative_gap(value, ref):.1e}, absolute "
                         f"{abs(value - ref):.1e} ({'agrees' if ok else 'DISAGREES'})")
        elif row.name == "hyppo MMD":
            lines.append(f"  {row.name:<34} {row.statistic:+.6e}  (HSIC of the pooled sample "
                         f"against a label kernel: no fixed conversion to gmmn's biased "
                         f"{biased:+.6e} or unbiased {unbiased:+.6e}; compare p-values)")
        elif row.name == "hyppo Energy":
            ed = energy * n * m / (n + m)
            lines.append(f"  {row.name:<34} {row.statistic:+.6e}  (HSIC-based, no fixed "
                         f"conversion; energy V-statistic {energy:+.6e}, x n m/(n+m) "
                         f"{ed:+.6e}; compare p-values)")
    return lines


# ---------------------------------------------------------------- driver

def make_data(case: Case, device: torch.device):
    gen = torch.Generator().manual_seed(0)  # drawn on the CPU, then moved: same data anywhere
    if case.kind == "loss":
        x = torch.rand(case.n, case.d, generator=gen).to(device).requires_grad_()
        y = (torch.rand(case.n, case.d, generator=gen) * 0.9).to(device)
        return x, y
    x = torch.randn(case.n, case.d, generator=gen, dtype=torch.float64)
    y = torch.randn(case.n, case.d, generator=gen, dtype=torch.float64) + 0.05
    return x, y


def leave_out(rows: list[Contender], only: tuple[str, ...]) -> list[Contender]:
    """Mark the peers not named in ``only`` (name prefixes) as left out; gmmn always stays."""
    for row in rows[1:]:
        if only and not any(row.name.lower().startswith(o) for o in only):
            row.status = "left out (--peers)"
    return rows


def run_case(case: Case, rounds: int, slow_after: float, device: torch.device,
             log: Callable[[str], None], prior: dict[str, tuple[int, float]],
             only: tuple[str, ...] = (), full_only: tuple[str, ...] = ()) -> dict:
    x, y = make_data(case, device)
    sigma = None
    if case.kind == "loss":
        rows = leave_out(loss_contenders(device), only)
        bind_loss(rows, x, y, device)
        what = (f"MMD^2 forward + backward, n = m = {case.n}, d = {case.d}, six scales "
                f"sqrt(2, 5, 10, 20, 40, 80), float32")
    else:
        from gmmn.mmd import median_heuristic

        sigma = median_heuristic(x, y)
        rows = leave_out(perm_contenders(), only)
        bind_perm(rows, x.numpy(), y.numpy(), sigma, device)
        what = (f"permutation test, n = m = {case.n}, d = {case.d}, {case.permutations} "
                f"permutations, one Gaussian scale sigma = {sigma:.4f} (gmmn median "
                f"heuristic, passed to every library)")
    log(f"\n== {case.name}: {what}; device {device}")
    time_case(case, rows, rounds, slow_after, device, log, prior, full_only)
    gm = rows[0]
    base = statistics.median(gm.times) if gm.times else float("nan")
    log(f"  {'contender':<34} {'median s':>9} {'ratio':>7}  rounds  note")
    out_rows = []
    for row in rows:
        med = statistics.median(row.times) if row.times else None
        ratio = med / base if med is not None else None
        if row.status != "ok" or med is None:
            log(f"  {row.name:<34} {'-':>9} {'-':>7}  {row.status}")
        else:
            log(f"  {row.name:<34} {med:>9.3f} {ratio:>7.2f}  {len(row.times):>6}  "
                f"{row.note}")
        if case.kind == "loss" and med is not None and not row.extrapolated:
            prior[row.name] = (case.n, med)
        out_rows.append({"name": row.name, "call": row.call, "dtype": row.dtype,
                         "estimator": row.estimator, "status": row.status,
                         "times_s": row.times, "median_s": med, "ratio": ratio,
                         "statistic": row.statistic, "p_value": row.p_value,
                         "extrapolated": row.extrapolated, "note": row.note})
    log("  calls, dtypes, estimators, p-values:")
    for row in rows:
        p = "" if row.p_value is None else f", p = {row.p_value:.4f}"
        log(f"    {row.name}: {row.call}  [{row.dtype}; {row.estimator}{p}]")
    log("  statistics (converted to a common estimator where they differ):")
    for line in check_statistics(case, rows, x, y, sigma):
        log(line)
    peers = [r for r in out_rows if r["name"] != "gmmn" and r["ratio"] is not None]
    slowest_ok = all(r["ratio"] >= 1 for r in peers)
    fastest = min(peers, key=lambda r: r["ratio"]) if peers else None
    if fastest:
        log(f"  fastest peer: {fastest['name']} at {fastest['ratio']:.2f}x gmmn's time; "
            f"ratio >= 1 for every peer: {'met' if slowest_ok else 'NOT met'}")
    return {"case": case.__dict__, "sigma": sigma, "gmmn_median_s": base, "rows": out_rows}


def environment(device: torch.device) -> dict:
    dists = ["torch", "numpy", "geomloss", "pykeops", "alibi-detect", "torchdrift", "hyppo",
             "frouros", "dcor", "scikit-learn", "scipy"]
    env = {"python": platform.python_version(), "device": str(device),
           "torch_threads": torch.get_num_threads(),
           "versions": {d: version_of(d) for d in dists}}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, two rounds (smoke)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from {','.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (3)")
    parser.add_argument("--slow-after", type=float, default=30.0,
                        help="seconds above which a peer's permutation test is extrapolated")
    parser.add_argument("--peers", default="",
                        help="comma-separated name prefixes of the peers to time (default: all)")
    parser.add_argument("--full", default="",
                        help="name prefixes of peers never extrapolated (always P permutations)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:k] (torch peers only)")
    parser.add_argument("--memory-limit-gib", type=float, default=0.0,
                        help="cap this process's address space (RLIMIT_AS); 0: no cap")
    parser.add_argument("--json", type=Path, default=None, help="write results here too")
    args = parser.parse_args(argv)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    rounds = args.rounds or (2 if args.quick else 3)
    COLLECT["before_each_call"] = not args.quick
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no CUDA device")

    env = environment(device)
    print(f"python {env['python']}, torch threads {env['torch_threads']}, device {device}"
          + (f" ({env['gpu']})" if "gpu" in env else ""))
    for dist, ver in env["versions"].items():
        print(f"  {dist:<13} {ver if ver != 'not installed' else MISSING}")
    if device.type == "cuda":
        print("  (hyppo, frouros and dcor are NumPy libraries: they run on the CPU)")
    print(f"{rounds} alternating rounds; slow permutation tests extrapolated above "
          f"{args.slow_after:g} s")
    warnings.filterwarnings("ignore", message="The number of replications is low")
    if args.memory_limit_gib:
        # A peer that asks for more (dcor's energy test wants ~94 GiB at n = 2000, d = 784)
        # gets a MemoryError, reported as out of memory, instead of pushing the machine
        # into swap or the OOM killer.
        limit = int(args.memory_limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    table = QUICK if args.quick else CASES
    prior: dict[str, tuple[int, float]] = {}
    only = tuple(p.strip().lower() for p in args.peers.split(",") if p.strip())
    full_only = tuple(p.strip().lower() for p in args.full.split(",") if p.strip())
    results = [run_case(table[name], rounds, args.slow_after, device,
                        lambda s: print(s, flush=True), prior, only, full_only)
               for name in names]
    if args.json:
        from gmmn.files import atomic_write

        payload = json.dumps({"environment": env, "rounds": rounds, "quick": args.quick,
                              "results": results}, indent=1).encode()
        atomic_write(args.json, lambda f: f.write(payload))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
