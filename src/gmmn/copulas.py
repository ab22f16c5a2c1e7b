"""Copula data: pseudo-observations and samplers of the t and Clayton copulas.

A copula is the distribution of ``U = (F_1(X_1), ..., F_d(X_d))`` for a random vector ``X``
with continuous margins ``F_j``: the dependence of ``X`` with the margins removed (Sklar).
GMMNs learn copulas from their pseudo-observations and then serve as (quasi-random) samplers
of them (Hofert, Prasad & Zhu, JCGS 2021; the R package ``gnn``).

* :func:`pobs`: pseudo-observations ``U_ij = R_ij / (n + 1)``, ``R_ij`` the rank of ``X_ij``
  among ``X_1j, ..., X_nj`` (ties: average ranks, as R's ``copula::pobs``), ``gmmn train
  --transform pobs``.
* :func:`t_copula`: the t copula ``C_{nu,P}``: ``X ~ t_nu(0, P)`` (scipy.stats.multivariate_t),
  ``U_j = t_nu(X_j)`` (scipy.stats.t.cdf). Kendall's tau of a pair ``tau = (2/pi) arcsin
  rho``, for every ``nu`` (an elliptical copula).
* :func:`t_copula_cdm`: the same copula from points of [0, 1]^d by the conditional
  distribution method (Rosenblatt's inverse), the map that turns (randomised) Sobol' points
  into RQMC samples of the true copula (Hofert et al., Sec. 4).
* :func:`clayton_copula`: the Clayton copula ``C(u) = (sum_j u_j^-theta - d + 1)^(-1/theta)``
  by the Marshall-Olkin construction: ``V ~ Gamma(1/theta, 1)``, ``E_j ~ Exp(1)``, ``U_j =
  (1 + E_j / V)^(-1/theta)``; ``tau = theta / (theta + 2)``.

Library choice: scipy.stats has the multivariate t and the univariate t (both well kept and
already gmmn dependencies), which give the t copula directly; it has no Archimedean copulas,
and ``copulae`` / ``pyvinecopulib`` would be new compiled dependencies for one sampler that
is four lines here, so Clayton uses the standard construction, tested against its known
Kendall's tau.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from gmmn.errors import ConfigError, DataError

TRANSFORMS = ("pobs",)


def pobs(x) -> np.ndarray:
    """Pseudo-observations of the (n, d) sample ``x``: per column, rank / (n + 1) with
    average ranks for ties; values in (0, 1), float64. The map is idempotent (pobs of pobs is
    pobs), so a split transformed twice stays the same."""
    from scipy.stats import rankdata

    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1:
        raise DataError(f"pseudo-observations need an (n, d) array with n >= 1, got shape "
                        f"{tuple(a.shape)}")
    if not np.isfinite(a).all():
        raise DataError("pseudo-observations need finite values; drop the rows holding NaN or "
                        "infinity first")
    return rankdata(a, axis=0, method="average") / (a.shape[0] + 1)


def rho_from_tau(tau: float) -> float:
    """The correlation of an elliptical (Gauss, t) copula with Kendall's tau ``tau``:
    ``rho = sin(pi tau / 2)``."""
    return math.sin(math.pi * _tau(tau, low=-1.0) / 2)


def clayton_theta(tau: float) -> float:
    """Clayton's parameter with Kendall's tau ``tau`` in (0, 1): ``theta = 2 tau / (1 - tau)``."""
    tau = _tau(tau, low=0.0)
    return 2 * tau / (1 - tau)


def equicorrelation(d: int, rho: float) -> np.ndarray:
    """The (d, d) correlation matrix with ``rho`` off the diagonal."""
    _dim(d)
    p = np.full((d, d), float(rho))
    np.fill_diagonal(p, 1.0)
    return p


def t_copula(n: int, *, df: float, corr, seed: int | None = None) -> np.ndarray:
    """``n`` samples (n, d) of the t copula with ``df`` degrees of freedom and correlation
    matrix ``corr``: ``U_j = t_df(X_j)``, ``X ~ t_df(0, corr)`` (scipy.stats)."""
    from scipy.stats import multivariate_t, t

    p = _corr(corr)
    df = _df(df)
    x = multivariate_t(loc=np.zeros(len(p)), shape=p, df=df).rvs(
        size=_n(n), random_state=np.random.default_rng(seed))
    return t.cdf(np.asarray(x).reshape(n, len(p)), df)


def t_copula_cdm(u, *, df: float, corr) -> np.ndarray:
    """The t copula's conditional distribution method: points ``u`` (n, d) of [0, 1]^d (iid
    uniform, or randomised QMC) to samples of ``C_{df,corr}``.

    With ``corr = L L^T`` (Cholesky) and ``Y = L^{-1} X`` for ``X ~ t_df(0, corr)``, the
    conditional law of ``Y_j`` given ``Y_1, ..., Y_{j-1}`` is ``sqrt((df + sum_{k<j} Y_k^2) /
    (df + j - 1)) * t_{df + j - 1}``, so ``Y_j = sqrt(...) t^{-1}_{df+j-1}(u_j)``, ``X = L Y``
    and ``U_j = t_df(X_j)`` (Hofert et al. 2021, Sec. 4; Cambou, Hofert & Lemieux 2017)."""
    from scipy.stats import t

    p = _corr(corr)
    df = _df(df)
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 2 or u.shape[1] != len(p):
        raise DataError(f"points for the conditional distribution method must have shape "
                        f"(n, {len(p)}), got {tuple(u.shape)}")
    eps = np.finfo(np.float64).eps
    u = np.clip(u, eps, 1 - eps)
    chol = np.linalg.cholesky(p)
    y = np.empty_like(u)
    q = np.zeros(len(u))  # sum_{k<j} Y_k^2
    for j in range(len(p)):
        y[:, j] = np.sqrt((df + q) / (df + j)) * t.ppf(u[:, j], df + j)
        q += y[:, j] ** 2
    return t.cdf(y @ chol.T, df)


def clayton_copula(n: int, *, theta: float, d: int, seed: int | None = None) -> np.ndarray:
    """``n`` samples (n, d) of the d-dimensional Clayton copula with ``theta > 0``
    (Marshall-Olkin: ``U_j = (1 + E_j / V)^(-1/theta)``, ``V ~ Gamma(1/theta)``)."""
    if isinstance(theta, bool) or not isinstance(theta, numbers.Real) or not (
            0 < theta < math.inf):
        raise ConfigError(f"the Clayton parameter theta must be a positive number, got "
                          f"{theta!r}; set it from Kendall's tau with clayton_theta(tau)")
    rng = np.random.default_rng(seed)
    n, d = _n(n), _dim(d)
    v = rng.gamma(1.0 / theta, 1.0, size=(n, 1))
    e = rng.exponential(1.0, size=(n, d))
    return np.exp(-np.log1p(e / v) / theta)


def kendall_tau(u) -> np.ndarray:
    """The (d, d) matrix of pairwise sample Kendall's tau (scipy.stats.kendalltau)."""
    from scipy.stats import kendalltau

    a = np.asarray(u, dtype=np.float64)
    d = a.shape[1]
    out = np.eye(d)
    for i in range(d):
        for j in range(i + 1, d):
            out[i, j] = out[j, i] = kendalltau(a[:, i], a[:, j]).statistic
    return out


