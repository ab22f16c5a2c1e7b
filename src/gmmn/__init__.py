"""gmmn: generative moment matching networks (Li, Swersky & Zemel, ICML 2015) on PyTorch."""

from gmmn.mmd import (
    MMDError,
    TwoSampleResult,
    median_heuristic,
    mmd2,
    mmd_loss,
    paper_sigmas,
    two_sample_test,
)

__all__ = [
    "GMMN",
    "MMDError",
    "TwoSampleResult",
    "load_run",
    "median_heuristic",
    "mmd2",
    "mmd_loss",
    "paper_sigmas",
    "two_sample_test",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The training API pulls in the data and model modules: import it only when asked for.
    if name in ("GMMN", "load_run"):
        from gmmn import api

        return getattr(api, name)
    raise AttributeError(f"module 'gmmn' has no attribute {name!r}")
