"""Permutation null distribution of MMD^2, dense or in bounded memory.

Private helper of :mod:`gmmn.mmd`; imports nothing from the package. A permutation is a
relabelling of the pooled sample z (N = n + m rows): u (N,) marks the rows called x. For the
quadratic estimators, with K the kernel matrix, r = K 1 and T = 1^T K 1,

    A = u^T K u,  u^T K (1 - u) = r.u - A,  (1 - u)^T K (1 - u) = T - 2 r.u + A,

so a chunk of P relabellings costs one (P, N) @ (N, N) GEMM when K is held (the dense path,
8 N^2 bytes). When K does not fit the memory budget, the tiled path walks the tiles K_ab on
and above the diagonal for each chunk of relabellings, recomputing them, and accumulates
A += (2 if a != b else 1) * sum((u_a @ K_ab) * u_b); r and diag(K) come from the first pass.
Both paths draw the same relabellings from one seed (``torch.rand`` rows are the same
whatever the chunking), so they give the same statistics up to rounding.

"linear" needs no kernel matrix (4 kernel values per pair of rows) and "rff" only the
(N, 2F) features, recomputed per row tile when they do not fit either.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ._kernels import KernelSpec, apply_fourier, kernel_matrix, kernel_rows

# Relabellings per dense chunk: a (chunk, N) float64 matrix and its product with K live at once.
_CHUNK = 256
_F64 = 8  # bytes


def _relabellings(n_total: int, count: int, gen: torch.Generator, device) -> Tensor:
    """(count, N) random permutations of range(N)."""
    return torch.argsort(torch.rand(count, n_total, generator=gen), dim=1).to(device)


def _split(stop: int, block: int) -> list[tuple[int, int]]:
    """Even ranges of at most ``block`` rows covering [0, stop)."""
    count = -(-stop // block)
    edges = [stop * i // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


@dataclass(frozen=True)
class Plan:
    """How a test runs: ``tiled`` or dense, the relabellings per chunk, rows per kernel tile
    and per draw of relabellings. Sizes follow from the memory budget (see docs/mmd.md)."""

    tiled: bool
    chunk: int
    block: int
    draw: int


def plan(n_total: int, dim: int, estimator: str, budget: int, permutations: int,
         num_features: int = 0) -> Plan:
    """The dense path when its arrays fit ``budget`` bytes, else tiles sized from it.

    Dense quadratic: K (N, N) float64 and about two temporaries of its size while it is built.
    Tiled: a quarter of the budget each for the kernel tile (with ~3 temporaries), the (P, N)
    boolean relabellings, and one draw of relabellings (float32 keys and int64 indices).
    """
    quarter = max(budget // 4, 1)
    draw = max(1, quarter // (24 * n_total))
    block = max(2, math.isqrt(quarter // (4 * _F64)))
    if estimator == "linear":  # no matrix: gathered rows (P, N, d) and their differences
        chunk = max(1, min(_CHUNK, budget // (n_total * (3 * dim * _F64 + 24))))
        return Plan(False, chunk, block, min(draw, chunk))
    if estimator == "rff":
        width = 2 * num_features
        dense = _F64 * n_total * (2 * width + 2 * _CHUNK) <= budget
        block = max(1, quarter // (4 * width * _F64))
    else:
        dense = 3 * _F64 * n_total**2 + 2 * _F64 * _CHUNK * n_total <= budget
    if dense:
        return Plan(False, _CHUNK, n_total, _CHUNK)
    per_row = n_total + 3 * _F64 * min(block, n_total)  # boolean row + float64 slices of it
    chunk = max(2, min(permutations + 1, quarter // per_row))
    return Plan(True, chunk, block, draw)


def _member_chunks(n_total: int, n: int, permutations: int, gen: torch.Generator,
                   chunk: int, draw: int, device) -> Iterator[Tensor]:
    """(c, N) boolean x-memberships: the observed labelling first, then the relabellings."""
    done, first = 0, 1
    while done < permutations:
        count = min(chunk - first, permutations - done)
        u = torch.zeros(count + first, n_total, dtype=torch.bool)
        u[0, :n] = bool(first)
        for start in range(0, count, draw):
            perm = _relabellings(n_total, min(draw, count - start), gen, "cpu")
            u[first + start : first + start + perm.shape[0]].scatter_(1, perm[:, :n], True)
        yield u.to(device)
        done, first = done + count, 0


def _combine(a: Tensor, ru: Tensor, dx: Tensor, total: Tensor, diag_sum: Tensor, n: int,
             m: int, unbiased: bool) -> Tensor:
    xy = ru - a
    yy = total - 2 * ru + a
    if not unbiased:
        return a / n**2 + yy / m**2 - 2 * xy / (n * m)
    dy = diag_sum - dx
    return (a - dx) / (n * (n - 1)) + (yy - dy) / (m * (m - 1)) - 2 * xy / (n * m)


def _quadratic(kmat: Tensor, perm: Tensor, n: int, unbiased: bool) -> Tensor:
    u = kmat.new_zeros(perm.shape).scatter_(1, perm[:, :n], 1.0)  # (P, N) x-membership
    a = ((u @ kmat) * u).sum(1)  # (P,) u^T K u
    diag = kmat.diagonal()
    return _combine(a, u @ kmat.sum(1), u @ diag, kmat.sum(), diag.sum(), n,
                    kmat.shape[0] - n, unbiased)


def _quadratic_tiled(z: Tensor, n: int, spec: KernelSpec, chunks: Iterator[Tensor],
                     unbiased: bool, block: int) -> Iterator[Tensor]:
    """Statistics of each chunk of memberships, recomputing K tile by tile per chunk."""
    n_total = z.shape[0]
    ranges = _split(n_total, block)
    r = diag = None  # K 1 and diag(K), filled during the first pass
    for u in chunks:
        first = r is None
        if first:
            r, diag = z.new_zeros(n_total), z.new_zeros(n_total)
        a = z.new_zeros(u.shape[0])  # (P,) u^T K u
        for i, (a0, a1) in enumerate(ranges):
            ua = u[:, a0:a1].to(z.dtype)  # (P, b1)
            for b0, b1 in ranges[i:]:
                k = kernel_matrix(z[a0:a1], z[b0:b1], spec)  # (b1, b2)
                if a0 == b0:
                    a += ((ua @ k) * ua).sum(1)
                    if first:
                        r[a0:a1] += k.sum(1)
                        diag[a0:a1] = k.diagonal()
                else:
                    a += 2 * ((ua @ k) * u[:, b0:b1].to(z.dtype)).sum(1)
                    if first:
                        r[a0:a1] += k.sum(1)
                        r[b0:b1] += k.sum(0)
        ru, dx = z.new_zeros(u.shape[0]), z.new_zeros(u.shape[0])
        for a0, a1 in ranges:
            ua = u[:, a0:a1].to(z.dtype)
            ru += ua @ r[a0:a1]
            dx += ua @ diag[a0:a1]
        yield _combine(a, ru, dx, r.sum(), diag.sum(), n, n_total - n, unbiased)


def _linear(z: Tensor, perm: Tensor, n: int, spec: KernelSpec) -> Tensor:
    """The linear-time statistic of each relabelling, from the rows themselves."""
    half = min(n, z.shape[0] - n) // 2
    xs, ys = perm[:, :n], perm[:, n:]
    x1, x2 = xs[:, 0 : 2 * half : 2].reshape(-1), xs[:, 1 : 2 * half : 2].reshape(-1)
    y1, y2 = ys[:, 0 : 2 * half : 2].reshape(-1), ys[:, 1 : 2 * half : 2].reshape(-1)
    h = (kernel_rows(z[x1], z[x2], spec) + kernel_rows(z[y1], z[y2], spec)
         - kernel_rows(z[x1], z[y2], spec) - kernel_rows(z[x2], z[y1], spec))  # (P * half,)
    return h.view(perm.shape[0], half).mean(1)


def _features(feats: Tensor, perm: Tensor, n: int) -> Tensor:
    m = feats.shape[0] - n
    u = feats.new_zeros(perm.shape).scatter_(1, perm[:, :n], 1.0)  # (P, N)
    signed = u / n - (1 - u) / m  # (P, N) the s vector of each relabelling
    return (signed @ feats).pow(2).sum(1)


def _features_tiled(z: Tensor, n: int, freqs: tuple[Tensor, Tensor], chunks: Iterator[Tensor],
                    block: int) -> Iterator[Tensor]:
    """||s^T phi||^2 of each chunk of memberships, recomputing phi per row tile."""
    m = z.shape[0] - n
    for u in chunks:
        acc = z.new_zeros(u.shape[0], 2 * freqs[1].shape[0])  # (P, 2F)
        for a0, a1 in _split(z.shape[0], block):
            ua = u[:, a0:a1].to(z.dtype)
            acc += (ua / n - (1 - ua) / m) @ apply_fourier(z[a0:a1], freqs)
        yield acc.pow(2).sum(1)


def permutation_statistics(z: Tensor, n: int, spec: KernelSpec, estimator: str,
                           permutations: int, seed: int,
                           freqs: tuple[Tensor, Tensor] | None = None, *,
                           budget: int = 2**62) -> tuple[float, Tensor]:
    """The observed statistic and (permutations,) statistics of random relabellings, whole:
    :func:`null_chunks` gathered (the test itself counts chunk by chunk instead)."""
    observed, chunks = null_chunks(z, n, spec, estimator, permutations, seed, freqs,
                                   budget=budget)
    return observed, torch.cat(list(chunks))


def null_chunks(z: Tensor, n: int, spec: KernelSpec, estimator: str, permutations: int,
                seed: int, freqs: tuple[Tensor, Tensor] | None = None, *,
                budget: int = 2**62) -> tuple[float, Iterator[Tensor]]:
    """The observed statistic and the statistics of ``permutations`` random relabellings,
    chunk after chunk as they are consumed: memory independent of the count.

    ``z`` (N, d) float64 pooled sample, its first ``n`` rows x; ``freqs`` the random Fourier
    frequencies for "rff". ``budget`` bytes pick the dense or the tiled path (:func:`plan`).
    """
    n_total = z.shape[0]
    gen = torch.Generator().manual_seed(seed)
    num_features = freqs[1].shape[0] if freqs is not None else 0
    how = plan(n_total, z.shape[1], estimator, budget, permutations, num_features)
    if estimator in ("biased", "unbiased"):
        z = z - z.mean(0)  # distances are unchanged; the norm expansion rounds less
    if how.tiled:
        chunks = _member_chunks(n_total, n, permutations, gen, how.chunk, how.draw, z.device)
        if freqs is not None:
            stats = _features_tiled(z, n, freqs, chunks, how.block)
        else:
            stats = _quadratic_tiled(z, n, spec, chunks, estimator == "unbiased", how.block)
        first = next(stats)  # the observed labelling leads the first chunk
        return float(first[0]), itertools.chain([first[1:]], stats)
    feats = apply_fourier(z, freqs) if freqs is not None else None  # (N, 2F)
    kmat = kernel_matrix(z, z, spec) if feats is None and estimator != "linear" else None

    def stats_of(perm: Tensor) -> Tensor:
        if feats is not None:
            return _features(feats, perm, n)
        if estimator == "linear":
            return _linear(z, perm, n, spec)
        return _quadratic(kmat, perm, n, estimator == "unbiased")

    identity = torch.arange(n_total, device=z.device)[None, :]
    observed = float(stats_of(identity)[0])  # same code path as the null: ties compare fairly

    def null() -> Iterator[Tensor]:
        for start in range(0, permutations, how.chunk):
            count = min(how.chunk, permutations - start)
            yield stats_of(_relabellings(n_total, count, gen, z.device))

    return observed, null()
