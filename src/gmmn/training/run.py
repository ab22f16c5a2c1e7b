"""A training run, top to bottom: data, model, then for each stage its loop and checkpoint.

The run's family (:mod:`gmmn.families`) says which stages it trains and builds the model and
each stage; :class:`gmmn.training.rundir.RunFolder` owns the run folder (lock, config.json,
metrics.jsonl, pictures, checkpoints, resume checks) and :mod:`gmmn.training.signals` the
clean stop on a signal.

Resuming restores models, optimiser buffers, data order, every RNG, the stage and the best
autoencoder so far, and truncates ``metrics.jsonl`` to the checkpoint: a resumed run ends
bit-identical (on CPU) to one never interrupted. It refuses data whose fingerprint (shape,
range, SHA-256 of the training split) differs from the one the checkpoint recorded.

SIGINT and SIGTERM (single process) end the current iteration, write a checkpoint and stop
with :class:`gmmn.errors.TrainingInterrupted`; a second signal stops at once. A loss that
becomes NaN or infinite stops with :class:`gmmn.errors.TrainingDiverged`, keeping the last
checkpoint (docs/reliability.md).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gmmn.config import TrainConfig, package_versions
from gmmn.config import flag as config_flag
from gmmn.data.splits import column_levels, fingerprint, transformed
from gmmn.errors import CheckpointError, ConfigError
from gmmn.families import family_of
from gmmn.families.base import Family
from gmmn.training.auto import FitCheck, resolve
from gmmn.training.checkpoint import CHECKPOINT_NAME, FORMAT, capture_rng, restore_rng
from gmmn.training.loop import Hooks, Stage, StepInfo, train_loop
from gmmn.training.rundir import RunFolder, load_resume
from gmmn.training.signals import StopOnSignal

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "data_info", "load_resume", "load_splits", "resolve_device",
           "run_training"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and name != "cuda" and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} was requested but CUDA is not available here; "
                          f"use --device cpu or auto")
    return torch.device(name)


def load_splits(cfg: TrainConfig, *, download: bool = True):
    """The dataset of ``cfg`` (standardised when ``cfg.standardize`` is True; None, "auto",
    loads it as it is and leaves the choice to :func:`gmmn.training.auto.resolve`).
    ``download=False``: a missing MNIST / Fashion-MNIST is an error, not a download."""
    from gmmn.data import load_dataset

    extra = {"standardize": True} if cfg.standardize else {}
    if not download:
        extra["download"] = False
    if cfg.split != "paper":
        extra["split"] = cfg.split
    # The run's seed picks the split (digits, user data); `gmmn evaluate` and `gmmn reproduce`
    # load the split of that seed, so training must too or test rows leak into training.
    splits = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, **extra)
    return transformed(splits, cfg.transform)


def data_info(splits, *, discrete_levels: int = 0) -> dict:
    """What sampling needs to know about the data, stored in every checkpoint. ``mean`` and
    ``std`` (standardised data only) map generated values back to data units; ``levels``
    (only where ``discrete_levels`` finds columns of so few values) are the values that
    those columns' samples are put on (:func:`gmmn.data.splits.column_levels`)."""
    levels = column_levels(splits.train, discrete_levels)
    shape = splits.image_shape
    mean, std = getattr(splits, "mean", None), getattr(splits, "std", None)
    return {"name": splits.name, "dim": int(splits.train.shape[1]),
            "image_shape": None if shape is None else list(shape),
            "unit_interval": bool(splits.unit_interval), "source": str(splits.source),
            "mean": None if mean is None else mean.detach().cpu().float().clone(),
            "std": None if std is None else std.detach().cpu().float().clone(),
            "fingerprint": fingerprint(splits.train),
            # "pobs": samples are on the copula scale (0, 1)^D (absent: no transform, as in
            # the checkpoints of every earlier gmmn)
            **({"transform": splits.transform} if getattr(splits, "transform", None) else {}),
            **({"levels": levels} if levels else {})}


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig  # with the settings chosen from the data filled in
    data: dict
    checkpoint: dict  # the final checkpoint state (also written to out_dir when given)
    chosen: dict = dataclasses.field(default_factory=dict)  # gmmn.training.auto.resolve's
    # the family's check of the finished model (None: a baseline, or unfinished)
    fit_check: FitCheck | None = None


