"""Kernels for the MMD: a name -> kernel registry and the per-tile kernel sums.

Private helper of :mod:`gmmn.mmd`; imports nothing from the package and assumes its inputs
were validated there. Every kernel is a function of the squared distance ``d2 = ||a - b||^2``
and one scale ``sigma`` (a standard deviation), summed over scales with weights:

    k(a, b) = sum_s w_s * f(||a - b||^2, sigma_s)

Each registry entry carries ``value = f`` and ``slope = -df/d(d2)``; the slope is all the
hand-written gradient needs (see :mod:`gmmn.mmd._blocked`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor


class Kernel(NamedTuple):
    value: Callable[[Tensor, float], Tensor]  # f(d2, sigma)
    slope: Callable[[Tensor, float], Tensor]  # -df/d(d2)


def _gaussian(d2: Tensor, sigma: float) -> Tensor:
    """exp(-d2 / (2 sigma^2))."""
    return torch.exp(d2 * (-0.5 / sigma**2))


def _gaussian_slope(d2: Tensor, sigma: float) -> Tensor:
    gamma = 0.5 / sigma**2
    return torch.exp(d2 * -gamma) * gamma


def _laplacian(d2: Tensor, sigma: float) -> Tensor:
    """exp(-||a - b|| / sigma); d2 clamped away from 0 so autograd's sqrt stays finite."""
    return torch.exp(-torch.sqrt(d2.clamp_min(torch.finfo(d2.dtype).tiny)) / sigma)


def _laplacian_slope(d2: Tensor, sigma: float) -> Tensor:
    r = torch.sqrt(d2)
    # The slope is infinite at r = 0, where it multiplies (a - b) = 0: take 0, a subgradient.
    return torch.where(r > 0, torch.exp(-r / sigma) / (2 * sigma * r.clamp_min(1e-30)), 0.0)


def _imq(d2: Tensor, sigma: float) -> Tensor:
    """(1 + d2 / sigma^2)^(-1/2): heavy tails, so gradients survive far from the data."""
    return torch.rsqrt(1 + d2 / sigma**2)


def _imq_slope(d2: Tensor, sigma: float) -> Tensor:
    return (0.5 / sigma**2) * torch.pow(1 + d2 / sigma**2, -1.5)


# The one place kernels are named; k(a, a) = 1 for every entry (unbiased estimator relies on it).
KERNELS: dict[str, Kernel] = {
    "gaussian": Kernel(_gaussian, _gaussian_slope),
    "laplacian": Kernel(_laplacian, _laplacian_slope),
    "imq": Kernel(_imq, _imq_slope),
}

# Above this multiplier, repeated squaring costs more passes than the exps it saves.
_MAX_MULTIPLIER = 64


def power_plan(gammas: tuple[float, ...]) -> tuple[float, tuple[int, ...]] | None:
    """A common base g0 with gamma_s = m_s * g0 for small whole m_s, or None.

    The paper's variances 2, 5, 10, 20, 40, 80 give gamma = 1/(2 v) = m / 160 with
    m = 40, 16, 8, 4, 2, 1: one exp(-d2/160) and a few squarings give all six kernels.
    """
    gmin = min(gammas)
    for q in (1, 2, 3, 4, 5, 6, 8, 10, 12, 16):
        base = gmin / q
        mult = [g / base for g in gammas]
        whole = [round(m) for m in mult]
        exact = all(abs(m - w) <= 1e-9 * m for m, w in zip(mult, whole, strict=True))
        if exact and max(whole) <= _MAX_MULTIPLIER:
            squarings = max(whole).bit_length() - 1
            extra = sum(bin(w).count("1") - 1 for w in whole)
            # One exp costs several multiplies; only then is the chain worth it.
            if squarings + extra <= 3 * len(gammas):
                return base, tuple(whole)
    return None


