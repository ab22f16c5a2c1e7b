r"""Maximum mean discrepancy (MMD): estimators, the GMMN loss and a two-sample test.

For samples x (n, d) and y (m, d) and a kernel k, the squared MMD is

    MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y),

with the multi-scale Gaussian kernel of Li, Swersky & Zemel (2015) by default:

    k(a, b) = sum_s w_s exp(-||a - b||^2 / (2 sigma_s^2)),   sigma_s a STANDARD DEVIATION.

The biased and unbiased estimators are exact and stream over tiles of the (n+m)^2 Gram
matrix (bounded memory, see ``TILE_MEMORY_BUDGET``) with a hand-written gradient; "linear"
and "rff" cost O(n + m). This module imports nothing else from the package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gmmn._mmd_blocked import QuadFormMMD, choose_block
from gmmn._mmd_kernels import KERNELS, KernelSpec, fourier_features, kernel_rows, make_spec
from gmmn._mmd_perm import permutation_statistics


class MMDError(ValueError):
    """Bad input to an MMD function (shapes, NaN, sigmas, estimator)."""


ESTIMATORS = ("biased", "unbiased", "linear", "rff")

# Bytes of Gram-matrix tiles one call may hold; 20000 x 20000 float32 would need 1.6 GB.
TILE_MEMORY_BUDGET = 64 * 2**20

# The released code's scales, which it calls sigma but which act as VARIANCES.
_PAPER_VARIANCES = {
    "mnist": (2.0, 5.0, 10.0, 20.0, 40.0, 80.0),
    "tfd": (5.0, 10.0, 20.0, 40.0, 80.0, 160.0),
    "mnist-code": (1.0,),
    "tfd-code": (1.0, 2.0, 5.0, 10.0, 20.0, 40.0),
}


def paper_sigmas(name: str) -> list[float]:
    """The paper's kernel scales for ``name``, as standard deviations.

    The variance trap: the released GMMN code computes exp(-||a-b||^2 / (2 v)) and calls v
    "sigma", so its numbers 2, 5, ..., 80 (MNIST) are variances. This library's ``sigmas``
    are standard deviations, so the same kernel needs sigma = sqrt(v): passing the released
    numbers unchanged would make every bandwidth sqrt(v) times too wide.

    mnist: sqrt([2, 5, 10, 20, 40, 80]); tfd: sqrt([5, 10, 20, 40, 80, 160]);
    mnist-code: [1]; tfd-code: sqrt([1, 2, 5, 10, 20, 40]).
    """
    if name not in _PAPER_VARIANCES:
        raise MMDError(f"unknown scale set {name!r}; choose one of {sorted(_PAPER_VARIANCES)}")
    return [math.sqrt(v) for v in _PAPER_VARIANCES[name]]


def _check_samples(x: Tensor, y: Tensor) -> None:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise MMDError(f"{name} is a {type(t).__name__}; pass a torch.Tensor of shape (n, d)")
        if t.dim() != 2:
            raise MMDError(f"{name} has shape {tuple(t.shape)}; pass a 2-D tensor (samples, "
                           "features), e.g. flatten images with t.reshape(len(t), -1)")
        if not t.is_floating_point():
            raise MMDError(f"{name} has dtype {t.dtype}; convert it to float32 or float64")
        if t.shape[0] == 0:
            raise MMDError(f"{name} is empty (0 samples); pass at least one sample")
    if x.shape[1] != y.shape[1]:
        raise MMDError(f"x has {x.shape[1]} features but y has {y.shape[1]}; both sets need "
                       "the same number of columns")
    if x.dtype != y.dtype or x.device != y.device:
        raise MMDError(f"x is {x.dtype} on {x.device} but y is {y.dtype} on {y.device}; "
                       "move both to one dtype and device")
    for name, t in (("x", x), ("y", y)):
        # One pass: a NaN or inf anywhere makes the sum non-finite; only then (or on overflow
        # of a huge but finite sum) look element by element.
        if not bool(torch.isfinite(t.detach().sum())) and not bool(torch.isfinite(t).all()):
            raise MMDError(f"{name} contains NaN or infinite values; clean or drop those rows")


def _spec(kernel: str, sigmas: Sequence[float], weights: Sequence[float] | None,
          *, fast: bool = True) -> KernelSpec:
    if kernel not in KERNELS:
        raise MMDError(f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
    if isinstance(sigmas, (int, float)):
        sigmas = [sigmas]
    sig = tuple(float(s) for s in sigmas)
    if not sig:
        raise MMDError("sigmas is empty; pass at least one kernel scale (a standard deviation)")
    if not all(math.isfinite(s) and s > 0 for s in sig):
        raise MMDError(f"sigmas {list(sig)} must all be finite and > 0 (standard deviations)")
    wts = (1.0,) * len(sig) if weights is None else tuple(float(w) for w in weights)
    if len(wts) != len(sig):
        raise MMDError(f"weights has {len(wts)} entries but sigmas has {len(sig)}; "
                       "give one weight per scale")
    if not all(math.isfinite(w) and w >= 0 for w in wts) or not any(wts):
        raise MMDError(f"weights {list(wts)} must be finite, >= 0 and not all 0")
    return make_spec(kernel, sig, wts, fast=fast)


def mmd2(x: Tensor, y: Tensor, *, sigmas: Sequence[float], weights: Sequence[float] | None = None,
         estimator: str = "biased", kernel: str = "gaussian", num_features: int = 1024,
         generator: torch.Generator | None = None, block_size: int | None = None) -> Tensor:
    r"""Squared MMD between samples x (n, d) and y (m, d); a 0-dim tensor of x's dtype/device.

    Estimators (K the kernel above; all differentiable in x and y):

    - "biased" (V-statistic, what the paper trains with; always >= 0 up to rounding):
      sum_ij K(x_i,x_j)/n^2 + sum_ij K(y_i,y_j)/m^2 - 2 sum_ij K(x_i,y_j)/(n m).
    - "unbiased" (U-statistic, i = j terms dropped, 1/(n(n-1)) and 1/(m(m-1))): its mean is
      the true MMD^2, so it CAN BE NEGATIVE when the distributions are close; n, m >= 2.
    - "linear" (Gretton et al. 2012, O(n)): mean over i < min(n, m) // 2 of
      h = k(x_2i, x_2i+1) + k(y_2i, y_2i+1) - k(x_2i, y_2i+1) - k(x_2i+1, y_2i).
    - "rff": ||mean phi(x) - mean phi(y)||^2 with ``num_features`` random Fourier
      frequencies (the same for x and y, drawn from ``generator``); approximates "biased",
      gaussian kernel only.

    ``sigmas`` are standard deviations (see :func:`paper_sigmas` for the variance trap),
    ``weights`` default to 1. ``block_size`` (rows per Gram tile) is chosen from
    ``TILE_MEMORY_BUDGET`` when None. The exact estimators' gradient is hand-written and
    first-order only (no double backward).
    """
    _check_samples(x, y)
    spec = _spec(kernel, sigmas, weights)
    n, m = x.shape[0], y.shape[0]
    if estimator in ("biased", "unbiased"):
        if estimator == "unbiased" and min(n, m) < 2:
            raise MMDError(f"the unbiased estimator needs >= 2 samples per set, got n={n}, "
                           f"m={m}; use estimator='biased'")
        if block_size is None:
            block_size = choose_block(n + m, spec, x.dtype, x.device, TILE_MEMORY_BUDGET)
        elif block_size < 1:
            raise MMDError(f"block_size={block_size} must be >= 1 (or None for automatic)")
        if estimator == "biased":
            coefs, const = (1 / n**2, 1 / m**2, -1 / (n * m)), 0.0
        else:
            coefs = (1 / (n * (n - 1)), 1 / (m * (m - 1)), -1 / (n * m))
            # k(z, z) = sum(w) for every registered kernel: remove the i = j terms exactly.
            const = -(1 / (n - 1) + 1 / (m - 1)) * sum(spec.weights)
        if not torch.is_grad_enabled():  # the Function would still see requires_grad inputs
            x, y = x.detach(), y.detach()  # and form a gradient nobody can use
        return QuadFormMMD.apply(x, y, spec, coefs, const, block_size)
    if estimator == "linear":
        half = min(n, m) // 2
        if half < 1:
            raise MMDError(f"the linear estimator needs >= 2 samples per set, got n={n}, m={m}")
        x1, x2 = x[0 : 2 * half : 2], x[1 : 2 * half : 2]  # (half, d) consecutive pairs
        y1, y2 = y[0 : 2 * half : 2], y[1 : 2 * half : 2]
        h = (kernel_rows(x1, x2, spec) + kernel_rows(y1, y2, spec)
             - kernel_rows(x1, y2, spec) - kernel_rows(x2, y1, spec))  # (half,)
        return h.mean()
    if estimator == "rff":
        if kernel != "gaussian":
            raise MMDError(f"estimator 'rff' supports only kernel='gaussian', not {kernel!r}")
        if num_features < len(spec.sigmas):
            raise MMDError(f"num_features={num_features} is below the {len(spec.sigmas)} "
                           "scales; give at least one feature per scale (e.g. 1024)")
        phi = fourier_features(torch.cat([x, y]), spec, num_features, generator)  # (N, 2F)
        return (phi[:n].mean(0) - phi[n:].mean(0)).pow(2).sum()
    raise MMDError(f"unknown estimator {estimator!r}; choose one of {list(ESTIMATORS)}")


class _SqrtAtZero(torch.autograd.Function):
    """sqrt(max(L, 0)) with gradient g / (2 sqrt(L) + 1e-10) as in the released code, and 0
    where L <= 0: L >= 0 holds in exact arithmetic, so L <= 0 means x and y coincide, a
    minimum, where 0 is a valid subgradient (rounding must not blow up to g / 1e-10)."""

    @staticmethod
    def forward(ctx, loss: Tensor) -> Tensor:
        root = loss.clamp(min=0).sqrt()
        ctx.save_for_backward(loss, root)
        return root

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        loss, root = ctx.saved_tensors
        return torch.where(loss > 0, grad / (2 * root + 1e-10), torch.zeros_like(grad))


def mmd_loss(x: Tensor, y: Tensor, *, sigmas: Sequence[float],
             weights: Sequence[float] | None = None, block_size: int | None = None) -> Tensor:
    """The GMMN training loss sqrt(max(MMD^2_biased, 0)), finite gradient everywhere.

    The square root keeps gradients from vanishing as the MMD gets small (paper, sec. 3).
    """
    return _SqrtAtZero.apply(mmd2(x, y, sigmas=sigmas, weights=weights, block_size=block_size))


def median_heuristic(x: Tensor, y: Tensor, *, max_points: int = 1000, seed: int = 0) -> float:
    """A bandwidth sigma (std) = median ||a - b|| over distinct pairs of the pooled sample.

    Uses at most ``max_points`` pooled points (a seeded random subset) so the cost stays
    O(max_points^2). Falls back to the mean distance, then 1, if the median is 0.
    """
    _check_samples(x, y)
    z = torch.cat([x, y]).detach().to(torch.float64)
    if z.shape[0] > max_points:
        gen = torch.Generator().manual_seed(seed)
        z = z[torch.randperm(z.shape[0], generator=gen)[:max_points].to(z.device)]
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    dist = torch.cdist(z, z)[iu[0], iu[1]]
    for value in (dist.median() if dist.numel() else z.new_zeros(()), dist.mean()):
        if dist.numel() and float(value) > 0:
            return float(value)
    return 1.0


@dataclass(frozen=True)
class TwoSampleResult:
    """Outcome of :func:`two_sample_test`; p_value = (1 + #{perm >= statistic}) / (1 + P)."""

    statistic: float
    p_value: float
    permutations: int
    sigmas: tuple[float, ...]
    estimator: str
    kernel: str
    n: int
    m: int


def two_sample_test(x: Tensor, y: Tensor, *, sigmas: Sequence[float] | None = None,
                    weights: Sequence[float] | None = None, permutations: int = 1000,
                    seed: int = 0, estimator: str = "unbiased", kernel: str = "gaussian",
                    num_features: int = 1024) -> TwoSampleResult:
    """Permutation test of H0: x and y come from one distribution, by MMD^2.

    The kernel matrix of the pooled sample (or its random features, for "rff") is computed
    ONCE in float64; each permutation relabels which rows are x, in vectorised chunks. The
    default "unbiased" statistic is 0 in expectation under H0. ``sigmas`` default to the
    median heuristic. Memory: (n+m)^2 float64 for the exact estimators.
    """
    _check_samples(x, y)
    if permutations < 1:
        raise MMDError(f"permutations={permutations} must be >= 1 (e.g. 1000)")
    if estimator not in ESTIMATORS:
        raise MMDError(f"unknown estimator {estimator!r}; choose one of {list(ESTIMATORS)}")
    n, m = x.shape[0], y.shape[0]
    if estimator != "biased" and min(n, m) < 2:
        raise MMDError(f"estimator {estimator!r} needs >= 2 samples per set, got n={n}, m={m}")
    if estimator == "rff" and kernel != "gaussian":
        raise MMDError(f"estimator 'rff' supports only kernel='gaussian', not {kernel!r}")
    if sigmas is None:
        sigmas = [median_heuristic(x, y, seed=seed)]
    spec = _spec(kernel, sigmas, weights)
    z = torch.cat([x, y]).detach().to(torch.float64)
    feats = None
    if estimator == "rff":
        gen = torch.Generator(device=z.device).manual_seed(seed)
        feats = fourier_features(z, spec, num_features, gen)
    stat, perm = permutation_statistics(z, n, spec, estimator, permutations, seed, feats)
    # Rounding may put a relabelling equal to the observed one a hair below it: count it.
    tol = 1e-9 * (abs(stat) + sum(spec.weights) / min(n, m))
    p = (1 + int((perm >= stat - tol).sum())) / (1 + permutations)
    return TwoSampleResult(float(stat), p, permutations, spec.sigmas, estimator, kernel, n, m)