def run_training(cfg: TrainConfig, *, out_dir: str | Path | None = None,
                 resume: bool = False, splits=None,
                 callback: Callable[[StepInfo], None] | None = None,
                 hooks: Hooks | None = None,
                 checkpoint: tuple[TrainConfig, dict] | None = None,
                 download: bool = True) -> TrainResult:
    """Train ``cfg`` (on ``splits``, else on ``cfg.dataset``) and return the model.

    With ``out_dir``, writes the run files; ``resume=True`` continues from its checkpoint
    (a directory without one starts from the beginning). ``callback`` gets every
    :class:`gmmn.training.loop.StepInfo`; ``hooks`` are passed to the loop (data-parallel).
    ``checkpoint``: ``out_dir``'s stored config and checkpoint when the caller has already
    read them (:func:`gmmn.training.rundir.load_resume`), so they are read once.
    ``download=False``: a missing MNIST / Fashion-MNIST is an error instead of a download.

    Settings of ``cfg`` that are None in :data:`gmmn.config.AUTO_FIELDS` are chosen from the
    data (:func:`gmmn.training.auto.resolve`); the result's ``config`` holds the values, and
    so do config.json and the checkpoint. A finished model is checked against its training
    data by its family (``fit_check``).
    """
    hooks = hooks or Hooks()
    # What can fail before training (device, data) fails before the run folder exists, so a
    # failed start leaves nothing behind.
    device = resolve_device(cfg.device)
    splits = splits if splits is not None else load_splits(cfg, download=download)
    # Data-parallel: worker 0 alone owns the run folder; the others write nothing.
    folder = RunFolder(Path(out_dir) if out_dir is not None and hooks.main else None)
    try:
        # Data-parallel: worker 0 reads the run directory and hands its checkpoint round.
        state = hooks.from_main(lambda: folder.open(cfg, resume=resume, loaded=checkpoint))
        with StopOnSignal(active=folder.out is not None and hooks.main) as stop:
            return _train(cfg, folder, state, splits, device, callback, hooks, stop)
    except BaseException:
        folder.abandon()
        raise
    finally:
        folder.release()


def _train(cfg: TrainConfig, folder: RunFolder, state: dict | None, splits,
           device: torch.device, callback, hooks: Hooks, stop: StopOnSignal) -> TrainResult:
    family = family_of(cfg)
    # data (splits given by the caller, e.g. GMMN.fit's array, get the run's transform too)
    splits = transformed(splits, cfg.transform)
    cfg, splits, chosen = resolve(cfg, splits, data_space=family.data_space)
    cfg = family.fit_data(cfg, splits)
    info = data_info(splits, discrete_levels=cfg.discrete_levels)
    if state is not None:
        folder.check_same_data(state["data"], info, cfg)
    # model
    model = family.build_model(cfg, info["dim"], unit_interval=info["unit_interval"])
    _warn_capped_batches(cfg, family, len(splits.train))
    family.check_data(cfg, info, len(splits.train), device)
    model = model.to(device)
    train_x = family.rows(cfg, splits, "train").to(device=device, dtype=torch.float32)
    # for a stage that selects on them (the test rows are never seen in training)
    valid_x = family.rows(cfg, splits, "validation").to(device=device, dtype=torch.float32)
    if state is None:
        family.init_from_data(cfg, model, train_x)
    # stages
    run = _Stages(cfg, family, folder, model, train_x, valid_x, info, hooks, stop, callback)
    folder.start_logs(cfg, state, info)
    try:
        ckpt = run.train(state)
    finally:
        folder.close_logs()  # also when training stops on an error or a signal
    fit = (family.fit_check(cfg, model, train_x, folder.losses)
           if ckpt and ckpt["done"] else None)
    return TrainResult(model, cfg, info, ckpt, chosen, fit)


def _warn_capped_batches(cfg: TrainConfig, family: Family, n: int) -> None:
    for name in family.batch_fields(cfg):
        size = getattr(cfg.model, name)
        if size > n:  # gmmn.training.blocks.BatchSampler caps it
            log.warning("%s %d exceeds the %d training rows of %s: each batch holds all %d "
                        "rows", config_flag(name), size, n, cfg.dataset, n)