@dataclass(frozen=True)
class KernelSpec:
    """A validated kernel: name, scales (std), weights and, for gaussians, the power plan."""

    name: str
    sigmas: tuple[float, ...]
    weights: tuple[float, ...]
    plan: tuple[float, tuple[int, ...]] | None = None

    @property
    def gammas(self) -> tuple[float, ...]:
        return tuple(0.5 / s**2 for s in self.sigmas)

    @property
    def exponent_scale(self) -> float:
        """c such that the Gram GEMM yields X = -c * d2 (the gaussian plan's base, else 1)."""
        return self.plan[0] if self.plan is not None else 1.0

    def n_buffers(self) -> int:
        """Tile-sized buffers :func:`tile_sums` needs: exponent and powers, temp, slope."""
        if self.name == "gaussian" and self.plan is not None:
            return max(self.plan[1]).bit_length() + 2
        return 3


def make_spec(name: str, sigmas: tuple[float, ...], weights: tuple[float, ...],
              *, fast: bool = True) -> KernelSpec:
    plan = power_plan(tuple(0.5 / s**2 for s in sigmas)) if fast and name == "gaussian" else None
    return KernelSpec(name, sigmas, weights, plan)


def _power_chain(tiles: Tensor, spec: KernelSpec, need_slope: bool) -> Tensor:
    """The plan path of :func:`tile_sums`: E = exp(-g0 d2), squares E^(2^j), few big ops.

    The squares live stacked in ``tiles[:L]`` so that the kernel sums of all of them are ONE
    row-sum op and the slope sum_s w_s g_s E^(m_s) is ONE matrix-vector product; a scale
    whose m has two bits adds a dot and an addcmul instead of storing E^m. Fewer, larger ops
    matter on CPU: each parallel op waits for its slowest thread.
    """
    n_sq = max(spec.plan[1]).bit_length()
    squares, temp, slope = tiles[:n_sq], tiles[n_sq], tiles[-1]
    squares[0].exp_()
    for j in range(1, n_sq):
        torch.mul(squares[j - 1], squares[j - 1], out=squares[j])
    sum_w = [0.0] * n_sq  # weight of each square in the kernel sum
    slope_w = [0.0] * n_sq  # ... and in the slope
    extra = []  # (bits, w, g) of scales that are a product of squares
    for m, w, g in zip(spec.plan[1], spec.weights, spec.gammas, strict=True):
        bits = [j for j in range(m.bit_length()) if m >> j & 1]
        if len(bits) == 1:
            sum_w[bits[0]] += w
            slope_w[bits[0]] += w * g
        else:
            extra.append((bits, w, g))
    flat = squares.view(n_sq, -1)  # (L, b1 * b2), rows strided by the buffer size
    sums = flat.sum(1, dtype=flat.dtype).double()  # (L,)
    total = (sums * sums.new_tensor(sum_w)).sum()
    if need_slope:
        torch.mv(flat.T, flat.new_tensor(slope_w), out=slope.view(-1))
    for bits, w, g in extra:
        a, b = squares[bits[0]], squares[bits[1]]
        if len(bits) > 2:
            a = torch.mul(a, b, out=temp)
            for j in bits[2:-1]:
                a.mul_(squares[j])
            b = squares[bits[-1]]
        total = total + w * torch.dot(a.reshape(-1), b.reshape(-1)).double()
        if need_slope:
            slope.addcmul_(a, b, value=w * g)
    return total