def cvm_statistic(u, reference, *, chunk: int = 256) -> float:
    """Cramer-von Mises goodness-of-fit statistic ``S_n = sum_i (C_n(u_i) - C(u_i))^2`` of the
    sample ``u`` (n, d) (Genest, Remillard & Beaudoin 2009; Hofert et al. 2021, Sec. 4.2),
    where ``C_n`` is ``u``'s empirical copula (its pseudo-observations' empirical CDF) and
    the true copula ``C`` is the empirical CDF of a large ``reference`` sample of it (the t
    copula's CDF has no closed form)."""
    u = pobs(u)
    ref = np.asarray(reference, dtype=np.float64)
    total = 0.0
    for start in range(0, len(u), chunk):
        pts = u[start:start + chunk, None, :]
        cn = (u[None, :, :] <= pts).all(-1).mean(1)
        c = (ref[None, :, :] <= pts).all(-1).mean(1)
        total += float(((cn - c) ** 2).sum())
    return total


def _tau(tau, *, low: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not low < tau < 1:
        raise ConfigError(f"Kendall's tau must be a number in ({low:g}, 1), got {tau!r}")
    return float(tau)


def _df(df) -> float:
    if isinstance(df, bool) or not isinstance(df, numbers.Real) or not 0 < df < math.inf:
        raise ConfigError(f"the t copula's degrees of freedom df must be a positive number, "
                          f"got {df!r}")
    return float(df)


def _n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise DataError(f"the number of copula samples must be a positive whole number, got "
                        f"{n!r}")
    return int(n)


def _dim(d) -> int:
    if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 2:
        raise ConfigError(f"a copula needs a dimension d >= 2, got {d!r}")
    return int(d)


def _corr(corr) -> np.ndarray:
    p = np.asarray(corr, dtype=np.float64)
    ok = p.ndim == 2 and p.shape[0] == p.shape[1] >= 2 and np.isfinite(p).all() \
        and np.allclose(p, p.T) and np.allclose(np.diag(p), 1.0)
    if ok:
        ok = bool(np.linalg.eigvalsh(p).min() > 0)
    if not ok:
        raise ConfigError("corr must be a symmetric positive definite (d, d) correlation "
                          "matrix with ones on the diagonal and d >= 2; build one with "
                          "equicorrelation(d, rho)")
    return p
