"""gmmn: generative moment matching networks (Li, Swersky & Zemel, ICML 2015) on PyTorch."""

from gmmn.mmd import MMDError, mmd2, mmd_loss, paper_sigmas

__all__ = ["MMDError", "mmd2", "mmd_loss", "paper_sigmas"]
__version__ = "0.1.0"
