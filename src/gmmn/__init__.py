"""gmmn: generative moment matching networks (Li, Swersky & Zemel, ICML 2015) on PyTorch.

The names below load on first use, so ``import gmmn`` stays light and does not import torch:
the command line can then set OpenMP's wait policy before torch starts its thread pool.

``import gmmn`` before torch sets ``OMP_WAIT_POLICY=PASSIVE`` too, unless the variable is
already set (yours wins), as the CLI does: idle OpenMP threads that spin made one
``GMMN().fit`` 1.5x slower on a 2-core machine (28.3 s against 18.2 s). It changes how idle
threads wait, never a number. OpenMP reads it once, when torch loads it, so after
``import torch`` it is too late: set it in the shell then (docs/training.md, "Python API").
"""

from __future__ import annotations

import importlib
import os
import sys

if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

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
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gmmn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
