"""Permutation null distribution of MMD^2 from ONE kernel matrix (or feature matrix).

Private helper of :mod:`gmmn.mmd`; imports nothing from the package. A permutation is a
relabelling of the pooled sample z (N = n + m rows): u (N,) marks the rows called x. For the
quadratic estimators, with K the kernel matrix, r = K 1 and T = 1^T K 1,

    A = u^T K u,  u^T K (1 - u) = r.u - A,  (1 - u)^T K (1 - u) = T - 2 r.u + A,

so a chunk of P relabellings costs one (P, N) @ (N, N) GEMM.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gmmn._mmd_kernels import KernelSpec, kernel_matrix

# Relabellings per chunk: a (chunk, N) float64 matrix and its product with K live at once.
_CHUNK = 256


def _relabellings(n_total: int, count: int, gen: torch.Generator, device) -> Tensor:
    """(count, N) random permutations of range(N)."""
    return torch.argsort(torch.rand(count, n_total, generator=gen), dim=1).to(device)


def _quadratic(kmat: Tensor, perm: Tensor, n: int, unbiased: bool) -> Tensor:
    n_total = kmat.shape[0]
    m = n_total - n
    u = kmat.new_zeros(perm.shape).scatter_(1, perm[:, :n], 1.0)  # (P, N) x-membership
    a = ((u @ kmat) * u).sum(1)  # (P,) u^T K u
    ru = u @ kmat.sum(1)  # (P,)
    total = kmat.sum()
    xy = ru - a
    yy = total - 2 * ru + a
    if not unbiased:
        return a / n**2 + yy / m**2 - 2 * xy / (n * m)
    diag = kmat.diagonal()
    dx = u @ diag
    dy = diag.sum() - dx
    return (a - dx) / (n * (n - 1)) + (yy - dy) / (m * (m - 1)) - 2 * xy / (n * m)


def _linear(kmat: Tensor, perm: Tensor, n: int) -> Tensor:
    half = min(n, kmat.shape[0] - n) // 2
    xs, ys = perm[:, :n], perm[:, n:]
    x1, x2 = xs[:, 0 : 2 * half : 2], xs[:, 1 : 2 * half : 2]  # (P, half)
    y1, y2 = ys[:, 0 : 2 * half : 2], ys[:, 1 : 2 * half : 2]
    h = kmat[x1, x2] + kmat[y1, y2] - kmat[x1, y2] - kmat[x2, y1]  # (P, half)
    return h.mean(1)


def _features(feats: Tensor, perm: Tensor, n: int) -> Tensor:
    m = feats.shape[0] - n
    u = feats.new_zeros(perm.shape).scatter_(1, perm[:, :n], 1.0)  # (P, N)
    signed = u / n - (1 - u) / m  # (P, N) the s vector of each relabelling
    return (signed @ feats).pow(2).sum(1)


def permutation_statistics(z: Tensor, n: int, spec: KernelSpec, estimator: str,
                           permutations: int, seed: int,
                           feats: Tensor | None = None) -> tuple[float, Tensor]:
    """The observed statistic and (permutations,) statistics of random relabellings."""
    n_total = z.shape[0]
    kmat = kernel_matrix(z, z, spec) if feats is None else None  # (N, N), the one kernel matrix

    def stats(perm: Tensor) -> Tensor:
        if feats is not None:
            return _features(feats, perm, n)
        if estimator == "linear":
            return _linear(kmat, perm, n)
        return _quadratic(kmat, perm, n, estimator == "unbiased")

    identity = torch.arange(n_total, device=z.device)[None, :]
    observed = float(stats(identity)[0])  # same code path as the null, so ties compare fairly
    gen = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, permutations, _CHUNK):
        count = min(_CHUNK, permutations - start)
        chunks.append(stats(_relabellings(n_total, count, gen, z.device)))
    return observed, torch.cat(chunks)
