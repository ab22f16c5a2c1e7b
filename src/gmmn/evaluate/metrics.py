"""Sample-quality metrics beyond the Parzen estimate, on features or raw rows.

Parzen log-likelihoods mislead (k-means centroids of the training set outscore real data), so
the report adds metrics that each compare samples with held-out data and come with the score
of real data beside them:

* Frechet distance of Gaussians fitted to features (Heusel et al. 2017):
  ``FD = |mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)``.
* KID (Binkowski et al. 2018): the unbiased MMD^2 under ``k(x, y) = (x.y / d + 1)^3``,
  averaged over random subsets, with its standard deviation over the subsets.
* Class coverage: the histogram of predicted classes of samples, the fraction of classes
  present, KL(samples || reference) and total variation to a reference distribution.
* Improved precision and recall (Kynkaanniemi et al. 2019): a point is covered by a set when
  it lies inside some member's ball reaching that member's k-th nearest neighbour in its set.
  precision = covered fraction of samples by data, recall = of data by samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from gmmn.errors import ConfigError, DataError

# Pairwise-distance entries held at once (64 MiB of float64).
_CHUNK_ENTRIES = 1 << 23

# Neighbours per point for the precision/recall radii: the value Kynkaanniemi et al. (2019)
# recommend; the report states it beside the numbers.
PR_K = 3


def _features(name: str, x) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to(torch.float64)
    if t.ndim != 2 or t.shape[0] < 2:
        raise DataError(f"{name} must be an (n, d) matrix with n >= 2, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise DataError(f"{name} contains NaN or infinite values")
    return t


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; round-off negatives clipped to 0."""
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray,
                                cov_b: np.ndarray) -> float:
    """Frechet (2-Wasserstein) distance between N(mu_a, cov_a) and N(mu_b, cov_b), squared.

    ``tr (C_a C_b)^1/2`` is computed as ``tr (S C_b S)^1/2`` with ``S = C_a^1/2``: the same
    eigenvalues, but a symmetric PSD matrix, so no complex parts from ``sqrtm`` of a
    non-symmetric product and no blow-up for singular covariances.
    """
    s = _psd_sqrt(np.asarray(cov_a, dtype=np.float64))
    m = s @ np.asarray(cov_b, dtype=np.float64) @ s
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())
    diff = np.asarray(mu_a, dtype=np.float64) - np.asarray(mu_b, dtype=np.float64)
    fd = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)
    return max(fd, 0.0)  # round-off may leave -1e-12 for identical inputs


def frechet_distance(feat_a, feat_b) -> float:
    """Frechet distance between Gaussians fitted (mean, unbiased covariance) to two sets."""
    a, b = _features("feat_a", feat_a).numpy(), _features("feat_b", feat_b).numpy()
    if a.shape[1] != b.shape[1]:
        raise DataError(f"feature sets differ in width: {a.shape[1]} vs {b.shape[1]}")
    return frechet_distance_from_stats(a.mean(0), np.cov(a, rowvar=False, ddof=1).reshape(
        a.shape[1], a.shape[1]), b.mean(0), np.cov(b, rowvar=False, ddof=1).reshape(
        b.shape[1], b.shape[1]))


