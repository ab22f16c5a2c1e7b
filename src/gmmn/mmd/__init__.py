r"""Maximum mean discrepancy (MMD): estimators, the GMMN loss and a two-sample test.

For samples x (n, d) and y (m, d) and a kernel k, the squared MMD is

    MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y),

with the multi-scale Gaussian kernel of Li, Swersky & Zemel (2015) by default:

    k(a, b) = sum_s w_s exp(-||a - b||^2 / (2 sigma_s^2)),   sigma_s a STANDARD DEVIATION.

The biased and unbiased estimators are exact and stream over tiles of the (n+m)^2 Gram
matrix (bounded memory, see ``TILE_MEMORY_BUDGET``) with a hand-written gradient, switched to
a differentiable recomputation when a double backward needs it; "linear" and "rff" cost
O(n + m). The permutation test holds the pooled kernel matrix when it fits
``PERM_MEMORY_BUDGET`` and recomputes its tiles otherwise.

The subpackage stands alone: it imports nothing from the rest of gmmn. Its private modules are
the kernel registry (``_kernels``), the tiled Gram-matrix autograd Function (``_blocked``) and
the permutation machinery (``_perm``).
"""

from __future__ import annotations

import math
import numbers
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._blocked import FirstOrderQuadFormMMD, QuadFormMMD, autograd_quadform, choose_block
from ._cmmd import (  # noqa: F401 - CMMD_MATRICES: public, with the budget
    CMMD_MATRICES,
    CMMD_MEMORY_BUDGET,
    CONDITION_KERNELS,
    cmmd2_delta,
    cmmd2_dense,
    cmmd_bytes,
)
from ._kernels import (
    KERNELS,
    KernelSpec,
    fourier_features,
    fourier_frequencies,
    kernel_rows,
    make_spec,
)
from ._perm import null_chunks


class MMDError(ValueError):
    """Bad input to an MMD function (shapes, NaN, sigmas, estimator)."""


ESTIMATORS = ("biased", "unbiased", "linear", "rff")

# Bytes of Gram-matrix tiles one call may hold; 20000 x 20000 float32 would need 1.6 GB.
TILE_MEMORY_BUDGET = 64 * 2**20

# Bytes the permutation test may hold. The dense path (the pooled kernel matrix, 8 (n+m)^2
# bytes, and its temporaries) fits up to n + m ~ 4700; larger samples recompute kernel tiles
# for each chunk of relabellings in this much memory whatever n is (see docs/mmd.md).
PERM_MEMORY_BUDGET = 512 * 2**20

# The permutation test counts exceedances as it goes (memory does not grow with the count),
# but time does: above this count, or when the first chunk's time extrapolates past this many
# seconds, it refuses. A p-value resolves to 1 / (1 + permutations) anyway.
MAX_PERMUTATIONS = 10**9
PERM_TIME_LIMIT = 24 * 3600.0

# Scales outside this range overflow or underflow 1 / (2 sigma^2) before any data is seen.
_SIGMA_RANGE = (1e-150, 1e150)
_HALF = (torch.float16, torch.bfloat16)

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


