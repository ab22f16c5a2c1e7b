"""The one training loop, and the interface every stage offers it.

Every stage of every model — data-space GMMN, code-space GMMN, autoencoder pretraining and
fine-tuning — runs through :func:`train_loop`. What differs between them lives in a
:class:`Stage` (each family's, :mod:`gmmn.families`), which the loop knows only through this
interface:

* ``stage.parts``: a sequence of :class:`Part`, each one optimiser, its schedule and the loss
  it minimises. The loop runs the parts of an iteration in order. GMMN and autoencoders have
  one part; a GAN baseline plugs in as two parts (discriminator, then generator) — alternating
  steps with two optimisers, no copy of the loop. A part whose ``every`` is k > 1 runs only on
  iterations divisible by k (e.g. k discriminator steps per generator step, inverted).
* ``stage.after_step(t)``: periodic work after iteration t (the autoencoder's "keep the best
  training loss" evaluation) returning extra metrics.
* :class:`Hooks`: data-parallel training plugs in here. ``gather`` is handed to objectives,
  which call it on generated samples and data batches before the loss so that every worker
  computes the MMD of the global batches (all-gather with gradient flowing back to the local
  shard); ``reduce_gradients`` runs between ``backward`` and the optimiser step (an
  all-reduce of the gradients). Defaults are the single-process identity.

The optimisers and schedules the parts use live in :mod:`gmmn.training.optim`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gmmn.errors import TrainingDiverged
from gmmn.training.optim import Optimizer, Schedule

log = logging.getLogger(__name__)


@dataclass
class Part:
    """One optimiser and the loss it minimises, with its schedule and optional clipping."""

    name: str
    optimizer: Optimizer
    schedule: Schedule
    loss: Callable[[int], torch.Tensor]  # iteration t -> scalar loss
    clip: float | None = None  # clip the gradient's total 2-norm to this
    every: int = 1  # run only on iterations divisible by this
    # What to change when this part's loss diverges (the message names stage and iteration).
    advice: str = "lower --lr and check --sigmas against the data's scale"


@dataclass
class Hooks:
    """Extension points for data-parallel training; identity in a single process.

    The loop uses ``gather`` (through objectives) and ``reduce_gradients``; stages use
    ``shard``; the runner uses ``broadcast``, ``main`` and ``from_main``
    (:mod:`gmmn.training.distributed` builds the data-parallel ones).
    """

    gather: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda x: x)
    reduce_gradients: Callable[[list[torch.nn.Parameter]], None] = field(
        default=lambda params: None)
    # A global batch -> this worker's rows.
    shard: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda x: x)
    # Make every worker's module equal to worker 0's.
    broadcast: Callable[[torch.nn.Module], None] = field(default=lambda module: None)
    # Whether this worker writes the run's files and shows progress.
    main: bool = True
    # Run a function on worker 0 and hand its result (or its exception) to every worker.
    from_main: Callable[[Callable[[], Any]], Any] = field(default=lambda fn: fn())


class Stage:
    """One phase of training; subclasses provide ``parts`` and may override the rest.

    ``state_dict``/``load_state_dict`` hold everything a resume needs beyond the models
    (optimiser buffers, data order, RNG generators, best-so-far); ``finish`` runs once after
    the last iteration (e.g. load the best autoencoder).
    """

    name: str = "stage"
    iterations: int = 0
    parts: Sequence[Part] = ()
    check_every: int = 1  # iterations between the loop's checks for a non-finite loss
    # Whether the loop hands this stage the run's data-parallel hooks (gather, gradient
    # all-reduce); a stage that is not runs whole on every worker.
    data_parallel: bool = False

    def after_step(self, t: int) -> dict[str, float]:
        return {}

    def finish(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {"optimizers": {p.name: p.optimizer.state_dict() for p in self.parts}}

    def load_state_dict(self, state: dict) -> None:
        for p in self.parts:
            p.optimizer.load_state_dict(state["optimizers"][p.name])

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """Samples in data space for progress pictures, or None if the stage has none."""
        return None


@dataclass
class StepInfo:
    """What the loop reports after each iteration; losses stay tensors (no device sync)."""

    stage: str
    iteration: int
    iterations: int
    losses: dict[str, torch.Tensor]
    lr: float
    momentum: float
    extra: dict[str, float]


def train_loop(stage: Stage, *, start: int = 0, hooks: Hooks | None = None,
               on_step: Callable[[StepInfo], None] | None = None) -> None:
    """Run ``stage`` from iteration ``start + 1`` to ``stage.iterations``.

    Per iteration t and per part: set (lr, momentum) from the schedule, zero the gradients,
    evaluate the loss, backward, ``hooks.reduce_gradients``, clip, step. ``on_step`` receives
    a :class:`StepInfo` (the caller logs, checkpoints and draws pictures there).

    A loss that is NaN or infinite raises :class:`gmmn.errors.TrainingDiverged` before its
    step, naming the stage, iteration and learning rate. The check waits for the device once
    per part every ``stage.check_every`` iterations: 1 for MMD stages, whose input checks wait
    anyway; a GAN checks where the logger reads its losses (non-finite weights stay so). The
    last iteration is always checked, and so are the weights after its step: a stage that
    diverged never ends as if it had finished.
    """
    hooks = hooks or Hooks()
    last = stage.iterations
    for t in range(start + 1, stage.iterations + 1):
        losses: dict[str, torch.Tensor] = {}
        lr = momentum = 0.0
        for part in stage.parts:
            if t % part.every:
                continue
            lr, momentum = part.schedule(t)
            opt = part.optimizer
            opt.lr, opt.momentum = lr, momentum
            opt.zero_grad()
            loss = part.loss(t)
            if (t % stage.check_every == 0 or t == last) and not bool(torch.isfinite(loss)):
                when = "at" if stage.check_every == 1 else "by"
                raise TrainingDiverged(
                    f"training diverged in stage {stage.name}: its {part.name} loss became "
                    f"{float(loss.detach())} {when} iteration {t} (lr {lr:g}, momentum "
                    f"{momentum:g}); {part.advice}, and start again (the last checkpoint is "
                    f"kept)")
            loss.backward()
            hooks.reduce_gradients(opt.params)
            if part.clip is not None:
                torch.nn.utils.clip_grad_norm_(opt.params, part.clip)
            opt.step()
            losses[part.name] = loss.detach()
        if t == last:
            _check_weights(stage, t, lr, momentum)
        extra = stage.after_step(t)
        if on_step is not None:
            on_step(StepInfo(stage.name, t, stage.iterations, losses, lr, momentum, extra))


def _check_weights(stage: Stage, t: int, lr: float, momentum: float) -> None:
    """Raise TrainingDiverged when the last step left a part's weights NaN or infinite."""
    for part in stage.parts:
        params = [p for p in part.optimizer.params if p.numel()]
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            raise TrainingDiverged(
                f"training diverged in stage {stage.name}: its {part.name} weights became NaN "
                f"or infinite by iteration {t} (lr {lr:g}, momentum {momentum:g}); "
                f"{part.advice}, and start again (the last checkpoint is kept)")
