"""Kernel selection for the two-sample test: the options of each method, checked, and the runs.

Private helper of :mod:`gmmn.mmd`; imports nothing from the package but its sibling modules.
:func:`gmmn.mmd.two_sample_test` calls :func:`run` for ``method`` "agg", "fuse" and "split"
and turns a :class:`BadInput` into its ``MMDError`` (this module cannot import the package:
the import graph has no cycles). The median method stays in ``two_sample_test`` itself.

Defaults are the papers': MMDAgg with gaussian and laplace kernels, 10 bandwidths each,
uniform weights, B1 = B2 = 2000, B3 = 50 and the wild bootstrap when n = m; MMD-FUSE with the
same families, 10 bandwidths each and 2000 permutations; split with 100 gaussian bandwidths,
half of each sample to choose and 2000 permutations on the other half.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from . import _agg, _fuse, _split
from ._multi import (
    FAMILIES,
    TIE,
    Collection,
    KernelChoice,
    PairedSource,
    PooledSource,
    min_budget,
    permutation_p_value,
    plan,
    sign_chunks,
    signed_weights,
    statistics,
    u_statistics,
)
from ._perm import _member_chunks

METHODS = ("median", "agg", "fuse", "split")
RESAMPLINGS = ("auto", "permutation", "wild bootstrap")

# Options that only some methods read, with the value that means "not given".
_ONLY = {
    "kernels": (("agg", "fuse", "split"), None),
    "bandwidths": (("agg", "fuse", "split"), None),
    "number_bandwidths": (("agg", "fuse", "split"), None),
    "weighting": (("agg",), "uniform"),
    "resampling": (("agg",), "auto"),
    "level_permutations": (("agg",), None),
    "bisection_steps": (("agg",), 50),
    "lambda_multiplier": (("fuse",), 1.0),
    "split_ratio": (("split",), 0.5),
}
_DEFAULTS = {
    "agg": {"kernels": ("laplace", "gaussian"), "number_bandwidths": 10, "permutations": 2000,
            "level_permutations": 2000},
    "fuse": {"kernels": ("laplace", "gaussian"), "number_bandwidths": 10, "permutations": 2000},
    "split": {"kernels": ("gaussian",), "number_bandwidths": 100, "permutations": 2000},
}


class BadInput(ValueError):
    """A bad option of a kernel-selection method; ``two_sample_test`` raises it as MMDError."""


# --- checks --------------------------------------------------------------------------------

def _whole(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def check_method(method) -> str:
    if method not in METHODS:
        raise BadInput(f"unknown method {method!r}; choose one of {list(METHODS)}")
    return method


def level(alpha) -> float:
    """alpha as a float in (0, 1); None means 0.05."""
    if alpha is None:
        return 0.05
    if not _real(alpha) or not 0 < alpha < 1:
        raise BadInput(f"alpha={alpha!r} must be a number strictly between 0 and 1 "
                       "(e.g. 0.05)")
    return float(alpha)


def smallest_count(alpha: float) -> int:
    """The fewest relabellings B for which (1 + 0) / (1 + B) <= alpha."""
    return max(1, math.ceil(1.0 / alpha - 1.0 - 1e-9))


def check_reachable(permutations: int, alpha: float, name: str = "permutations") -> None:
    """A p-value (1 + #) / (1 + B) is at least 1 / (1 + B): refuse a B that cannot reach alpha."""
    if 1.0 / (1 + permutations) > alpha * (1 + 1e-12):
        raise BadInput(f"{name}={permutations} cannot reach alpha={alpha:g}: the smallest "
                       f"p-value is 1/(1 + {permutations}) = {1 / (1 + permutations):.3g}; "
                       f"pass {name} >= {smallest_count(alpha)}")


def check_options(method: str, given: dict) -> None:
    """Refuse an option the chosen method does not read (it would be silently ignored)."""
    for name, value in given.items():
        methods, unset = _ONLY[name]
        if method not in methods and not _same(value, unset):
            raise BadInput(f"{name}= applies to method {' or '.join(map(repr, methods))} "
                           f"only, not {method!r}")


def _same(value, unset) -> bool:
    return value is unset if unset is None else (value is not None and value == unset)


def _count(name: str, value, minimum: int, maximum: int) -> int:
    if not _whole(value):
        raise BadInput(f"{name}={value!r} must be a whole number")
    if value < minimum:
        raise BadInput(f"{name}={value} must be >= {minimum}")
    if value > maximum:
        raise BadInput(f"{name}={value} is more than {maximum:.0e}: pass fewer")
    return int(value)


def _families(kernels) -> tuple[str, ...]:
    names = (kernels,) if isinstance(kernels, str) else tuple(kernels)
    bad = [k for k in names if k not in FAMILIES]
    if not names or bad or len(set(names)) != len(names):
        raise BadInput(f"kernels={kernels!r} must name distinct families out of "
                       f"{sorted(FAMILIES)}")
    return names


def _bandwidths(values) -> tuple[float, ...]:
    try:
        if isinstance(values, (str, bytes)):
            raise TypeError
        vals = tuple(float(v) for v in (values if isinstance(values, Sequence) or
                                        hasattr(values, "__iter__") else [values]))
    except (TypeError, ValueError):
        raise BadInput(f"bandwidths={values!r} is not a list of numbers") from None
    if not vals:
        raise BadInput("bandwidths is empty; pass at least one bandwidth (sigma for "
                       "gaussian, beta for laplace), or None for the paper's collection")
    if not all(math.isfinite(v) and 1e-150 <= v <= 1e150 for v in vals):
        raise BadInput(f"bandwidths {list(vals)} must all be finite and > 0")
    return vals


def _positive(coll: Collection) -> Collection:
    """The generated collection, refused when a bandwidth came out 0 (the quantile rule of
    the papers gives 0 when more than half of the pooled pairs of points coincide)."""
    if not all(math.isfinite(b) and b >= 1e-150 for b in coll.bandwidths):
        raise BadInput("the generated bandwidths are not all positive "
                       f"({min(coll.bandwidths):.3g}): more than half of the pooled pairs of "
                       "points are identical, so the distance quantiles are 0; pass "
                       "bandwidths=[...] (positive numbers) instead")
    return coll


def _generator(seed: int, stream: int) -> torch.Generator:
    """An independent stream of ``seed`` (0: relabellings, 1: bandwidths, 2: split halves)."""
    return torch.Generator().manual_seed(seed ^ (stream << 60))


# --- the runs ------------------------------------------------------------------------------

def run(method: str, x: Tensor, y: Tensor, *, alpha: float, permutations, seed: int,
        budget: int, kernels, bandwidths, number_bandwidths, weighting: str, resampling: str,
        level_permutations, bisection_steps, lambda_multiplier, split_ratio,
        max_permutations: int, check_time) -> dict:
    """The fields of a ``TwoSampleResult`` for ``method`` on float64 x (n, d), y (m, d)."""
    n, m = x.shape[0], y.shape[0]
    least = 4 if method == "split" else 2
    if min(n, m) < least:
        raise BadInput(f"method {method!r} needs at least {least} points in each sample, got "
                       f"n={n}, m={m}")
    opts = _DEFAULTS[method]
    families = _families(opts["kernels"] if kernels is None else kernels)
    count = opts["number_bandwidths"] if number_bandwidths is None else number_bandwidths
    if bandwidths is not None:
        if number_bandwidths is not None:
            raise BadInput("pass bandwidths= or number_bandwidths=, not both")
        given = _bandwidths(bandwidths)
        coll = Collection(tuple(f for f in families for _ in given), given * len(families))
    else:
        coll = None
        if not _whole(count) or count < 2:
            raise BadInput(f"number_bandwidths={count!r}: the collection needs a whole number "
                           ">= 2 of bandwidths per kernel (pass bandwidths=[...] for fewer)")
    perms = _count("permutations", opts["permutations"] if permutations is None else
                   permutations, 1, max_permutations)
    common = {"alpha": alpha, "seed": seed, "budget": budget, "check_time": check_time}
    if method == "agg":
        if weighting not in _agg.WEIGHTINGS:
            raise BadInput(f"unknown weighting {weighting!r}; choose one of "
                           f"{list(_agg.WEIGHTINGS)}")
        if resampling not in RESAMPLINGS:
            raise BadInput(f"unknown resampling {resampling!r}; choose one of "
                           f"{list(RESAMPLINGS)}")
        if resampling == "wild bootstrap" and n != m:
            raise BadInput(f"the wild bootstrap needs n = m, got n={n}, m={m}; use "
                           "resampling='permutation'")
        level_perms = _count("level_permutations", opts["level_permutations"]
                             if level_permutations is None else level_permutations, 1,
                             max_permutations)
        steps = _count("bisection_steps", bisection_steps, 1, 10_000)
        return _run_agg(x, y, coll, families, count, weighting, resampling, perms,
                        level_perms, steps, **common)
    if method == "fuse":
        if not _real(lambda_multiplier) or lambda_multiplier <= 0:
            raise BadInput(f"lambda_multiplier={lambda_multiplier!r} must be a finite "
                           "number > 0")
        check_reachable(perms, alpha)
        return _run_fuse(x, y, coll, families, count, perms, float(lambda_multiplier),
                         **common)
    if not _real(split_ratio) or not 0 < split_ratio < 1:
        raise BadInput(f"split_ratio={split_ratio!r} must be strictly between 0 and 1")
    if min(int(n * split_ratio), int(m * split_ratio)) < 2 or \
            min(n - int(n * split_ratio), m - int(m * split_ratio)) < 2:
        raise BadInput(f"split_ratio={split_ratio} leaves fewer than 2 points of n={n}, m={m} "
                       "in a half; use more points or a ratio nearer 0.5")
    check_reachable(perms, alpha)
    return _run_split(x, y, coll, families, count, perms, float(split_ratio), **common)


def _check_budget(budget: int, rows: int, kernels: int, vectors: int) -> None:
    least = min_budget(rows, kernels, vectors)
    if budget < least:
        raise BadInput(f"memory_budget={budget} bytes cannot hold one tile of {min(rows, 8)} "
                       f"rows with the statistics of {kernels} kernels x {vectors} "
                       f"relabellings; pass at least {least} bytes")


def _permutation_stats(z: Tensor, n: int, coll: Collection, perms: int, gen: torch.Generator,
                       budget: int, check_time) -> tuple[Tensor, Tensor]:
    """(L, 1 + perms) complete U-statistics, observed first, and (L,) sum_{i!=j} k^2."""
    rows, m = z.shape[0], z.shape[0] - n
    _check_budget(budget, rows, len(coll), perms + 1)
    how = plan(rows, len(coll), perms + 1, budget)
    a, b, _ = signed_weights(n, m)
    chunks = _member_chunks(rows, n, perms, gen, how.chunk, how.draw, "cpu")
    stats, sums = statistics(PooledSource(z), coll, chunks, (float(a), float(b)), how.block,
                             perms + 1, lambda f, s, sm: u_statistics(f, s, sm, n, m),
                             check_time, squares=True, height=how.height)
    return stats, sums.sumsq


def _wild_stats(x: Tensor, y: Tensor, coll: Collection, draws: int, gen: torch.Generator,
                budget: int, check_time) -> Tensor:
    """(L, 1 + draws) wild-bootstrap statistics (1/(n(n-1))) e^T H e, observed (e = 1) first."""
    n = x.shape[0]
    _check_budget(budget, n, len(coll), draws + 1)
    how = plan(n, len(coll), draws + 1, budget)
    chunks = sign_chunks(n, draws, gen, how.chunk, how.draw)
    stats, _ = statistics(PairedSource(x, y), coll, chunks, (1.0, 1.0), how.block, draws + 1,
                          lambda f, s, sm: f / (n * (n - 1)), check_time, height=how.height)
    return stats


def _run_agg(x, y, coll, families, count, weighting, resampling, b1, b2, steps, *, alpha,
             seed, budget, check_time) -> dict:
    n, m = x.shape[0], y.shape[0]
    z = torch.cat([x, y])
    if coll is None:
        coll = _positive(_agg.collection(z, families, count, _generator(seed, 1)))
    per = len(coll) // len(families)
    w = torch.tensor(_agg.weights(per, weighting) * len(families), dtype=torch.float64)
    w = w / len(families)
    least = math.ceil(1.0 / (alpha * float(w.max())) - 1.0 - 1e-9)
    if b1 < least:
        raise BadInput(f"permutations={b1} cannot reach alpha={alpha:g}: with {len(coll)} "
                       f"kernels (largest weight {float(w.max()):.3g}) a single test must "
                       f"reach alpha * w = {alpha * float(w.max()):.3g}, and the smallest "
                       f"p-value is 1/(1 + {b1}); pass permutations >= {least}")
    if b2 * alpha < 1:
        raise BadInput(f"level_permutations={b2} cannot estimate a rejection rate of "
                       f"alpha={alpha:g}; pass level_permutations >= {math.ceil(1 / alpha)}")
    wild = resampling == "wild bootstrap" or (resampling == "auto" and n == m)
    gen = _generator(seed, 0)
    if wild:
        stats = _wild_stats(x, y, coll, b1 + b2, gen, budget, check_time)
    else:
        stats, _ = _permutation_stats(z, n, coll, b1 + b2, gen, budget, check_time)
    dec = _agg.decide(stats, b1, w, alpha, steps)
    kernels = tuple(KernelChoice(f, bw, float(stats[k, 0]), float(dec.p_values[k]),
                                 float(dec.levels[k]))
                    for k, (f, bw) in enumerate(zip(coll.families, coll.bandwidths,
                                                    strict=True)))
    # The most significant kernel: the smallest p-value relative to its level.
    lead = int(torch.argmin(dec.p_values / dec.levels.clamp(min=1e-300)))
    return _fields("agg", coll, families, n, m, alpha, statistic=float(stats[lead, 0]),
                   p_value=None, reject=dec.reject, permutations=b1, kernels=kernels,
                   decided_by=tuple(c for c, r in zip(kernels, dec.rejects.tolist(),
                                                      strict=True) if r),
                   estimator="paired" if wild else "unbiased",
                   resampling="wild bootstrap" if wild else "permutation",
                   level_permutations=b2, level_correction=dec.u)


def _run_fuse(x, y, coll, families, count, perms, multiplier, *, alpha, seed, budget,
              check_time) -> dict:
    n, m = x.shape[0], y.shape[0]
    z = torch.cat([x, y])
    if coll is None:
        coll = _positive(_fuse.collection(z, families, count, _generator(seed, 1)))
    mmd2, sumsq = _permutation_stats(z, n, coll, perms, _generator(seed, 0), budget,
                                     check_time)
    small = min(n, m)
    stats = _fuse.normalised(mmd2, sumsq, small, multiplier)  # (L, 1 + B)
    fused = _fuse.fuse(stats)
    p = _fuse.p_value(fused)
    share = torch.softmax(stats[:, 0], dim=0)
    kernels = tuple(KernelChoice(f, bw, float(stats[k, 0]), weight=float(share[k]))
                    for k, (f, bw) in enumerate(zip(coll.families, coll.bandwidths,
                                                    strict=True)))
    lam = multiplier * math.sqrt(small * (small - 1))
    return _fields("fuse", coll, families, n, m, alpha, statistic=float(fused[0]) / lam,
                   p_value=p, reject=p <= alpha, permutations=perms, kernels=kernels,
                   decided_by=(kernels[int(torch.argmax(share))],), estimator="unbiased",
                   resampling="permutation")


def _run_split(x, y, coll, families, count, perms, ratio, *, alpha, seed, budget,
               check_time) -> dict:
    n, m = x.shape[0], y.shape[0]
    gen = _generator(seed, 2)
    x_sel, x_test = _split.halves(x, ratio, gen)
    y_sel, y_test = _split.halves(y, ratio, gen)
    if coll is None:
        coll = _positive(_fuse.collection(torch.cat([x_sel, y_sel]), families, count,
                                          _generator(seed, 1)))
    pairs = min(x_sel.shape[0], y_sel.shape[0])
    _check_budget(budget, pairs, len(coll), 1)
    ratios = _split.criterion(x_sel, y_sel, coll, plan(pairs, len(coll), 1, budget).block)
    best = int(torch.argmax(ratios))
    chosen = Collection((coll.families[best],), (coll.bandwidths[best],))
    z = torch.cat([x_test, y_test])
    stats, _ = _permutation_stats(z, x_test.shape[0], chosen, perms, _generator(seed, 0),
                                  budget, check_time)
    p = permutation_p_value(stats[0], TIE * float(_agg.tie_scale(stats)[0]))
    kernels = tuple(KernelChoice(f, bw, float(r)) for f, bw, r in zip(
        coll.families, coll.bandwidths, ratios.tolist(), strict=True))
    pick = KernelChoice(chosen.families[0], chosen.bandwidths[0], float(stats[0, 0]), p)
    return _fields("split", coll, families, n, m, alpha, statistic=float(stats[0, 0]),
                   p_value=p, reject=p <= alpha, permutations=perms, kernels=kernels,
                   decided_by=(pick,), estimator="unbiased", resampling="permutation")


def _fields(method, coll, families, n, m, alpha, **rest) -> dict:
    return {"method": method, "sigmas": tuple(coll.bandwidths), "kernel": "+".join(families),
            "n": n, "m": m, "alpha": alpha, **rest}
