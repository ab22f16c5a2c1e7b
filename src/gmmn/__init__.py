"""gmmn: generative moment matching networks (Li, Swersky & Zemel, ICML 2015) on PyTorch."""

from gmmn.mmd import MMDError, mmd2, mmd_loss, paper_sigmas

__all__ = ["GMMN", "MMDError", "load_run", "mmd2", "mmd_loss", "paper_sigmas"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The training API pulls in the data and model modules: import it only when asked for.
    if name in ("GMMN", "load_run"):
        from gmmn import api

        return getattr(api, name)
    raise AttributeError(f"module 'gmmn' has no attribute {name!r}")