def _unbiased_poly_mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = x.shape[0], y.shape[0]
    # U-statistics: the diagonal k(x_i, x_i) terms are left out of the within-set means.
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kernel_inception_distance(feat_a, feat_b, *, n_subsets: int = 10, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID: mean and std over subsets of the unbiased MMD^2 with ``(x.y/d + 1)^3``.

    Each subset draws ``min(subset_size, n_a, n_b)`` rows of each set without replacement;
    when that would take both sets whole (every subset the same, a std of 0 that says
    nothing), subsets take half of each set instead, so the std shows the sampling spread.
    Unbiased, so it is near 0 (and may be negative) for two sets from one distribution.
    """
    a, b = _features("feat_a", feat_a), _features("feat_b", feat_b)
    if a.shape[1] != b.shape[1]:
        raise DataError(f"feature sets differ in width: {a.shape[1]} vs {b.shape[1]}")
    if n_subsets < 1 or subset_size < 2:
        raise ConfigError("KID needs n_subsets >= 1 and subset_size >= 2")
    size = min(subset_size, a.shape[0], b.shape[0])
    if n_subsets > 1 and size == a.shape[0] == b.shape[0]:
        size = max(2, size // 2)
    g = torch.Generator().manual_seed(seed)
    vals = [_unbiased_poly_mmd2(a[torch.randperm(a.shape[0], generator=g)[:size]],
                                b[torch.randperm(b.shape[0], generator=g)[:size]])
            for _ in range(n_subsets)]
    return float(np.mean(vals)), float(np.std(vals))


def class_coverage(labels, *, n_classes: int, reference=None) -> dict:
    """Histogram of (predicted) sample classes and how it compares with a reference.

    ``reference`` is a class distribution (length ``n_classes``) or labels of real data;
    default uniform. Returns ``histogram`` (fractions), ``classes_present`` (fraction of
    classes with at least one sample), ``kl`` = KL(samples || reference) in nats (finite
    while the reference gives every class some mass) and ``total_variation``.
    """
    lab = torch.as_tensor(labels).reshape(-1).long()
    if lab.numel() == 0 or lab.min() < 0 or lab.max() >= n_classes:
        raise DataError(f"class labels must be non-empty and lie in [0, {n_classes})")
    p = torch.bincount(lab, minlength=n_classes).double()
    p /= p.sum()
    if reference is None:
        q = torch.full((n_classes,), 1.0 / n_classes, dtype=torch.float64)
    else:
        r = torch.as_tensor(reference)
        if r.is_floating_point() and r.numel() == n_classes:
            q = r.double() / r.double().sum()
        else:
            q = torch.bincount(r.reshape(-1).long(), minlength=n_classes).double()
            q /= q.sum()
    nz = p > 0
    kl = float((p[nz] * (p[nz] / q[nz]).log()).sum()) if bool((q[nz] > 0).all()) else math.inf
    return {"histogram": p.tolist(), "classes_present": float(nz.double().mean()),
            "kl": kl, "total_variation": float(0.5 * (p - q).abs().sum())}


def _chunked_sq_dists(x: torch.Tensor, y: torch.Tensor,
                      reduce: Callable[[torch.Tensor, int], None]) -> None:
    """Feed exact float64 squared distances (rows of x vs all of y) in row chunks."""
    step = max(1, _CHUNK_ENTRIES // y.shape[0])
    ysq = (y * y).sum(1)
    for i in range(0, x.shape[0], step):
        xb = x[i:i + step]
        d = torch.addmm(ysq.unsqueeze(0), xb, y.T, alpha=-2.0) + (xb * xb).sum(1, keepdim=True)
        reduce(d.clamp_(min=0.0), i)


def nearest_neighbours(queries, reference, *, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distances (n, k) and indices (n, k) of each query's k nearest references."""
    q, r = _features("queries", queries), _features("reference", reference)
    if q.shape[1] != r.shape[1]:
        raise DataError(f"queries have {q.shape[1]} columns, the reference {r.shape[1]}")
    k = min(k, r.shape[0])
    dist = torch.empty(q.shape[0], k, dtype=torch.float64)
    idx = torch.empty(q.shape[0], k, dtype=torch.long)

    def take(d: torch.Tensor, i: int) -> None:
        v, j = torch.topk(d, k, dim=1, largest=False)
        dist[i:i + d.shape[0]], idx[i:i + d.shape[0]] = v.sqrt(), j
    _chunked_sq_dists(q, r, take)
    return dist, idx


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Squared distance from each row to its k-th nearest other row of the same set."""
    if x.shape[0] <= k:
        raise DataError(f"precision/recall with k={k} needs more than {k} points per set")
    out = torch.empty(x.shape[0], dtype=torch.float64)

    def take(d: torch.Tensor, i: int) -> None:
        out[i:i + d.shape[0]] = torch.topk(d, k + 1, dim=1, largest=False).values[:, k]
    _chunked_sq_dists(x, x, take)  # column k skips the point itself at distance 0
    return out


def _covered(points: torch.Tensor, centres: torch.Tensor, radii2: torch.Tensor) -> float:
    hit = torch.zeros(points.shape[0], dtype=torch.bool)

    def take(d: torch.Tensor, i: int) -> None:
        hit[i:i + d.shape[0]] = (d <= radii2.unsqueeze(0)).any(1)
    _chunked_sq_dists(points, centres, take)
    return float(hit.double().mean())


def precision_recall(real, fake, *, k: int = PR_K) -> tuple[float, float]:
    """Improved precision and recall of ``fake`` against ``real`` (Kynkaanniemi et al. 2019)."""
    r, f = _features("real", real), _features("fake", fake)
    if r.shape[1] != f.shape[1]:
        raise DataError(f"real rows have {r.shape[1]} columns, fake rows {f.shape[1]}")
    return _covered(f, r, _knn_radii(r, k)), _covered(r, f, _knn_radii(f, k))