def tile_sums(tiles: Tensor, spec: KernelSpec, need_slope: bool) -> Tensor:
    """Sum of the kernel over one tile; with ``need_slope`` also sum_s w_s slope_s in tiles[-1].

    ``tiles`` (spec.n_buffers(), b1, b2): tiles[0] holds X = -c * d2 (c =
    spec.exponent_scale) and is overwritten, the others are scratch. Returns a float64 0-dim
    tensor. No clamp at d2 >= 0 on the gaussian paths: rounding can only push a near-duplicate
    pair's kernel a relative ~1e-6 above 1, and every pass over the tile costs time.
    """
    if spec.name == "gaussian" and spec.plan is not None:
        return _power_chain(tiles, spec, need_slope)
    x_tile, temp, slope = tiles[0], tiles[1], tiles[-1]
    total = x_tile.new_zeros((), dtype=torch.float64)
    kern = KERNELS[spec.name]
    if spec.name != "gaussian":
        x_tile.neg_().clamp_(min=0.0)  # d2; rounding can make it < 0, and sqrt would give NaN
    for i, (w, s, g) in enumerate(zip(spec.weights, spec.sigmas, spec.gammas, strict=True)):
        if spec.name == "gaussian":  # one exp per scale
            p = torch.mul(x_tile, g, out=temp).exp_()
            dp = p * g if need_slope else None
        else:
            p = kern.value(x_tile, s)
            dp = kern.slope(x_tile, s) if need_slope else None
        total = total + w * p.sum().double()  # float32 tile sums are pairwise: accurate
        if dp is not None:
            if i == 0:
                torch.mul(dp, w, out=slope)
            else:
                slope.add_(dp, alpha=w)
    return total


def sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """(n, m) squared distances via the norm expansion, clamped at 0."""
    d2 = a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T
    return d2.clamp_(min=0.0)


def kernel_matrix(a: Tensor, b: Tensor, spec: KernelSpec) -> Tensor:
    """(n, m) k(a_i, b_j): dense, for permutation tests; not for training."""
    d2 = sq_dists(a, b)
    kern = KERNELS[spec.name]
    return sum(w * kern.value(d2, s) for w, s in zip(spec.weights, spec.sigmas, strict=True))


def kernel_rows(a: Tensor, b: Tensor, spec: KernelSpec) -> Tensor:
    """(n,) k(a_i, b_i) row by row, differentiable; used by the linear-time estimator."""
    d2 = (a - b).pow(2).sum(1)
    kern = KERNELS[spec.name]
    return sum(w * kern.value(d2, s) for w, s in zip(spec.weights, spec.sigmas, strict=True))


def fourier_frequencies(dim: int, spec: KernelSpec, num_features: int,
                        generator: torch.Generator | None, *, device: torch.device,
                        dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(dim, F) frequencies already divided by their scale's sigma, and (F,) amplitudes.

    Bochner: exp(-||u||^2/(2 s^2)) = E cos(w.u) with w ~ N(0, I/s^2). The F frequencies are
    split evenly over the scales; each gives cos and sin features (lower variance than a random
    phase), scaled by sqrt(w_s / F_s). Drawn once, so row tiles of one sample share them.
    """
    n_scales = len(spec.sigmas)
    counts = [num_features // n_scales + (i < num_features % n_scales) for i in range(n_scales)]
    dev = generator.device if generator is not None else device
    # Drawn in float64 whatever the dtype, so one seed gives the same features in either.
    omega = torch.randn(dim, num_features, generator=generator, dtype=torch.float64,
                        device=dev).to(device=device, dtype=dtype)
    pairs = list(zip(counts, spec.sigmas, spec.weights, strict=True))
    inv_sigma = torch.cat([omega.new_full((c,), 1.0 / s) for c, s, _ in pairs])  # (F,)
    amp = torch.cat([omega.new_full((c,), math.sqrt(w / c)) for c, _, w in pairs])  # (F,)
    return omega * inv_sigma, amp


def apply_fourier(z: Tensor, freqs: tuple[Tensor, Tensor]) -> Tensor:
    """(N, 2F) features [cos(z W) * amp, sin(z W) * amp] of rows z (N, d)."""
    omega, amp = freqs
    proj = z @ omega  # (N, F)
    return torch.cat([torch.cos(proj) * amp, torch.sin(proj) * amp], dim=1)


def fourier_features(z: Tensor, spec: KernelSpec, num_features: int,
                     generator: torch.Generator | None) -> Tensor:
    """(N, 2F) features with phi(a).phi(b) ~= sum_s w_s exp(-||a-b||^2 / (2 sigma_s^2))."""
    freqs = fourier_frequencies(z.shape[1], spec, num_features, generator, device=z.device,
                                dtype=z.dtype)
    return apply_fourier(z, freqs)
