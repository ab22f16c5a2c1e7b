"""Stopping a run cleanly on SIGINT or SIGTERM.

:class:`StopOnSignal` notes the first signal; the run checkpoints at the end of the iteration
and raises :meth:`StopOnSignal.interrupted`, which the CLI turns into exit code 128 + the
signal's number. A second signal stops at once, as without this.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch

from gmmn.errors import TrainingInterrupted


class StopOnSignal:
    """SIGINT and SIGTERM set ``signum``; training checkpoints at the end of the iteration and
    raises :meth:`interrupted`. A second signal restores the previous handlers and re-raises
    itself (stop at once, as without this). Active only in the main thread of a single
    process: data-parallel workers would see the signal at different iterations."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, *, active: bool) -> None:
        self.signum: int | None = None
        self.previous: dict[int, object] = {}
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.active = (active and not distributed
                       and threading.current_thread() is threading.main_thread())

    def __enter__(self) -> StopOnSignal:
        if self.active:
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    @property
    def stopping(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            self.__exit__()
            signal.raise_signal(signum)
            return
        self.signum = signum

    def interrupted(self, out: Path | None, where: str) -> TrainingInterrupted:
        name = signal.Signals(self.signum).name
        return TrainingInterrupted(f"stopped by {name} at {where}; the checkpoint in {out} "
                                   f"holds it: continue with --resume", self.signum)
