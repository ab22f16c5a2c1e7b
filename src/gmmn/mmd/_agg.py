r"""MMDAgg: the aggregated MMD test of Schrab, Kim, Albert, Laurent, Guedj & Gretton (JMLR 2023).

Private helper of :mod:`gmmn.mmd`; imports nothing from the package but its sibling modules.
Given L kernels with weights w_l (sum_l w_l = 1), Algorithm 1 of the paper:

1. M_l, the MMD^2 estimate of each kernel, and B1 + B2 simulated ones, shared by all
   kernels: relabellings (the complete U-statistic) or, for n = m, the wild bootstrap
   (Rademacher signs on the pairs (x_i, y_i): (1 / (n (n-1))) sum_{i != j} e_i e_j h_ij);
2. the level correction, by B3 steps of bisection over u in (0, min_l 1 / w_l):

       u_alpha = sup{ u : (1 / B2) sum_b 1[ max_l (M~_l^b - q_l(1 - u w_l)) > 0 ] <= alpha },

   q_l(1 - a) the ceil((B1 + 1)(1 - a))-th smallest of {M_l^1..M_l^B1, M_l} (the first set)
   and M~^b the second, independent set of B2 simulated statistics;
3. reject H0 iff M_l > q_l(1 - u_alpha w_l) for some l: the kernels for which this holds
   are the ones that decided. There is no single p-value: the test gives a decision at alpha.

The collection is the mmdagg package's parameter-free default (the paper's Section 5 and its
released code): per family, N bandwidths lambda_min / 2 * C^r, r = 0..N-1, geometric up to
2 lambda_max, where lambda_min is the smallest distance (or, when that is below 0.1, the
5% quantile, at least 0.1) and lambda_max the largest (at least 0.3), L2 distances for the
gaussian kernel exp(-d^2 / lambda^2) and L1 for the laplace kernel exp(-d_1 / lambda); both
families by default (N = 10 each), B1 = B2 = 2000, B3 = 50.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._multi import TIE, Collection, pair_distances, replace_zeros

WEIGHTINGS = ("uniform", "decreasing", "increasing", "centred")


def weights(count: int, weighting: str) -> list[float]:
    r"""The paper's weights of ``count`` bandwidths in increasing order (Section 5.1), sum 1.

    uniform 1/N; decreasing 1 / (i H_N) (small bandwidths first); increasing
    1 / ((N + 1 - i) H_N); centred 1 / ((|(N+1)/2 - i| + 1) C) for odd N and
    1 / ((|(N+1)/2 - i| + 1/2) C) for even N, with H_N = sum_{i<=N} 1/i and C the sum that
    makes them add to 1.
    """
    idx = range(1, count + 1)
    if weighting == "uniform":
        raw = [1.0 for _ in idx]
    elif weighting == "decreasing":
        raw = [1.0 / i for i in idx]
    elif weighting == "increasing":
        raw = [1.0 / (count + 1 - i) for i in idx]
    else:  # centred
        shift = 1.0 if count % 2 else 0.5
        raw = [1.0 / (abs((count + 1) / 2 - i) + shift) for i in idx]
    total = sum(raw)
    return [r / total for r in raw]


def bandwidth_range(dist: Tensor) -> tuple[float, float]:
    """(lambda_min / 2, 2 lambda_max) of the package's rule from (k,) pair distances."""
    dist = replace_zeros(dist)
    if float(dist.min()) < 0.1:
        ordered = torch.sort(dist).values
        low = max(float(ordered[int(math.floor(ordered.numel() * 0.05))]), 0.1)
    else:
        low = float(dist.min())
    return low / 2, max(float(dist.max()), 0.3) * 2


def geometric(low: float, high: float, count: int) -> list[float]:
    """low * C^r, r = 0..count-1, with C such that the last one is ``high``."""
    ratio = (high / low) ** (1.0 / (count - 1))
    return [low * ratio**r for r in range(count)]


