"""Training progress for a person watching: a bar on a terminal, plain lines in a log file.

:class:`TrainingProgress` takes the :class:`gmmn.training.loop.StepInfo` of every iteration
(pass its ``update`` as the ``callback`` of :func:`gmmn.training.run.run_training`) and writes
to one stream, stderr by default. Modes:

- ``bar``: one tqdm bar per stage, the loss in its postfix.
- ``log``: a line when a stage starts and when it ends, and one every ``every`` iterations,
  e.g. ``gmmn: stage gmmn iteration 500/3000 loss 0.1234 (41 it/s)``. No carriage returns,
  so a redirected stderr stays a readable log (tqdm's redraws wrote ~65 KB per run there).
- ``stages``: only the start and end lines, the end line with the final loss and the time.
- ``auto``: ``bar`` when the stream is a terminal, else ``log``.

The library never creates one itself: the CLI and :meth:`gmmn.api.GMMN.fit` do.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from gmmn.errors import ConfigError

if TYPE_CHECKING:
    from gmmn.training.loop import StepInfo

MODES = ("auto", "bar", "log", "stages")
# Log mode's default: a line every 1/20 of a stage, so a log holds about 20 lines per stage
# whether the stage runs 40 iterations (a smoke run) or 550000 (the deep GSN): a fixed
# interval would print nothing for the first and tens of thousands of lines for the second.
LINES_PER_STAGE = 20
# The bar's loss is read every this many iterations: reading it waits for the device.
_POSTFIX_EVERY = 10


@dataclass
class _Stage:
    name: str
    iterations: int
    first: int  # the first iteration seen (above 1 when a run resumes mid-stage)
    every: int
    started: float
    iteration: int = 0
    losses: dict[str, Any] = field(default_factory=dict)  # part name -> its latest loss
    bar: Any = None


class TrainingProgress:
    """Progress of a training run, one :meth:`update` per iteration, :meth:`close` at the end.

    mode: ``auto``, ``bar``, ``log`` or ``stages`` (module docstring). every: log mode's
    interval in iterations (default: the stage's iterations // 20, at least 1). stream: where
    to write (default: ``sys.stderr`` at construction).
    """

    def __init__(self, *, mode: str = "auto", every: int | None = None,
                 stream: IO[str] | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown progress mode {mode!r}; choose one of {', '.join(MODES)}")
        if every is not None and every < 1:
            raise ConfigError(f"progress every must be at least 1 iteration, got {every}")
        self.stream = sys.stderr if stream is None else stream
        self.mode = ("bar" if _is_terminal(self.stream) else "log") if mode == "auto" else mode
        self.every = every
        self._stage: _Stage | None = None

    def update(self, step: StepInfo) -> None:
        s = self._stage
        if s is None or s.name != step.stage or step.iteration <= s.iteration:
            if s is not None:
                self._end(s)
            s = self._stage = self._start(step)
        s.iteration = step.iteration
        s.losses.update(step.losses)  # a GAN's parts need not all step every iteration
        t, last = step.iteration, step.iteration == step.iterations
        if s.bar is not None:
            s.bar.update(1)
            if t % _POSTFIX_EVERY == 0 or last:
                s.bar.set_postfix({k: f"{v:.4g}" for k, v in _floats(s.losses).items()},
                                  refresh=False)
        elif self.mode == "log" and t % s.every == 0 and not last:
            self._write(f"stage {s.name} iteration {t}/{s.iterations} {_loss(s.losses)} "
                        f"({_rate(s)})")
        if last:
            self._end(s)
            self._stage = None

    def close(self) -> None:
        """End the open stage (a run that stopped early says where); safe to call twice."""
        if self._stage is not None:
            self._end(self._stage)
            self._stage = None

    def _start(self, step: StepInfo) -> _Stage:
        every = self.every or max(1, step.iterations // LINES_PER_STAGE)
        s = _Stage(step.stage, step.iterations, step.iteration, every, time.monotonic())
        if self.mode == "bar":
            from tqdm import tqdm

            s.bar = tqdm(total=step.iterations, initial=step.iteration - 1, desc=step.stage,
                         unit="it", file=self.stream, dynamic_ncols=True)
        else:
            resumed = f", resuming at iteration {step.iteration}" if step.iteration > 1 else ""
            self._write(f"stage {s.name} started: {s.iterations} iterations{resumed}")
        return s

    def _end(self, s: _Stage) -> None:
        if s.bar is not None:
            s.bar.close()
            return
        took = _duration(time.monotonic() - s.started)
        if s.iteration == s.iterations:
            done = s.iteration - s.first + 1
            self._write(f"stage {s.name} done: {done} iterations in {took} ({_rate(s)}), "
                        f"final {_loss(s.losses)}")
        else:
            self._write(f"stage {s.name} stopped at iteration {s.iteration}/{s.iterations} "
                        f"after {took}, {_loss(s.losses)}")

    def _write(self, line: str) -> None:
        # Flushed per line, so `tail -f` on a redirected stderr follows the run.
        self.stream.write(f"gmmn: {line}\n")
        self.stream.flush()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _floats(losses: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in losses.items()}  # one device wait per part


def _loss(losses: dict[str, Any]) -> str:
    values = _floats(losses)
    if not values:
        return "no loss yet"
    if len(values) == 1:
        return f"loss {next(iter(values.values())):.4g}"
    return "loss " + ", ".join(f"{k} {v:.4g}" for k, v in values.items())


def _rate(s: _Stage) -> str:
    # The clock starts after the stage's first iteration, so that one is not counted.
    seconds, done = time.monotonic() - s.started, s.iteration - s.first
    if seconds <= 0 or done <= 0:
        return "- it/s"
    rate = done / seconds
    return f"{rate:.0f} it/s" if rate >= 100 else f"{rate:.3g} it/s"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
