"""Randomised quasi-Monte Carlo (RQMC) prior points: scrambled Sobol' points mapped through the
prior's inverse CDF (Hofert, Prasad & Zhu, "Quasi-random sampling for multivariate
distributions via generative neural networks", JCGS 2021, Sec. 3).

A generator ``f`` trained on a prior ``Z = F^{-1}(U)`` with ``U ~ U[0, 1]^p`` is fed
``Z_i = F^{-1}(u_i)`` for a randomised low-discrepancy point set ``u_1, ..., u_n`` instead of
pseudo-random ``U_i``. Each ``f(Z_i)`` still has the model's distribution (every scrambled point
is uniform on [0, 1]^p), but the point set covers the cube far more evenly, so for smooth
``f`` and integrands the estimator ``(1/n) sum_i g(f(Z_i))`` stays unbiased with a variance
that falls faster than the Monte Carlo rate ``O(1/n)`` (up to ``O(n^-3 (log n)^(p-1))`` for
Owen-scrambled nets and smooth integrands, Owen 1997).

Engine: :class:`scipy.stats.qmc.Sobol` with ``scramble=True`` (a linear matrix scramble plus a
random digital shift, Matousek 1998, the scipy default), chosen over
``torch.quasirandom.SobolEngine`` because it draws float64 points (torch's default float32
rounds points next to 1 to exactly 1, where the normal inverse CDF is infinite), seeds from a
numpy ``SeedSequence`` that takes gmmn's 64-bit sampling seeds whole, and ships the discrepancy
measures (:func:`scipy.stats.qmc.discrepancy`) the tests check the points against. One seed
gives one independent randomisation; one call's points are the first ``n`` points of one
scrambled sequence (never restarted per batch).

The inverse CDFs: ``uniform`` (gmmn's U[-1, 1]) ``z = 2u - 1``; ``normal`` (N(0, 1)) ``z =
Phi^{-1}(u)`` with ``u`` clipped to ``[eps, 1 - eps]`` (``eps`` float64's machine epsilon), so
``|z| <= Phi^{-1}(1 - eps) ~ 8.1`` stays finite.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from gmmn.errors import ConfigError, DataError

# scipy.stats.qmc.Sobol's direction numbers (Joe & Kuo 2008) cover this many dimensions.
MAX_DIM = 21201
# Sobol(bits=30), scipy's default: at most 2**30 points of one sequence.
MAX_POINTS = 2**30
EPS = float(np.finfo(np.float64).eps)
PRIOR_SAMPLINGS = ("pseudo", "sobol")


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def sobol_points(n: int, dim: int, *, seed: int | None = None) -> np.ndarray:
    """The first ``n`` points (n, dim), float64 in [0, 1), of one Owen-type scrambled Sobol'
    sequence (LMS + digital shift) whose randomisation is fixed by ``seed`` (None: fresh).

    Warns when ``n`` is not a power of two: a Sobol' net's balance (each of the ``2^m``
    elementary boxes of volume ``2^-m`` holds exactly its share of points) holds only for
    ``n = 2^m``, and the RQMC variance gain shrinks for other ``n``."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or not 1 <= dim <= MAX_DIM:
        raise ConfigError(f"Sobol' points need a prior dimension from 1 to {MAX_DIM} (the "
                          f"direction numbers scipy's Sobol engine ships), got {dim!r}; use "
                          f"pseudo-random sampling (qmc=False) or a smaller --prior-dim")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= MAX_POINTS:
        raise DataError(f"the number of Sobol' points must be a whole number from 1 to 2**30 "
                        f"(the engine's 30 bits), got {n!r}; draw fewer points per call")
    if not is_power_of_two(int(n)):
        warnings.warn(f"n = {n} is not a power of two: Sobol' points are balanced (a (t, m, "
                      f"s)-net) only for n = 2^m, so randomised QMC gains less here; use n = "
                      f"{2 ** math.ceil(math.log2(n))} or {2 ** math.floor(math.log2(n))}",
                      UserWarning, stacklevel=3)
    from scipy.stats import qmc

    engine = qmc.Sobol(d=int(dim), scramble=True, rng=np.random.default_rng(seed))
    with warnings.catch_warnings():  # ours above says it, with the reason
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(int(n))


def inverse_cdf(u: np.ndarray, prior: str) -> np.ndarray:
    """Map points ``u`` of [0, 1]^p to the prior: ``uniform`` (U[-1, 1]^p) ``2u - 1``,
    ``normal`` (N(0, I)) ``Phi^{-1}(clip(u, eps, 1 - eps))``, finite at the cube's faces."""
    if prior == "uniform":
        return 2.0 * u - 1.0
    if prior == "normal":
        from scipy.special import ndtri

        return ndtri(np.clip(u, EPS, 1.0 - EPS))
    raise ConfigError(f"unknown prior {prior!r} for Sobol' points; choose uniform or normal")


def prior_points(n: int, dim: int, *, prior: str, seed: int | None = None):
    """``n`` RQMC prior points (n, dim) as a float32 CPU tensor: :func:`sobol_points` mapped
    by :func:`inverse_cdf`."""
    import torch

    z = inverse_cdf(sobol_points(n, dim, seed=seed), prior)
    return torch.from_numpy(z.astype(np.float32))


def prior_sampling(qmc: bool) -> str:
    """``qmc`` (a bool) as a prior sampling name, ``sobol`` or ``pseudo``."""
    if not isinstance(qmc, bool | np.bool_):
        raise ConfigError(f"qmc must be True (randomised Sobol' prior points) or False "
                          f"(pseudo-random), got {qmc!r}")
    return "sobol" if qmc else "pseudo"
