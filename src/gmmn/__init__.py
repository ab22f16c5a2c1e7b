"""gmmn: generative moment matching networks (Li, Swersky & Zemel, ICML 2015) on PyTorch.

The names below load on first use, so ``import gmmn`` stays light and does not import torch:
the command line can then set OpenMP's wait policy before torch starts its thread pool.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "MMDError": "gmmn.mmd",
    "TwoSampleResult": "gmmn.mmd",
    "median_heuristic": "gmmn.mmd",
    "mmd2": "gmmn.mmd",
    "mmd_loss": "gmmn.mmd",
    "paper_sigmas": "gmmn.mmd",
    "two_sample_test": "gmmn.mmd",
    "GMMN": "gmmn.api",
    "load_run": "gmmn.api",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name == "__version__":  # its own module, so any module can read it without this one
        return importlib.import_module("gmmn._version").__version__
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gmmn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
