r"""The data-splitting baseline that both papers compare against ("MMD-Split").

Private helper of :mod:`gmmn.mmd`; imports nothing from the package but its sibling modules.
Half of each sample (shuffled by the seed) chooses the kernel that maximises the power
criterion, the other half is tested with that one kernel by permutations:

    ratio_l = MMD^2_u,l / sqrt( max(var_l, 0) + 1e-8 ),
    var_l   = (4 / p^3) sum_i h_i^2 - (4 / p^4) (sum_i h_i)^2,   h_i = sum_j H_ij,
    H_ij    = k(x_i, x_j) + k(y_i, y_j) - k(x_i, y_j) - k(x_j, y_i)   (diagonal kept),

on p = min(n', m') pairs of the selection half (the variance estimate of the
asymptotic-power criterion, Sutherland et al. 2017 and Liu et al. 2020, as the MMD-FUSE
paper's code computes it), MMD^2_u the complete U-statistic of the selection half's pairs.
The collection, as in the MMD-FUSE paper's code: 100 gaussian bandwidths evenly spaced from
half the 5% quantile to twice the 95% quantile of the selection half's pooled distances.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._multi import Collection, distances, kernel_tile, split


def halves(t: Tensor, ratio: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(selection, test) rows of ``t`` after a seeded shuffle; int(len * ratio) select."""
    shuffled = t[torch.randperm(t.shape[0], generator=gen)]
    cut = int(t.shape[0] * ratio)
    return shuffled[:cut], shuffled[cut:]


def criterion(x: Tensor, y: Tensor, coll: Collection, block: int) -> Tensor:
    """(L,) power criterion of each kernel on the pairs (x_i, y_i), i < p = min(n, m)."""
    p = min(x.shape[0], y.shape[0])
    mean = torch.cat([x[:p], y[:p]]).mean(0)
    x, y = x[:p] - mean, y[:p] - mean
    big = len(coll)
    rowsum = torch.zeros(big, p, dtype=torch.float64)  # h_i
    within = torch.zeros(big, dtype=torch.float64)  # sum of k(x_i,x_j) + k(y_i,y_j), all i,j
    cross = torch.zeros(big, dtype=torch.float64)  # sum of k(x_i, y_j), all i, j
    ranges = split(p, block)
    for i, a in enumerate(ranges):
        for b in ranges[i:]:
            sa, sb = slice(*a), slice(*b)
            blocks = {key: {nm: distances(u[sa], v[sb], nm) for nm in coll.norms()}
                      for key, (u, v) in {"xx": (x, x), "yy": (y, y), "xy": (x, y),
                                          "yx": (y, x)}.items()}
            twice = 1.0 if a == b else 2.0
            for k, (fam, bw) in enumerate(zip(coll.families, coll.bandwidths, strict=True)):
                kxx, kyy, kxy, kyx = (kernel_tile(blocks[key], fam, bw, torch.empty_like(
                    blocks[key][coll.norms()[0]])) for key in ("xx", "yy", "xy", "yx"))
                h = kxx + kyy - kxy - kyx  # (b1, b2), symmetric as a whole matrix
                rowsum[k, sa] += h.sum(1, dtype=torch.float64)
                if a != b:
                    rowsum[k, sb] += h.sum(0, dtype=torch.float64)
                within[k] += twice * float(kxx.sum(dtype=torch.float64)
                                            + kyy.sum(dtype=torch.float64))
                cross[k] += float(kxy.sum(dtype=torch.float64))
                if a != b:
                    cross[k] += float(kyx.sum(dtype=torch.float64))
    mmd2 = (within - 2 * p) / (p * (p - 1)) - 2 * cross / p**2  # k(z, z) = 1 on the diagonal
    var = 4 / p**3 * rowsum.pow(2).sum(1) - 4 / p**4 * rowsum.sum(1).pow(2)
    return mmd2 / (var.clamp(min=0) + 1e-8).sqrt()
