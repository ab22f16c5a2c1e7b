"""Exception types for errors a user can cause.

Every error a user can fix (bad path, corrupt file, wrong shape, NaN, bad flag) is raised as a
subclass of :class:`GMMNError` with one sentence naming the input and what to do. The CLI shows
these in one line without a traceback. ``gmmn.mmd`` imports nothing from the package, so it
raises its own :class:`gmmn.mmd.MMDError`; the CLI treats both alike.
"""

from __future__ import annotations


class GMMNError(Exception):
    """Base class of the errors a user can cause and fix."""


class DataError(GMMNError, ValueError):
    """A dataset file or array is missing, corrupt or malformed."""


class ConfigError(GMMNError, ValueError):
    """A preset, flag or config field is invalid."""


class CheckpointError(GMMNError):
    """A checkpoint or run directory cannot be used."""


class OutputError(GMMNError):
    """A file or folder cannot be written: no space left, no permission, not a folder."""


class TrainingDiverged(ConfigError):
    """The loss became NaN or infinite: a setting (learning rate, kernel scales) does not
    suit the data."""


class TrainingInterrupted(GMMNError):
    """SIGINT or SIGTERM stopped training after a checkpoint was written."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class FitCheckFailed(GMMNError):
    """Training ran to its end, but its samples are far from the data (diverged or collapsed,
    :func:`gmmn.training.auto.check_fit`); the run and its checkpoint are kept."""
