"""Maximum mean discrepancy (placeholder: straightforward reference version).

This file imports nothing from the rest of the package. The fast, memory-bounded
implementation replaces this one; the signatures below are the contract.
"""

from __future__ import annotations

import math

import torch


class MMDError(ValueError):
    """Bad input to an MMD function (shapes, NaN, sigmas, estimator)."""


_PAPER_VARIANCES = {
    "mnist": [2.0, 5.0, 10.0, 20.0, 40.0, 80.0],
    "tfd": [5.0, 10.0, 20.0, 40.0, 80.0, 160.0],
    "mnist-code": [1.0],
    "tfd-code": [1.0, 2.0, 5.0, 10.0, 20.0, 40.0],
}


def paper_sigmas(name: str) -> list[float]:
    """The released code's scales as standard deviations: sqrt of its variances."""
    if name not in _PAPER_VARIANCES:
        raise MMDError(f"unknown scale set {name!r}; choose one of {sorted(_PAPER_VARIANCES)}")
    return [math.sqrt(v) for v in _PAPER_VARIANCES[name]]


def mmd2(x, y, *, sigmas, weights=None, estimator="biased"):
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).pow(2)
    n = x.shape[0]
    w = weights if weights is not None else [1.0] * len(sigmas)
    k = sum(wi * torch.exp(-d2 / (2 * s * s)) for wi, s in zip(w, sigmas))
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def mmd_loss(x, y, *, sigmas, weights=None):
    return torch.sqrt(torch.clamp(mmd2(x, y, sigmas=sigmas, weights=weights), min=0) + 1e-12)