def _whole(v) -> bool:
    """A whole number: int or numpy integer, not bool (numbers.Integral)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _seed(seed) -> int:
    """``seed`` as an int for torch.Generator.manual_seed, which takes 0 <= seed < 2**64."""
    if not _whole(seed) or not 0 <= seed < 2**64:
        raise MMDError(f"seed={seed!r} must be a whole number from 0 to 2**64 - 1")
    return int(seed)


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
        if t.shape[1] == 0:
            raise MMDError(f"{name} has shape {tuple(t.shape)}: 0 features; pass samples "
                           "with at least one feature")
        if t.device.type == "meta":
            raise MMDError(f"{name} is a meta tensor (a shape without values); pass a tensor "
                           "that holds data")
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


def _floats(name: str, values) -> tuple[float, ...]:
    """A number or a sequence of numbers as floats; anything else one MMDError naming it."""
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    try:
        if isinstance(values, (str, bytes)):
            raise TypeError
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise MMDError(f"{name}={values!r} is not a number or a list of numbers; pass e.g. "
                       f"{name}=[1.0, 2.0]") from None


def _spec(kernel: str, sigmas: Sequence[float], weights: Sequence[float] | None,
          *, fast: bool = True) -> KernelSpec:
    if kernel not in KERNELS:
        raise MMDError(f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
    sig = _floats("sigmas", sigmas)
    if not sig:
        raise MMDError("sigmas is empty; pass at least one kernel scale (a standard deviation)")
    if not all(math.isfinite(s) and s > 0 for s in sig):
        raise MMDError(f"sigmas {list(sig)} must all be finite and > 0 (standard deviations)")
    if not all(_SIGMA_RANGE[0] <= s <= _SIGMA_RANGE[1] for s in sig):
        raise MMDError(f"sigmas {list(sig)} lie outside [{_SIGMA_RANGE[0]:g}, "
                       f"{_SIGMA_RANGE[1]:g}], where 1/(2 sigma^2) cannot be represented; "
                       "rescale the data and the sigmas together")
    wts = (1.0,) * len(sig) if weights is None else _floats("weights", weights)
    if len(wts) != len(sig):
        raise MMDError(f"weights has {len(wts)} entries but sigmas has {len(sig)}; "
                       "give one weight per scale")
    if not all(math.isfinite(w) and w >= 0 for w in wts) or not any(wts):
        raise MMDError(f"weights {list(wts)} must be finite, >= 0 and not all 0")
    return make_spec(kernel, sig, wts, fast=fast)


def _compute_dtype(x: Tensor, y: Tensor, sigmas: tuple[float, ...], *,
                   promote: bool = True) -> torch.dtype:
    """x's dtype, or a wider one where x's cannot hold the kernel's exponents (with a warning).

    float16 and bfloat16 always compute in float32: their 3-4 significant digits gave MMD^2
    errors of 5-16%. Range: with z the pooled sample, every squared distance and every term
    of the norm expansion is at most 16 d max|z|^2 max(1, gamma), gamma = 1 / (2 sigma_min^2);
    past the dtype's largest number they turn into inf - inf = NaN.
    """
    norms = [torch.linalg.vector_norm(t.detach(), ord=math.inf) for t in (x, y)]
    zmax = float(torch.maximum(*norms))  # max |value|; one device sync
    gamma = max(0.5 / s / s for s in sigmas)
    reach = 16 * x.shape[1] * zmax * zmax * max(1.0, gamma)
    scale = f" with smallest sigma {min(sigmas):.3g}" if gamma > 1 else ""
    start = torch.float32 if x.dtype in _HALF else x.dtype
    for dtype in dict.fromkeys((start, torch.float64) if promote else (start,)):
        if max(reach, gamma) < torch.finfo(dtype).max:
            break
    else:
        raise MMDError(f"x and y reach |value| {zmax:.3g}{scale}: the kernel exponents "
                       f"(~{reach:.3g}) overflow {dtype}; rescale the data and the sigmas "
                       f"together (divide both by {max(zmax, 1.0):.3g})")
    if x.dtype in _HALF:
        warnings.warn(f"x and y are {x.dtype}; the MMD is computed in {dtype} and returned in "
                      "float32 (half precision gives MMD^2 errors of several percent)",
                      stacklevel=3)
    elif dtype != x.dtype:
        warnings.warn(f"x and y reach |value| {zmax:.3g}{scale}: the kernel exponents "
                      f"(~{reach:.3g}) overflow {x.dtype}, so the MMD is computed in {dtype}; "
                      f"rescale the data and the sigmas to stay in {x.dtype}", stacklevel=3)
    return dtype


def mmd2(x: Tensor, y: Tensor, *, sigmas: Sequence[float], weights: Sequence[float] | None = None,
         estimator: str = "biased", kernel: str = "gaussian", num_features: int = 1024,
         generator: torch.Generator | None = None, block_size: int | None = None,
         double_backward: bool | None = None) -> Tensor:
    r"""Squared MMD between samples x (n, d) and y (m, d); a 0-dim tensor of x's dtype/device.

    Estimators (K the kernel above; all differentiable in x and y):

    - "biased" (V-statistic, what the paper trains with; always >= 0 up to rounding):
      sum_ij K(x_i,x_j)/n^2 + sum_ij K(y_i,y_j)/m^2 - 2 sum_ij K(x_i,y_j)/(n m).
    - "unbiased" (U-statistic, i = j terms dropped, 1/(n(n-1)) and 1/(m(m-1))): its mean is
      the true MMD^2, so it CAN BE NEGATIVE when the distributions are close; n, m >= 2.
    - "linear" (Gretton et al. 2012, O(n)): mean over i < min(n, m) // 2 of
      h = k(x_2i, x_2i+1) + k(y_2i, y_2i+1) - k(x_2i, y_2i+1) - k(x_2i+1, y_2i).
      It pairs CONSECUTIVE rows in the order given, so sorted or grouped rows bias it; pass
      ``generator`` to shuffle x and y (independently) first. With n != m the rows past
      2 * (min(n, m) // 2) are not used, with a warning.
    - "rff": ||mean phi(x) - mean phi(y)||^2 with ``num_features`` random Fourier
      frequencies (the same for x and y, drawn from ``generator``); approximates "biased",
      gaussian kernel only.

    ``sigmas`` are standard deviations (see :func:`paper_sigmas` for the variance trap),
    ``weights`` default to 1. ``block_size`` (rows per Gram tile) is chosen from
    ``TILE_MEMORY_BUDGET`` when None.

    Gradients of the exact estimators are hand-written (one pass, bounded memory). When a
    backward pass must itself be differentiable (``create_graph=True``, e.g. a gradient
    penalty), that backward recomputes MMD^2 in plain autograd ops and differentiates it,
    which holds O((n+m)^2) values ("double_backward=None", automatic). ``double_backward=True``
    uses the plain autograd formulation from the start (also for ``torch.func``);
    ``double_backward=False`` keeps the first-order function, whose gradient cannot be
    differentiated again (torch raises).

    dtype: float32 and float64 compute in their own dtype; float16/bfloat16 compute in
    float32 and return float32, with a warning. Data and sigmas whose kernel exponents
    overflow the dtype (e.g. float32 data of 1e20, or sigma 1e-30) compute in float64 with a
    warning, or raise :class:`MMDError` if float64 cannot hold them either.
    """
    _check_samples(x, y)
    spec = _spec(kernel, sigmas, weights)
    out_dtype = torch.float32 if x.dtype in _HALF else x.dtype
    dtype = _compute_dtype(x, y, spec.sigmas)
    if dtype != x.dtype:
        x, y = x.to(dtype), y.to(dtype)
    out = _mmd2(x, y, spec, estimator, num_features, generator, block_size, double_backward)
    return out.to(out_dtype)


def _mmd2(x: Tensor, y: Tensor, spec: KernelSpec, estimator: str, num_features: int,
          generator: torch.Generator | None, block_size: int | None,
          double_backward: bool | None) -> Tensor:
    """:func:`mmd2` on validated inputs of a dtype that holds the kernel's exponents."""
    kernel = spec.name
    n, m = x.shape[0], y.shape[0]
    if estimator in ("biased", "unbiased"):
        if estimator == "unbiased" and min(n, m) < 2:
            raise MMDError(f"the unbiased estimator needs >= 2 samples per set, got n={n}, "
                           f"m={m}; use estimator='biased'")
        if block_size is None:
            block_size = choose_block(n + m, spec, x.dtype, x.device, TILE_MEMORY_BUDGET)
        elif not _whole(block_size) or block_size < 1:
            raise MMDError(f"block_size={block_size!r} must be a whole number >= 1 (or None "
                           "for automatic)")
        block_size = int(block_size)
        if estimator == "biased":
            coefs, const = (1 / n**2, 1 / m**2, -1 / (n * m)), 0.0
        else:
            coefs = (1 / (n * (n - 1)), 1 / (m * (m - 1)), -1 / (n * m))
            # k(z, z) = sum(w) for every registered kernel: remove the i = j terms exactly.
            const = -(1 / (n - 1) + 1 / (m - 1)) * sum(spec.weights)
        if not torch.is_grad_enabled():  # the Function would still see requires_grad inputs
            x, y = x.detach(), y.detach()  # and form a gradient nobody can use
        if double_backward:
            return autograd_quadform(x, y, spec, coefs, const, block_size)
        fn = QuadFormMMD if double_backward is None else FirstOrderQuadFormMMD
        return fn.apply(x, y, spec, coefs, const, block_size)
    if estimator == "linear":
        half = min(n, m) // 2
        if half < 1:
            raise MMDError(f"the linear estimator needs >= 2 samples per set, got n={n}, m={m}")
        _warn_linear_drops(n, m, stacklevel=4)
        if generator is not None:  # consecutive pairs of a shuffled order: unbiased
            dev = generator.device
            x = x[torch.randperm(n, generator=generator, device=dev).to(x.device)]
            y = y[torch.randperm(m, generator=generator, device=dev).to(y.device)]
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


def _warn_linear_drops(n: int, m: int, *, stacklevel: int) -> None:
    if n != m:
        used = 2 * (min(n, m) // 2)
        warnings.warn(f"the linear estimator uses {used} rows of each set: {n - used} of x's "
                      f"{n} and {m - used} of y's {m} rows are ignored (n != m); pass "
                      "generator= to use a random subset instead of the first rows",
                      stacklevel=stacklevel)


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


def cmmd2(x: Tensor, y: Tensor, cx: Tensor, cy: Tensor, *, sigmas: Sequence[float],
          weights: Sequence[float] | None = None, lam: float = 1.0,
          condition_kernel: str = "delta", condition_sigmas: Sequence[float] | None = None,
          kernel: str = "gaussian") -> Tensor:
    r"""Squared conditional MMD (Ren, Li, Luo & Zhu, NeurIPS 2016) between samples x (n, d)
    with conditions cx and samples y (m, d) with conditions cy; a 0-dim tensor of x's dtype.

        CMMD^2 = Tr(K_x A_x L_x A_x) + Tr(K_y A_y L_y A_y) - 2 Tr(K_xy A_y L_yx A_x),

    K the condition kernel's Gram matrices, L the output kernel's (``kernel``, ``sigmas``,
    ``weights`` as in :func:`mmd2`: sigmas are standard deviations), A = (K + lam I)^{-1}
    with the ridge ``lam`` > 0 (the module ``gmmn.mmd._cmmd`` writes it out).

    Conditions are (n,) labels or (n, q) rows. ``condition_kernel="delta"``: 1 for equal
    rows, else 0 (class labels, or one-hot rows); CMMD^2 then reduces to
    sum_k || n_k/(n_k+lam) mu_k(x) - m_k/(m_k+lam) mu_k(y) ||^2 over the classes k, which
    for equal class counts is sum_k (n_k/(n_k+lam))^2 MMD^2_biased(x_k, y_k)
    (docs/conditional.md).
    ``"gaussian"``: a Gaussian mixture of standard deviations ``condition_sigmas`` on
    continuous conditions (float rows), differentiable in them too.

    The delta kernel is computed by that reduction: one memory-bounded Gram quadratic form
    per class, in the samples' dtype (as :func:`mmd2`), no solve. The gaussian condition
    kernel is dense: it solves (n, n) and (m, m) systems in float64 and holds about
    ``CMMD_MATRICES`` float64 matrices of (n + m)^2 entries; calls above
    ``CMMD_MEMORY_BUDGET`` bytes (2000 + 2000 rows) are refused. Differentiable in x and y.
    """
    _check_samples(x, y)
    spec = _spec(kernel, sigmas, weights, fast=False)
    n, m = x.shape[0], y.shape[0]
    cx, cy = _conditions("cx", cx, n, x), _conditions("cy", cy, m, x)
    if cx.shape[1] != cy.shape[1]:
        raise MMDError(f"cx has {cx.shape[1]} condition columns but cy has {cy.shape[1]}; "
                       "both sets need conditions of one shape")
    if condition_kernel not in CONDITION_KERNELS:
        raise MMDError(f"unknown condition_kernel {condition_kernel!r}; choose one of "
                       f"{list(CONDITION_KERNELS)}")
    cond_spec = None
    if condition_kernel == "gaussian":
        if condition_sigmas is None:
            raise MMDError("condition_kernel='gaussian' needs condition_sigmas (standard "
                           "deviations of the condition kernel), e.g. condition_sigmas=[1.0]")
        for name, c in (("cx", cx), ("cy", cy)):
            if not c.is_floating_point() or not bool(torch.isfinite(c).all()):
                raise MMDError(f"{name} must hold finite floats for the gaussian condition "
                               "kernel; use condition_kernel='delta' for class labels")
        cond_spec = _spec("gaussian", condition_sigmas, None, fast=False)
    elif condition_sigmas is not None:
        raise MMDError("condition_sigmas sets the gaussian condition kernel's scales; with "
                       "condition_kernel='delta' drop it")
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not math.isfinite(lam) \
            or lam <= 0:
        raise MMDError(f"lam={lam!r} must be a finite number > 0 (the ridge of (K + lam I)^-1)")
    if condition_kernel == "delta":
        dtype = _compute_dtype(x, y, spec.sigmas)
        if not torch.is_grad_enabled():
            x, y = x.detach(), y.detach()
        out = cmmd2_delta(x.to(dtype), y.to(dtype), cx, cy, spec=spec, lam=float(lam),
                          budget=TILE_MEMORY_BUDGET)
        return out.to(torch.float32 if x.dtype in _HALF else x.dtype)
    need = cmmd_bytes(n, m)
    if need > CMMD_MEMORY_BUDGET:
        raise MMDError(f"the CMMD of {n} and {m} rows would hold {need / 2**30:.3g} GiB of "
                       f"float64 matrices, over CMMD_MEMORY_BUDGET "
                       f"({CMMD_MEMORY_BUDGET / 2**30:.3g} GiB); pass smaller batches (it "
                       "solves (n, n) systems: memory grows as (n + m)^2, time as n^3)")
    out_dtype = torch.float32 if x.dtype in _HALF else x.dtype
    xd, yd = x.to(torch.float64), y.to(torch.float64)
    try:
        out = cmmd2_dense(xd, yd, cx, cy, spec=spec, condition_kernel=condition_kernel,
                          condition_spec=cond_spec, lam=float(lam))
    except ValueError as exc:
        raise MMDError(f"{exc}; pass a larger lam (now {lam:g})") from None
    return out.to(out_dtype)


def cmmd_loss(x: Tensor, y: Tensor, cx: Tensor, cy: Tensor, *, sigmas: Sequence[float],
              **options) -> Tensor:
    """The conditional GMMN's training loss sqrt(max(CMMD^2, 0)) (options: :func:`cmmd2`),
    with the finite gradient at 0 of :func:`mmd_loss`."""
    return _SqrtAtZero.apply(cmmd2(x, y, cx, cy, sigmas=sigmas, **options))


def _conditions(name: str, c, rows: int, like: Tensor) -> Tensor:
    """Conditions as (rows, q): (rows,) labels become one column; one MMDError otherwise."""
    if not isinstance(c, Tensor):
        raise MMDError(f"{name} is a {type(c).__name__}; pass a torch.Tensor of labels (n,) "
                       "or condition rows (n, q)")
    shape = tuple(c.shape)
    if c.dim() == 1:
        c = c[:, None]
    if c.dim() != 2 or c.shape[0] != rows or c.shape[1] == 0:
        raise MMDError(f"{name} has shape {shape}; pass one condition per sample: "
                       f"({rows},) labels or ({rows}, q) rows")
    if c.device != like.device:
        raise MMDError(f"{name} is on {c.device} but the samples are on {like.device}; move "
                       "them to one device")
    return c


def median_heuristic(x: Tensor, y: Tensor, *, max_points: int = 1000, seed: int = 0) -> float:
    """A bandwidth sigma (std) = median ||a - b|| over distinct pairs of the pooled sample.

    Uses at most ``max_points`` pooled points (a seeded random subset) so the cost stays
    O(max_points^2). Falls back to the mean distance, then 1, if the median is 0.
    """
    _check_samples(x, y)
    seed = _seed(seed)
    x, y = x.detach(), y.detach()
    n, total = x.shape[0], x.shape[0] + y.shape[0]
    if total > max_points:
        # The rows of cat([x, y]) that a seeded permutation picks, gathered from x and y
        # without building that copy of both sets: a training split can be large.
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(total, generator=gen)[:max_points].to(x.device)
        from_x = pick < n
        z = x.new_empty(pick.shape[0], x.shape[1])
        z[from_x], z[~from_x] = x[pick[from_x]], y[pick[~from_x] - n]
    else:
        z = torch.cat([x, y])
    z = z.to(torch.float64)
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    dist = torch.cdist(z, z)[iu[0], iu[1]]
    for value in (dist.median() if dist.numel() else z.new_zeros(()), dist.mean()):
        if dist.numel() and float(value) > 0:
            return float(value)
    return 1.0


@dataclass(frozen=True)
class TwoSampleResult:
    """Outcome of :func:`two_sample_test`.

    ``p_value`` = (1 + #{b : T_b >= T}) / (1 + B), never 0, for "median", "fuse" and "split";
    None for "agg", which gives a decision at level ``alpha`` and no single p-value.
    ``reject``: H0 rejected at ``alpha``. ``decided_by``: the kernel(s) that made the decision
    ("median": its scale(s); "agg": the kernels whose single tests rejected, empty when none
    did; "fuse": the kernel with the largest share of the fused statistic; "split": the kernel
    chosen on the first half); ``kernels``: the whole collection with each kernel's numbers
    (:class:`gmmn.mmd._multi.KernelChoice`). For "agg" also ``level_permutations`` (B2) and
    ``level_correction`` (u_alpha); ``resampling``: "permutation" or "wild bootstrap".
    """

    statistic: float
    p_value: float | None
    permutations: int
    sigmas: tuple[float, ...]
    estimator: str
    kernel: str
    n: int
    m: int
    method: str = "median"
    alpha: float = 0.05
    reject: bool | None = None
    decided_by: tuple = ()
    kernels: tuple = ()
    resampling: str = "permutation"
    level_permutations: int | None = None
    level_correction: float | None = None

    def __post_init__(self):
        if self.reject is None and self.p_value is not None:
            object.__setattr__(self, "reject", bool(self.p_value <= self.alpha))


def two_sample_test(x: Tensor, y: Tensor, *, method: str = "median", alpha: float | None = None,
                    sigmas: Sequence[float] | None = None,
                    weights: Sequence[float] | None = None, permutations: int | None = None,
                    seed: int = 0, estimator: str = "unbiased", kernel: str = "gaussian",
                    num_features: int = 1024, memory_budget: int | None = None,
                    standardize: bool = False, kernels: str | Sequence[str] | None = None,
                    bandwidths: Sequence[float] | None = None,
                    number_bandwidths: int | None = None, weighting: str = "uniform",
                    resampling: str = "auto", level_permutations: int | None = None,
                    bisection_steps: int = 50, lambda_multiplier: float = 1.0,
                    split_ratio: float = 0.5) -> TwoSampleResult:
    """Permutation test of H0: x and y come from one distribution, by MMD^2.

    ``method`` chooses the kernel (docs/mmd.md says when to use which):

    - "median" (default, unchanged): one kernel of the given ``sigmas``, else the median
      heuristic, ``permutations`` relabellings (default 1000); the options below.
    - "agg": MMDAgg (Schrab et al., JMLR 2023): a collection of gaussian and laplace kernels
      from the data's distance quantiles (``kernels``, ``number_bandwidths`` = 10 each, or
      explicit ``bandwidths``), ``weighting`` "uniform" | "decreasing" | "increasing" |
      "centred", ``permutations`` = B1 = 2000 and ``level_permutations`` = B2 = 2000 simulated
      statistics (the wild bootstrap when n = m, else relabellings: ``resampling``), the level
      corrected by ``bisection_steps`` = 50. A decision at ``alpha``: ``p_value`` is None.
    - "fuse": MMD-FUSE (Biggs, Schrab & Gretton, NeurIPS 2023): the log-sum-exp of the
      normalised MMD^2 of the same families (10 bandwidths each, linearly spaced),
      ``lambda_multiplier`` times sqrt(n (n-1)), ``permutations`` = 2000; a p-value.
    - "split": the kernel with the best power criterion MMD^2 / sd on a ``split_ratio`` part
      of each sample (100 gaussian bandwidths), tested on the rest (2000 permutations).

    ``alpha`` (default 0.05) is the level of ``reject``; a count of relabellings too small to
    reach it raises :class:`MMDError` naming the smallest that can (for "median" only when
    ``alpha`` is given, so that calls without it behave as before). The aggregated methods
    compute their kernels in float32 tiles (a tie tolerance of 1e-5 absorbs the rounding) and
    hold at most ``memory_budget`` bytes whatever n is; a budget that cannot hold one tile
    raises.

    ``standardize=True`` first z-scores both sets by the POOLED per-feature mean and sd of x
    and y together (a constant feature gets sd 1): features in different units then weigh
    alike in the distance, instead of the largest-valued one setting the median bandwidth
    alone. Pooling treats both sets the same, so the test stays exact under H0 (the
    transform is a function of the pooled sample, which relabelling leaves unchanged).

    "median" runs in float64. When the pooled kernel matrix (8 (n+m)^2 bytes, with its
    temporaries; the random features for "rff") fits ``memory_budget`` bytes
    (``PERM_MEMORY_BUDGET`` when None) it is computed ONCE and each permutation relabels which
    rows are x, in vectorised chunks. Otherwise its tiles are recomputed for each chunk of
    relabellings, in that much memory whatever n is: the same relabellings for a seed, the
    same statistic and p-value up to rounding, at the cost of recomputing the kernel once per
    chunk (docs/mmd.md). The default "unbiased" statistic is 0 in expectation under H0.
    ``sigmas`` default to the median heuristic.

    Exceedances are counted chunk by chunk, so memory does not grow with ``permutations``;
    counts above ``MAX_PERMUTATIONS``, or whose time extrapolated from the first chunk passes
    ``PERM_TIME_LIMIT`` seconds, are refused with :class:`MMDError`. ``seed``: 0 to 2**64 - 1.
    """
    from . import _methods  # kernel selection; imports nothing from this module
    from ._multi import KernelChoice

    _check_samples(x, y)
    extra = {"kernels": kernels, "bandwidths": bandwidths, "number_bandwidths": number_bandwidths,
             "weighting": weighting, "resampling": resampling,
             "level_permutations": level_permutations, "bisection_steps": bisection_steps,
             "lambda_multiplier": lambda_multiplier, "split_ratio": split_ratio}
    try:
        _methods.check_method(method)
        level = _methods.level(alpha)
        _methods.check_options(method, extra)
    except _methods.BadInput as exc:
        raise MMDError(str(exc)) from None
    if method != "median":
        median_only = {"sigmas": sigmas is not None, "weights": weights is not None,
                       "estimator": estimator != "unbiased", "kernel": kernel != "gaussian",
                       "num_features": num_features != 1024}
        for name, given in median_only.items():
            if given:
                raise MMDError(f"{name}= applies to method 'median' only; method {method!r} "
                               "chooses its kernels from kernels=, bandwidths= and "
                               "number_bandwidths=")
        seed = _seed(seed)
        budget = PERM_MEMORY_BUDGET if memory_budget is None else _budget(memory_budget,
                                                                          x.device)
        x, y = x.detach().to(torch.float64), y.detach().to(torch.float64)
        if standardize:
            x, y = _pooled_zscore(x, y)
        _compute_dtype(x, y, (1.0,), promote=False)  # distances themselves must fit float64
        try:
            fields = _methods.run(method, x.cpu(), y.cpu(), alpha=level,
                                  permutations=permutations, seed=seed, budget=budget,
                                  max_permutations=MAX_PERMUTATIONS, check_time=_check_time,
                                  **extra)
        except _methods.BadInput as exc:
            raise MMDError(str(exc)) from None
        return TwoSampleResult(**fields)
    if permutations is None:
        permutations = 1000
    if not _whole(permutations):
        raise MMDError(f"permutations={permutations!r} must be a whole number (e.g. 1000)")
    if permutations < 1:
        raise MMDError(f"permutations={permutations} must be >= 1 (e.g. 1000)")
    if permutations > MAX_PERMUTATIONS:
        raise MMDError(f"permutations={permutations} is more than {MAX_PERMUTATIONS:.0e}: "
                       f"a p-value resolves to 1/(1 + permutations), so 10**4 to 10**6 "
                       f"relabellings are plenty; pass fewer")
    permutations, seed = int(permutations), _seed(seed)
    if alpha is not None:
        try:
            _methods.check_reachable(permutations, level)
        except _methods.BadInput as exc:
            raise MMDError(str(exc)) from None
    if estimator not in ESTIMATORS:
        raise MMDError(f"unknown estimator {estimator!r}; choose one of {list(ESTIMATORS)}")
    n, m = x.shape[0], y.shape[0]
    if estimator != "biased" and min(n, m) < 2:
        raise MMDError(f"estimator {estimator!r} needs >= 2 samples per set, got n={n}, m={m}")
    if estimator == "rff" and kernel != "gaussian":
        raise MMDError(f"estimator 'rff' supports only kernel='gaussian', not {kernel!r}")
    if memory_budget is not None:
        memory_budget = _budget(memory_budget, x.device)
    if estimator == "linear":
        _warn_linear_drops(n, m, stacklevel=3)
    x, y = x.detach().to(torch.float64), y.detach().to(torch.float64)
    if standardize:
        x, y = _pooled_zscore(x, y)
    _compute_dtype(x, y, (1.0,), promote=False)  # distances themselves must fit float64
    if sigmas is None:
        sigmas = [median_heuristic(x, y, seed=seed)]
    spec = _spec(kernel, sigmas, weights)
    _compute_dtype(x, y, spec.sigmas, promote=False)
    z = torch.cat([x, y])
    freqs = None
    if estimator == "rff":
        gen = torch.Generator(device=z.device).manual_seed(seed)
        freqs = fourier_frequencies(z.shape[1], spec, num_features, gen, device=z.device,
                                    dtype=z.dtype)
    budget = PERM_MEMORY_BUDGET if memory_budget is None else memory_budget
    started = time.perf_counter()
    stat, chunks = null_chunks(z, n, spec, estimator, permutations, seed, freqs,
                               budget=budget)
    # Rounding may put a relabelling equal to the observed one a hair below it: count it.
    tol = 1e-9 * (abs(stat) + sum(spec.weights) / min(n, m))
    # Exceedances are counted chunk by chunk, so memory does not grow with the count.
    count = done = 0
    for chunk in chunks:
        count += int((chunk >= stat - tol).sum())
        if done == 0 and chunk.shape[0] < permutations:
            _check_time(time.perf_counter() - started, chunk.shape[0], permutations)
        done += chunk.shape[0]
    p = (1 + count) / (1 + permutations)
    share = sum(spec.weights)
    chosen = tuple(KernelChoice(kernel, s, float(stat), p, weight=w / share)
                   for s, w in zip(spec.sigmas, spec.weights, strict=True))
    return TwoSampleResult(float(stat), p, permutations, spec.sigmas, estimator, kernel, n, m,
                           method="median", alpha=level, decided_by=chosen, kernels=chosen)


def _budget(memory_budget, device: torch.device) -> int:
    """``memory_budget`` as whole bytes, at most the memory ``device`` has."""
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, numbers.Real) or \
            not math.isfinite(memory_budget) or memory_budget != int(memory_budget) or \
            memory_budget < 1:
        raise MMDError(f"memory_budget={memory_budget!r} must be a positive whole number of "
                       "bytes (or None for PERM_MEMORY_BUDGET)")
    total = _total_memory(device)
    if total is not None and memory_budget > total:
        raise MMDError(f"memory_budget={memory_budget:.4g} bytes is more than the "
                       f"{total / 2**30:.3g} GiB of memory of {device}; pass at most that "
                       "(or None for PERM_MEMORY_BUDGET)")
    return int(memory_budget)


def _total_memory(device: torch.device) -> int | None:
    """The memory of ``device`` (physical memory for the CPU), or None when unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError, RuntimeError, AssertionError):
        return None


def _check_time(seconds: float, done: int, permutations: int) -> None:
    """Refuse a count whose time, extrapolated from the first chunk, passes PERM_TIME_LIMIT."""
    estimate = seconds * permutations / done
    if estimate > PERM_TIME_LIMIT:
        raise MMDError(f"permutations={permutations} would take about {_duration(estimate)} "
                       f"here (timed over the first {done}), more than PERM_TIME_LIMIT "
                       f"({_duration(PERM_TIME_LIMIT)}); a p-value resolves to 1/(1 + "
                       f"permutations), so pass fewer")


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} seconds"


def _pooled_zscore(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """x and y z-scored by the per-feature mean and sd (ddof 0) of their union."""
    z = torch.cat([x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)])
    mean, sd = z.mean(0), z.std(0, correction=0)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    return ((x.reshape(x.shape[0], -1) - mean) / sd).reshape(x.shape), \
        ((y.reshape(y.shape[0], -1) - mean) / sd).reshape(y.shape)
