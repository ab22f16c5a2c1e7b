"""Building blocks that every family's stages share (below the families, above the loop):

* :func:`seeded_rng`: a CPU random-number generator seeded from the run seed and a purpose;
* :class:`BatchSampler`: minibatches in shuffled epochs;
* :class:`SampledStage`: a stage with one batch sampler and one extra RNG stream;
* :class:`GeneratorSamples`: progress pictures drawn from a trained generator;
* :class:`KeepsBest`: the generator with the best validation score along training, kept;
* :func:`encode_rows`: a network applied to a whole split in bounded chunks;
* :func:`median_distance` and :func:`warn_far_scales`: kernel scales against the data.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable

import torch

from gmmn.mmd import median_heuristic
from gmmn.training.loop import Stage

log = logging.getLogger(__name__)

# Rows per forward pass when a whole training split goes through a network without gradients
# (codes for the GMMN stage, the greedy layers' inputs, the fine-tuning loss): 5000 rows of a
# 1024-unit layer are 20 MB of float32, so memory stays flat whatever the split's size.
ENCODE_CHUNK = 5000

# Kernel scales this far from the median distance see (almost) every pair of points alike:
# exp(-d^2 / 2 sigma^2) is ~1 for all pairs (sigma >> d) or ~0 for all distinct pairs
# (sigma << d), and the MMD carries no gradient worth the name.
FAR_SCALE = 100.0


def seeded_rng(seed: int, *names: str) -> torch.Generator:
    """A CPU random-number generator seeded from the run seed and a purpose ("gmmn",
    "prior"), so stages never share a stream and adding one stage does not shift another's
    randomness."""
    key = zlib.crc32("/".join(names).encode())
    return torch.Generator().manual_seed(seed * 1_000_003 + key)


@torch.no_grad()
def encode_rows(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                chunk: int = ENCODE_CHUNK) -> torch.Tensor:
    """``fn`` applied to the rows of ``x`` in chunks of ``chunk`` rows, concatenated."""
    return torch.cat([fn(x[i:i + chunk]) for i in range(0, len(x), chunk)])


def median_distance(x: torch.Tensor, *, seed: int = 0, n: int = 1000) -> float:
    """The median pairwise Euclidean distance of up to ``n`` random rows of ``x`` (float64):
    :func:`gmmn.mmd.median_heuristic` of the rows of ``x``, so where that median is 0 the mean
    distance, and 1 when all rows are equal (or there is only one)."""
    if len(x) < 2:
        return 1.0  # no pair of rows: as for rows that are all equal
    return median_heuristic(x[:1], x[1:], max_points=n, seed=seed)  # pools back to x


def warn_far_scales(targets: torch.Tensor, sigmas, *, seed: int, name: str) -> None:
    """Warn when every kernel scale is :data:`FAR_SCALE` times away from the targets'
    median distance: such a loss carries almost no signal."""
    if len(targets) < 2:
        return
    m = median_distance(targets, seed=seed)
    if m > 0 and (all(s > FAR_SCALE * m for s in sigmas)
                  or all(s < m / FAR_SCALE for s in sigmas)):
        log.warning("every kernel scale (--sigmas %s) is over %gx away from the median "
                    "distance %.3g between the %s stage's targets: the loss will carry almost "
                    "no signal; choose scales near it (e.g. --sigmas %s)",
                    ",".join(f"{s:g}" for s in sigmas), FAR_SCALE, m, name,
                    ",".join(f"{m * r:.3g}" for r in (0.25, 0.5, 1.0, 2.0)))


class BatchSampler:
    """Minibatches in shuffled epochs, wrapping across epoch ends as the released code did."""

    def __init__(self, data: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.data = data
        # A batch larger than the data would hold each row many times over: the same
        # statistics at many times the cost. Capped at the data (the runner warns).
        self.batch_size = min(batch_size, len(data))
        self.generator = generator
        self.order = torch.randperm(len(data), generator=generator)
        self.pos = 0

    def next(self, shard: Callable[[torch.Tensor], torch.Tensor] | None = None
             ) -> torch.Tensor:
        """The next batch; ``shard`` picks this worker's indices of it (data-parallel)."""
        parts, need = [], self.batch_size
        while need > 0:
            if self.pos >= len(self.order):
                self.order = torch.randperm(len(self.data), generator=self.generator)
                self.pos = 0
            take = self.order[self.pos:self.pos + need]
            self.pos += len(take)
            need -= len(take)
            parts.append(take)
        idx = parts[0] if len(parts) == 1 else torch.cat(parts)
        if shard is not None:
            idx = shard(idx)
        return self.data[idx.to(self.data.device)]

    def state_dict(self) -> dict:
        return {"order": self.order.clone(), "pos": self.pos,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.order = state["order"].clone()
        self.pos = int(state["pos"])
        self.generator.set_state(state["generator"])


class SampledStage(Stage):
    """A stage with one optimiser, a batch sampler and one extra RNG stream."""

    sampler: BatchSampler
    rng: torch.Generator

    def state_dict(self) -> dict:
        return {**super().state_dict(), "sampler": self.sampler.state_dict(),
                "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.sampler.load_state_dict(state["sampler"])
        self.rng.set_state(state["rng"])


class KeepsBest:
    """Model selection on validation rows for a stage that trains ``self.model.generator``:
    every ``select_every`` iterations, and at the last, :meth:`validation_score` (higher is
    better) is logged and the generator with the best one is kept; :meth:`finish` puts it
    back. Its state (:meth:`best_state_dict`) lets a resumed run keep the same one."""

    model: torch.nn.Module
    iterations: int
    select_every: int = 0
    # the metrics key of the best score so far, as logged
    BEST_KEY: str = "best_validation_score"

    def init_best(self, every: int, validation: torch.Tensor | None) -> None:
        from gmmn.config import flag
        from gmmn.errors import ConfigError

        self.select_every, self.validation = every, validation
        self.best_score = -math.inf
        self.best_state: dict | None = None
        if every and (validation is None or len(validation) == 0):
            raise ConfigError(f"{flag('select_every')} scores the validation rows, but this "
                              f"run has none; pass 0 to turn it off, or use data with a "
                              f"validation split")

    def validation_score(self) -> tuple[float, dict[str, float]]:
        """The generator's score on ``self.validation`` (higher is better) and the metrics
        to log beside it."""
        raise NotImplementedError

    def best_metric(self, score: float) -> float:
        """The best score as logged under :attr:`BEST_KEY` (the score itself)."""
        return score

    def after_step(self, t: int) -> dict[str, float]:
        every = self.select_every
        if not every or (t % every and t != self.iterations):
            return {}
        score, metrics = self.validation_score()
        if score > self.best_score:
            self.best_score = score
            self.best_state = {k: v.detach().clone()
                               for k, v in self.model.generator.state_dict().items()}
        return {**metrics, self.BEST_KEY: self.best_metric(self.best_score)}

    def finish(self) -> None:
        if self.best_state is not None:
            log.info("keeping the generator with the best validation score, %s %.4g",
                     self.BEST_KEY, self.best_metric(self.best_score))
            self.model.generator.load_state_dict(self.best_state)

    def best_state_dict(self) -> dict:
        """What a checkpoint needs of the selection (nothing when it is off, so checkpoints
        of runs without it stay as they were)."""
        if not self.select_every:
            return {}
        return {"best_score": self.best_score,
                "best_state": None if self.best_state is None else {
                    k: v.cpu() for k, v in self.best_state.items()}}

    def load_best_state_dict(self, state: dict) -> None:
        if not self.select_every:
            return
        self.best_score = float(state["best_score"])
        best = state["best_state"]
        device = next(self.model.parameters()).device
        self.best_state = None if best is None else {k: v.to(device) for k, v in best.items()}


class GeneratorSamples:
    """Progress pictures of a stage that trains ``self.model``'s generator: fresh samples
    (the GMMN and GAN stages)."""

    model: torch.nn.Module

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.model.sample(n, generator=generator)