class _Stages:
    """The stages of one run, from the checkpoint's (or the first) on."""

    def __init__(self, cfg: TrainConfig, family: Family, folder: RunFolder, model: nn.Module,
                 train_x: torch.Tensor, valid_x: torch.Tensor, info: dict, hooks: Hooks,
                 stop: StopOnSignal, callback: Callable[[StepInfo], None] | None) -> None:
        self.cfg, self.family, self.folder, self.model = cfg, family, folder, model
        self.train_x, self.valid_x, self.info = train_x, valid_x, info
        self.hooks, self.stop = hooks, stop
        self.callback = callback
        self.names = family.stage_names(cfg)

    def build(self, index: int) -> Stage:
        return self.family.build_stage(self.names[index], self.model, self.train_x, self.cfg,
                                       self.hooks, validation=self.valid_x)

    def train(self, state: dict | None) -> dict | None:
        """Every stage from the checkpoint's on; the last checkpoint written."""
        first, start = self.restore(state) if state is not None else (0, 0)
        ckpt = state
        for index in range(first, len(self.names)):
            self.hooks.broadcast(self.model)  # every worker starts each stage from worker 0's
            stage = self.build(index)
            if state is not None and index == first and state["stage_state"] is not None:
                self.load_stage(stage, state["stage_state"])
            else:
                start = 0
            log.info("stage %s: iterations %d to %d", stage.name, start + 1, stage.iterations)
            train_loop(stage, start=start, hooks=self.hooks if stage.data_parallel else None,
                       on_step=lambda step, stage=stage, index=index:
                       self.on_step(step, stage, index))
            stage.finish()
            last = index + 1 == len(self.names)
            ckpt = self.state(index + 1, None, 0, done=last)
            self.folder.checkpoint(ckpt)
            if last:  # the last stage: samples of the finished model
                self.folder.grid(stage)
            if self.stop.stopping and not last:
                raise self.stop.interrupted(self.folder.out, f"the end of stage {stage.name}")
        return ckpt

    def restore(self, state: dict) -> tuple[int, int]:
        """Load the checkpoint's weights and RNG states (its entries were checked when it was
        read); the stage index and iteration to go on from."""
        try:
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"the weights in {self.source} do not fit the model its "
                                  f"config describes; the checkpoint is damaged") from exc
        first, start = state["stage_index"], state["iteration"]
        restore_rng(state["rng"])
        if first == len(self.names) and self.folder.grid_lost():
            # Killed between the final checkpoint and its grid: draw what the end would have.
            self.folder.grid(self.build(len(self.names) - 1))
        return first, start

    @property
    def source(self):
        out = self.folder.out
        return out / CHECKPOINT_NAME if out is not None else "the checkpoint"

    def load_stage(self, stage: Stage, stage_state: dict) -> None:
        try:
            stage.load_state_dict(stage_state)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError,
                IndexError) as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"{self.source} is damaged: its entry stage_state does not "
                                  f"fit stage {stage.name} ({why}); use another copy of the "
                                  f"checkpoint or train the run again") from exc

    def on_step(self, step: StepInfo, stage: Stage, index: int) -> None:
        self.folder.step(step)
        if self.callback is not None:
            self.callback(step)
        t = step.iteration
        if self.folder.sample_due(t):
            self.folder.grid(stage, f"samples-{stage.name}.png")
        if t == stage.iterations:
            return  # the stage's end writes its own checkpoint
        every = self.cfg.checkpoint_every
        if self.stop.stopping or (every and t % every == 0):
            self.folder.checkpoint(self.state(index, stage, t))
        if self.stop.stopping:
            raise self.stop.interrupted(self.folder.out, f"{stage.name} iteration {t}")

    def state(self, stage_index: int, stage: Stage | None, iteration: int, *,
              done: bool = False) -> dict:
        """The checkpoint of this moment (keys: gmmn.training.checkpoint)."""
        return {
            "format": FORMAT,
            "config": self.cfg.to_json(),
            "versions": package_versions(),
            "data": self.info,
            "stage_index": stage_index,
            "stage": stage.name if stage is not None else None,
            "iteration": iteration,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "stage_state": stage.state_dict() if stage is not None else None,
            "rng": capture_rng(),
            "metrics_offset": self.folder.flush(),
            "elapsed": self.folder.elapsed(),
            "done": done,
        }