def collection(z: Tensor, families: tuple[str, ...], count: int, gen: torch.Generator, *,
               max_points: int = 1000) -> Collection:
    """The default collection of the pooled sample z (N, d): ``count`` per family.

    The paper's lambda becomes this library's scales: gaussian exp(-d^2 / lambda^2) has
    sigma = lambda / sqrt(2); laplace exp(-d_1 / lambda) has beta = lambda. The distances are
    those of a seeded random subset of the pooled rows (the package takes the first 500 x
    against the first 500 y, a choice that depends on the labels).
    """
    fams, bws = [], []
    for fam in families:
        norm = "l1" if fam == "laplace" else "l2"
        lams = geometric(*bandwidth_range(pair_distances(z, norm, max_points, gen)), count)
        fams += [fam] * count
        bws += [lam / math.sqrt(2) if fam == "gaussian" else lam for lam in lams]
    return Collection(tuple(fams), tuple(bws))


def quantiles(ordered: Tensor, levels: Tensor) -> Tensor:
    """(L,) q_l(1 - a_l) = the ceil((B1+1)(1 - a_l))-th smallest of each row of ``ordered``
    (L, B1 + 1), sorted ascending; ``levels`` (L,) the a_l."""
    count = ordered.shape[1]
    idx = torch.ceil(count * (1.0 - levels)).long() - 1
    return ordered.gather(1, idx.clamp(0, count - 1)[:, None])[:, 0]


def exceed_rate(null: Tensor, thresholds: Tensor, tol: Tensor) -> float:
    """Fraction of the columns of ``null`` (L, B2) with M~_l > q_l + tol_l for some l."""
    return float((null > (thresholds + tol)[:, None]).any(0).double().mean())


def level_correction(ordered: Tensor, null: Tensor, w: Tensor, alpha: float, steps: int,
                     tol: Tensor) -> float:
    """u_alpha by ``steps`` bisection steps on (0, min_l 1/w_l); the lower end is returned,
    so that the estimated rate at it is <= alpha (Algorithm 1, step 2)."""
    low, high = 0.0, float((1.0 / w).min())
    for _ in range(steps):
        u = (low + high) / 2
        if exceed_rate(null, quantiles(ordered, u * w), tol) <= alpha:
            low = u
        else:
            high = u
    return low


def tie_scale(stats: Tensor) -> Tensor:
    """(L,) the largest |value| of each kernel's simulated statistics (columns 1:): the scale
    of their float32 rounding. The observed one is left out, so that a far larger observed
    statistic (a strong difference) does not widen the ties of the null ones."""
    return stats[:, 1:].abs().amax(1)


@dataclass(frozen=True)
class Decision:
    """Outcome of Algorithm 1 for L kernels: ``u`` (u_alpha), the (L,) ``thresholds``
    q_l(1 - u w_l), single-test ``rejects`` (bool), ``p_values`` and ``levels`` u w_l."""

    u: float
    thresholds: Tensor
    rejects: Tensor
    p_values: Tensor
    levels: Tensor

    @property
    def reject(self) -> bool:
        return bool(self.rejects.any())


def decide(stats: Tensor, first: int, w: Tensor, alpha: float, steps: int) -> Decision:
    """Algorithm 1 on (L, 1 + B1 + B2) statistics: column 0 observed, the next ``first``
    (B1) for the quantiles, the rest (B2) for the level correction.

    Ties: statistics within ``TIE`` (1e-5) of a kernel's largest simulated |value| count as
    equal, against rejection: the float32 GEMMs put statistics about 1e-6 of that range from
    their float64 values (measured at n = m = 300 and 2000, benchmarks/mmd_agg.py).
    """
    observed = stats[:, 0]
    ordered = torch.sort(stats[:, : first + 1], dim=1).values  # (L, B1 + 1) with M_l
    null = stats[:, first + 1 :]  # (L, B2)
    tol = TIE * tie_scale(stats)
    u = level_correction(ordered, null, w, alpha, steps, tol)
    thresholds = quantiles(ordered, u * w)
    exceed = (stats[:, 1 : first + 1] >= (observed - tol)[:, None]).sum(1)
    p_values = (1.0 + exceed.double()) / (first + 1)
    return Decision(u, thresholds, observed > thresholds + tol, p_values, u * w)
