r"""MMD-FUSE: Biggs, Schrab & Gretton, "Learning and Combining Kernels for Two-Sample Testing
Without Data Splitting" (NeurIPS 2023).

Private helper of :mod:`gmmn.mmd`; imports nothing from the package but its sibling modules.
For L kernels with a uniform prior, the normalised statistic of kernel l and the fused one:

    S_l  = lambda MMD^2_u,l / N_l,   N_l = sqrt( sum_{i != j} k_l(z_i, z_j)^2 ) / (n (n-1)),
    FUSE = (1 / lambda) log( (1 / L) sum_l exp(S_l) ),   lambda = c sqrt(n (n-1)),

over the pooled sample z (N = n + m rows, n the smaller sample size), c the multiplier (1 by
default): N_l depends on the pooled sample only, so it is the same for every relabelling.
The p-value is the permutation one, (1 + #{b : FUSE_b >= FUSE}) / (1 + B), at any level.

The collection is the paper's: per family, N = 10 bandwidths evenly spaced (linearly) from
half the 5% quantile to twice the 95% quantile of the pooled pairwise distances (L2 for the
gaussian exp(-d^2 / (2 lambda^2)), L1 for the laplace exp(-sqrt(2) d_1 / lambda)), both
families, B = 2000 permutations.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._multi import TIE, Collection, pair_distances, permutation_p_value, replace_zeros


def bandwidth_range(dist: Tensor) -> tuple[float, float]:
    """(q_5% / 2, 2 q_95%) of (k,) pair distances, the q the sorted values at floor(0.05 k)
    and floor(0.95 k) (zeros replaced by the median first)."""
    ordered = torch.sort(replace_zeros(dist)).values
    k = ordered.numel()
    return (float(ordered[int(math.floor(k * 0.05))]) / 2,
            float(ordered[min(int(math.floor(k * 0.95)), k - 1)]) * 2)


def linear(low: float, high: float, count: int) -> list[float]:
    """``count`` evenly spaced values from ``low`` to ``high``."""
    return [low + (high - low) * r / (count - 1) for r in range(count)]


def collection(z: Tensor, families: tuple[str, ...], count: int, gen: torch.Generator, *,
               max_points: int = 1000) -> Collection:
    """The paper's collection of the pooled sample z (N, d), as this library's scales:
    gaussian exp(-d^2 / (2 lambda^2)) has sigma = lambda; laplace exp(-sqrt(2) d_1 / lambda)
    has beta = lambda / sqrt(2). At most ``max_points`` pooled rows (a seeded subset) give
    the distances; the paper's experiments (N = 1000) use them all."""
    fams, bws = [], []
    for fam in families:
        norm = "l1" if fam == "laplace" else "l2"
        lams = linear(*bandwidth_range(pair_distances(z, norm, max_points, gen)), count)
        fams += [fam] * count
        bws += [lam if fam == "gaussian" else lam / math.sqrt(2) for lam in lams]
    return Collection(tuple(fams), tuple(bws))


def normalised(mmd2: Tensor, sumsq: Tensor, n: int, multiplier: float) -> Tensor:
    """(L, c) S_l = lambda MMD^2_u / N_l from (L, c) MMD^2_u and (L,) sum_{i!=j} k^2; n the
    smaller sample size."""
    pairs = n * (n - 1)
    lam = multiplier * math.sqrt(pairs)
    return mmd2 * (lam * pairs) / sumsq.sqrt()[:, None]


def fuse(stats: Tensor) -> Tensor:
    """(c,) log((1/L) sum_l exp(S_l)) of (L, c) normalised statistics (the 1/lambda left
    out: one positive factor for every relabelling changes no p-value)."""
    return torch.logsumexp(stats, dim=0) - math.log(stats.shape[0])


def p_value(fused: Tensor) -> float:
    """The permutation p-value of (1 + B,) fused statistics, F = fused[0]; values within
    TIE (1 + |F|) of F count as ties (float32 rounding), against rejection."""
    return permutation_p_value(fused, TIE * (1.0 + abs(float(fused[0]))))
