"""A training run: data, models, the sequence of stages, logs, pictures and checkpoints.

GMMN: one stage, ``gmmn``. GMMN+AE: ``pretrain-1`` ... ``pretrain-K`` (skipped when
``pretrain_iterations`` is 0), ``finetune`` (skipped when 0), then ``gmmn`` on the
autoencoder's deterministic codes with the autoencoder frozen. GAN baseline: one stage,
``gan`` (:mod:`gmmn.training.gan`). DBN and stacked CAE baselines: ``rbm-1`` ... /
``cae-1`` ..., one greedy stage per hidden layer; deep GSN: ``gsn``
(:mod:`gmmn.baselines.stages`). :func:`gmmn.training.stages.build_stage` builds each.

Files in the run directory: ``config.json`` (config + package versions), ``metrics.jsonl``
(one JSON line per logged iteration), ``checkpoint.pt`` (latest, written atomically),
``samples.png`` / ``samples-<stage>.png`` (image data), ``tensorboard/`` (when installed),
``.lock`` (held while a process trains in the folder: a second one refuses).
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

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gmmn.config import AUTO_FIELDS, TrainConfig, package_versions
from gmmn.config import flag as config_flag
from gmmn.errors import CheckpointError, ConfigError, TrainingInterrupted
from gmmn.files import (
    RunLock,
    atomic_write,
    prepare_folder,
    remove_stale_temps,
    write_error,
)
from gmmn.memory import check_fits
from gmmn.models import GenerativeModel, build_model
from gmmn.training.auto import CHECK_SAMPLES, FitCheck, check_fit, resolve
from gmmn.training.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    capture_rng,
    checkpoint_config,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from gmmn.training.loop import Hooks, Stage, StepInfo, train_loop
from gmmn.training.stages import GMMNStage, build_stage, make_generator, stage_names

log = logging.getLogger(__name__)

# Fields a resumed run may change: they affect bookkeeping, not the numbers computed.
RESUMABLE_OVERRIDES = ("device", "checkpoint_every", "log_every", "sample_every", "data_dir")
GRID_SAMPLES = 100
# The files of a run folder written by gmmn.files.atomic_write (globs).
RUN_FILES = (CHECKPOINT_NAME, "config.json", "samples*.png")


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
    # The run's seed picks the split (digits, user data); `gmmn evaluate` and `gmmn reproduce`
    # load the split of that seed, so training must too or test rows leak into training.
    return load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, **extra)


def data_info(splits) -> dict:
    """What sampling needs to know about the data, stored in every checkpoint. ``mean`` and
    ``std`` (standardised data only) map generated values back to data units."""
    shape = splits.image_shape
    mean, std = getattr(splits, "mean", None), getattr(splits, "std", None)
    return {"name": splits.name, "dim": int(splits.train.shape[1]),
            "image_shape": None if shape is None else list(shape),
            "unit_interval": bool(splits.unit_interval), "source": str(splits.source),
            "mean": None if mean is None else mean.detach().cpu().float().clone(),
            "std": None if std is None else std.detach().cpu().float().clone(),
            "fingerprint": fingerprint(splits.train)}


def fingerprint(x: torch.Tensor) -> dict:
    """Shape, range and SHA-256 of a float32 tensor's bytes: what a resume compares."""
    a = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return {"shape": list(a.shape), "min": float(a.min()), "max": float(a.max()),
            "sha256": hashlib.sha256(a.data).hexdigest()}


def _check_same_data(out: Path | None, stored: dict, info: dict, cfg: TrainConfig) -> None:
    if stored["dim"] != info["dim"]:
        raise CheckpointError(f"the run in {out} was trained on {stored['dim']}-"
                              f"dimensional data but {cfg.dataset!r} has {info['dim']}")
    old, new = stored.get("fingerprint"), info["fingerprint"]
    if old is None:  # a checkpoint from before fingerprints: nothing to compare
        return
    if old["sha256"] != new["sha256"] or old["shape"] != new["shape"]:
        def show(f: dict) -> str:
            return (f"{' x '.join(map(str, f['shape']))} values in "
                    f"[{f['min']:.4g}, {f['max']:.4g}], SHA-256 {f['sha256'][:12]}")
        raise CheckpointError(f"{cfg.dataset} is not the data the run in {out} was trained "
                              f"on (then: {show(old)}; now: {show(new)}); restore that data "
                              f"or start a new run with another --out")


def _check_fits_data(cfg: TrainConfig, info: dict, splits, device: torch.device) -> None:
    """Warn about batches the data caps, refuse what memory cannot serve, before training."""
    n = len(splits.train)
    for name in ("data_batch_size", "ae_batch_size"):
        if name == "ae_batch_size" and not cfg.autoencoder:
            continue
        if getattr(cfg, name) > n:  # stages.BatchSampler caps it
            log.warning("%s %d exceeds the %d training rows of %s: each batch holds all %d "
                        "rows", config_flag(name), getattr(cfg, name), n, cfg.dataset, n)
    if cfg.baseline is not None:  # no kernel matrix; the baseline checks its data itself
        return
    if cfg.output == "sigmoid" and not cfg.autoencoder and not info["unit_interval"]:
        fp = info["fingerprint"]
        raise ConfigError(f"--output sigmoid keeps samples in [0, 1] but {cfg.dataset} holds "
                          f"values in [{fp['min']:.4g}, {fp['max']:.4g}]; use --output linear "
                          f"or auto, or rescale the data to [0, 1]")
    # A lower bound of one step: the pooled (B + M)^2 float32 kernel matrix and the
    # generator's widest layer for B samples.
    b = cfg.sample_batch_size
    m = min(cfg.data_batch_size, n)
    widest = max((*cfg.hidden, info["dim"]))
    check_fits(4.0 * ((b + m) ** 2 + b * widest), device=device,
               what=f"a step with --sample-batch-size {b} and --data-batch-size {m}",
               fix="use smaller batch sizes")


def to_data_units(x: torch.Tensor, info: dict) -> torch.Tensor:
    """Undo the loader's standardisation (identity for data that was not standardised)."""
    from gmmn.data.splits import unstandardize

    return unstandardize(x, info.get("mean"), info.get("std"))


def build_run_model(cfg: TrainConfig, data_dim: int, *, unit_interval: bool):
    """The model a run of ``cfg`` trains: a :class:`GenerativeModel`, or a
    :class:`gmmn.baselines.model.BaselineModel` when ``cfg.baseline`` is set."""
    if cfg.baseline is not None:
        from gmmn.baselines.model import build_baseline

        return build_baseline(cfg, data_dim, unit_interval=unit_interval)
    return build_model(cfg, data_dim, unit_interval=unit_interval)


def load_resume(out_dir: str | Path) -> tuple[TrainConfig, dict] | None:
    """The config stored in ``out_dir``'s checkpoint and the checkpoint itself (to hand to
    :func:`run_training`, so it is read once), or None if the folder has none."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    return checkpoint_config(state, path), state


@dataclass
class TrainResult:
    model: GenerativeModel
    config: TrainConfig  # with the settings chosen from the data filled in
    data: dict
    checkpoint: dict  # the final checkpoint state (also written to out_dir when given)
    chosen: dict = dataclasses.field(default_factory=dict)  # gmmn.training.auto.resolve's
    # gmmn.training.auto.check_fit of the finished model (None: a baseline, or unfinished)
    fit_check: FitCheck | None = None


def run_training(cfg: TrainConfig, *, out_dir: str | Path | None = None,
                 resume: bool = False, splits=None,
                 callback: Callable[[StepInfo], None] | None = None,
                 hooks: Hooks | None = None, checkpoint: dict | None = None,
                 download: bool = True) -> TrainResult:
    """Train ``cfg`` (on ``splits``, else on ``cfg.dataset``) and return the model.

    With ``out_dir``, writes the run files; ``resume=True`` continues from its checkpoint
    (a directory without one starts from the beginning). ``callback`` gets every
    :class:`gmmn.training.loop.StepInfo`; ``hooks`` are passed to the loop (data-parallel).
    ``checkpoint``: ``out_dir``'s checkpoint when the caller has already read it
    (:func:`load_resume`); it is checked against ``cfg`` like one read here.
    ``download=False``: a missing MNIST / Fashion-MNIST is an error instead of a download.

    Fields of ``cfg`` that are None in :data:`gmmn.config.AUTO_FIELDS` are chosen from the
    data (:func:`gmmn.training.auto.resolve`); the result's ``config`` holds the values, and
    so do config.json and the checkpoint. A finished GMMN or GAN is checked against its
    training data (:func:`gmmn.training.auto.check_fit`): ``fit_check``.
    """
    out = Path(out_dir) if out_dir is not None else None
    hooks = hooks or Hooks()
    lock: RunLock | None = None
    created = False

    # What can fail before training (device, data) fails before the run folder exists, so a
    # failed start leaves nothing behind.
    device = resolve_device(cfg.device)
    splits = splits if splits is not None else load_splits(cfg, download=download)

    def open_run() -> dict | None:
        nonlocal lock, created
        if out is not None:
            created = not out.exists()
            prepare_folder(out)
            lock = RunLock(out)  # held until run_training() returns, however it returns
            remove_stale_temps(out, RUN_FILES)
        return _existing_state(out, cfg, resume, checkpoint)

    # Data-parallel: worker 0 reads the run directory (only it needs the files).
    try:
        state = hooks.from_main(open_run)
        with _StopOnSignal(active=out is not None and hooks.main) as stop:
            return _train(cfg, out, state, splits, device, callback, hooks, stop)
    except BaseException:
        if created:
            if lock is not None:  # its file goes first, so the folder is empty if unused
                lock.release()
                lock = None
            _remove_if_empty(out)
        raise
    finally:
        if lock is not None:
            lock.release()


def _remove_if_empty(out: Path) -> None:
    """Delete a run folder this run created when it holds nothing (its lock already
    released): a start that failed (memory check, a bad resume) leaves no folder to confuse
    the next one. rmdir refuses a folder that another run has since put a file in."""
    try:
        out.rmdir()
    except OSError:  # someone else's file appeared, or the folder is gone: leave it
        pass


def _train(cfg: TrainConfig, out: Path | None, state: dict | None, splits,
           device: torch.device, callback, hooks: Hooks, stop: _StopOnSignal) -> TrainResult:
    cfg, splits, chosen = resolve(cfg, splits)
    info = data_info(splits)
    if state is not None:
        _check_same_data(out, state["data"], info, cfg)
    model = build_run_model(cfg, info["dim"], unit_interval=info["unit_interval"])
    _check_fits_data(cfg, info, splits, device)
    model = model.to(device)
    if cfg.baseline is None and not model.generator.sigmoid_output and cfg.lr > 0.5:
        log.warning("lr %g with a linear generator output (data outside [0, 1]) tends to "
                    "diverge; consider --lr 0.1", cfg.lr)
    train_x = splits.train.to(device=device, dtype=torch.float32)
    logger = _RunLogger(out if hooks.main else None, cfg, state, splits.image_shape, info)
    try:
        ckpt = _run_stages(cfg, out, state, model, train_x, info, logger, callback, hooks, stop)
    finally:
        logger.close()  # also when training stops on an error or a signal
    fit = (_check_finished(cfg, model, train_x, logger.losses, info)
           if ckpt and ckpt["done"] else None)
    return TrainResult(model, cfg, info, ckpt, chosen, fit)


def _check_finished(cfg: TrainConfig, model, train_x: torch.Tensor, losses: list[float],
                    info: dict) -> FitCheck | None:
    """:func:`gmmn.training.auto.check_fit` of a model that samples from a prior, in the
    units it trained in, on a noise stream of its own (the training RNGs are untouched)."""
    if cfg.baseline is not None:
        return None  # a Markov chain's samples: gmmn evaluate judges those
    with torch.no_grad():
        samples = model.sample(CHECK_SAMPLES, generator=make_generator(cfg.seed, "fit-check"))
    last = model.autoencoder if model.autoencoder is not None else model.generator
    linear = not last.sigmoid_output  # the layer that writes the samples
    # A GAN's losses say nothing of its fit; only the MMD's are read for a rise.
    check = check_fit(samples, train_x, [] if cfg.gan else losses, cfg=cfg, linear=linear)
    if not check.ok and not check.binding:  # else the CLI and GMMN.fit raise on it
        log.warning("training finished, but %s (a run of %d iterations is not expected to "
                    "fit yet: not an error)", check.message(), cfg.iterations)
    return check


def _run_stages(cfg, out, state, model, train_x, info, logger, callback, hooks,
                stop: _StopOnSignal) -> dict | None:
    """The stages from the checkpoint's (or the first) on; the last checkpoint written."""
    names = stage_names(cfg)
    first, start = 0, 0
    source = out / CHECKPOINT_NAME if out is not None else "the checkpoint"
    if state is not None:  # its entries were checked when it was read (checkpoint_config)
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"the weights in {source} do not fit the model its config "
                                  f"describes; the checkpoint is damaged") from exc
        first, start = state["stage_index"], state["iteration"]
        restore_rng(state["rng"])
        if first == len(names) and _lost(logger, "samples.png"):
            # Killed between the final checkpoint and its grid: draw what the end would have.
            logger.grid(build_stage(names[-1], model, train_x, cfg, hooks), "samples.png")
    ckpt = state
    for index in range(first, len(names)):
        hooks.broadcast(model)  # every worker starts each stage from worker 0's weights
        stage = build_stage(names[index], model, train_x, cfg, hooks)
        if state is not None and index == first and state["stage_state"] is not None:
            try:
                stage.load_state_dict(state["stage_state"])
            except (KeyError, TypeError, ValueError, RuntimeError, AttributeError,
                    IndexError) as exc:
                why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise CheckpointError(f"{source} is damaged: its entry stage_state does not "
                                      f"fit stage {stage.name} ({why}); use another copy of "
                                      f"the checkpoint or train the run again") from exc
        else:
            start = 0
        log.info("stage %s: iterations %d to %d", stage.name, start + 1, stage.iterations)

        def on_step(step: StepInfo, stage=stage, index=index) -> None:
            logger.step(step)
            if callback is not None:
                callback(step)
            t = step.iteration
            if logger.sample_due(t):
                logger.grid(stage, f"samples-{stage.name}.png")
            if t == stage.iterations:
                return  # the stage's end writes its own checkpoint
            if stop.signum is not None or (cfg.checkpoint_every
                                           and t % cfg.checkpoint_every == 0):
                logger.checkpoint(_state(cfg, info, model, index, stage, t, logger))
            if stop.signum is not None:
                raise stop.interrupted(out, f"{stage.name} iteration {t}")

        # Only the GMMN stage is data-parallel; autoencoder stages run whole on every worker.
        train_loop(stage, start=start, hooks=hooks if isinstance(stage, GMMNStage) else None,
                   on_step=on_step)
        stage.finish()
        ckpt = _state(cfg, info, model, index + 1, None, 0, logger, done=index + 1 == len(names))
        logger.checkpoint(ckpt)
        if index + 1 == len(names):  # the last stage: samples of the finished model
            logger.grid(stage, "samples.png")
        if stop.signum is not None and index + 1 < len(names):
            raise stop.interrupted(out, f"the end of stage {stage.name}")
    return ckpt


def _lost(logger: _RunLogger, name: str) -> bool:
    """Whether the final sample grid ``name`` of an image run's folder is missing."""
    return logger.out is not None and logger.image_shape is not None and \
        not (logger.out / name).exists()


class _StopOnSignal:
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

    def __enter__(self) -> _StopOnSignal:
        if self.active:
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

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


def _existing_state(out: Path | None, cfg: TrainConfig, resume: bool,
                    loaded: dict | None) -> dict | None:
    if out is None:
        return None
    path = out / CHECKPOINT_NAME
    if not path.exists():
        return None
    if not resume:
        raise CheckpointError(f"{out} already holds a run; pass --resume to continue it or "
                              f"choose another --out")
    state = loaded if loaded is not None else load_checkpoint(path)
    stored = checkpoint_config(state, path)
    if stored.preset != cfg.preset:
        raise CheckpointError(f"{out} holds a run of preset {stored.preset!r}, not "
                              f"{cfg.preset!r}; resume it with --preset {stored.preset}")
    for f in dataclasses.fields(TrainConfig):
        a, b = getattr(stored, f.name), getattr(cfg, f.name)
        if b is None and f.name in AUTO_FIELDS:
            continue  # "choose from the data": the stored run holds what was chosen
        if a != b and f.name not in RESUMABLE_OVERRIDES:
            flag = config_flag(f.name)
            raise CheckpointError(f"{out} was trained with {flag} {a}, not {b}; a resumed run "
                                  f"cannot change it (drop the flag or use another --out)")
    return state


def _state(cfg, info, model, stage_index, stage, iteration, logger, *, done=False) -> dict:
    return {
        "format": FORMAT,
        "config": cfg.to_json(),
        "versions": package_versions(),
        "data": info,
        "stage_index": stage_index,
        "stage": stage.name if stage is not None else None,
        "iteration": iteration,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "stage_state": stage.state_dict() if stage is not None else None,
        "rng": capture_rng(),
        "metrics_offset": logger.flush(),
        "elapsed": logger.elapsed(),
        "done": done,
    }


class _RunLogger:
    """metrics.jsonl, TensorBoard, sample grids and checkpoint files of one run directory."""

    def __init__(self, out: Path | None, cfg: TrainConfig, state: dict | None,
                 image_shape, info: dict) -> None:
        self.out, self.cfg, self.image_shape, self.info = out, cfg, image_shape, info
        self.t0 = time.perf_counter()
        self.elapsed0 = float(state["elapsed"]) if state is not None else 0.0
        self.metrics = self.tb = None
        self.loss_stage: str | None = None
        self.losses: list[float] = []  # the logged MMD losses of the current stage
        if out is None:
            return
        if state is None:
            text = json.dumps({"config": cfg.to_dict(), "versions": package_versions()},
                              indent=2) + "\n"
            atomic_write(out / "config.json", lambda f: f.write(text.encode()))
        self.metrics_path = out / "metrics.jsonl"
        keep = _metrics_to_keep(self.metrics_path,
                                int(state["metrics_offset"]) if state is not None else 0)
        try:
            # Unbuffered: each line is one write, so a full disk fails that line's write (and
            # it is cut back off) instead of a later flush in close() leaving half a record.
            self.metrics = open(self.metrics_path, "a+b", buffering=0)  # noqa: SIM115
            self.metrics.truncate(keep)
            self.metrics.seek(0, 2)
        except OSError as exc:
            raise write_error(exc, self.metrics_path) from exc
        self.tb = _tensorboard(out / "tensorboard")

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    def step(self, step: StepInfo) -> None:
        t = step.iteration
        if t % self.cfg.log_every and t != step.iterations and not step.extra:
            return
        row = {"stage": step.stage, "iteration": t,
               **{("loss" if k in ("mmd", "reconstruction") else f"loss_{k}"): float(v)
                  for k, v in step.losses.items()},
               "lr": step.lr, "momentum": step.momentum, **step.extra,
               "elapsed": round(self.elapsed(), 3)}
        if step.stage != self.loss_stage:  # the fit check reads the last stage's losses
            self.loss_stage, self.losses = step.stage, []
        loss = step.losses.get("mmd")
        if loss is not None:
            self.losses.append(row["loss"])
        if self.metrics is not None:
            # Flushed per line so `tail -f metrics.jsonl` follows a long run; resume still
            # truncates to the offset stored in the checkpoint.
            line = (json.dumps(row) + "\n").encode()
            end = self.metrics.tell()
            try:
                written = self.metrics.write(line)
                if written != len(line):  # a short write: the disk filled mid-line
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as exc:
                with contextlib.suppress(OSError):  # the file ends on its last whole line
                    self.metrics.truncate(end)
                    self.metrics.seek(end)
                raise write_error(exc, self.metrics_path) from exc
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("stage", "iteration", "elapsed"):
                    self.tb.add_scalar(f"{step.stage}/{k}", v, t)

    def sample_due(self, t: int) -> bool:
        return bool(self.out and self.image_shape and self.cfg.sample_every
                    and t % self.cfg.sample_every == 0)

    def grid(self, stage: Stage, name: str) -> None:
        if self.out is None or self.image_shape is None:
            return
        from gmmn.grid import save_grid

        # A fixed noise stream of its own: pictures never touch the training RNGs.
        images = stage.sample(GRID_SAMPLES, make_generator(self.cfg.seed, "pictures"))
        if images is not None:
            save_grid(to_data_units(images, self.info), tuple(self.image_shape),
                      self.out / name)

    def flush(self) -> int:
        if self.metrics is None:
            return 0
        try:
            self.metrics.flush()
        except OSError as exc:
            raise write_error(exc, self.metrics_path) from exc
        return self.metrics.tell()

    def checkpoint(self, state: dict) -> None:
        if self.out is not None:
            save_checkpoint(state, self.out / CHECKPOINT_NAME)

    def close(self) -> None:
        # Nothing is buffered (see __init__), so closing cannot meet a full disk again and
        # replace the error that stopped the run.
        if self.metrics is not None:
            with contextlib.suppress(OSError):
                self.metrics.close()
            self.metrics = None
        if self.tb is not None:
            with contextlib.suppress(Exception):  # TensorBoard's own writer on a full disk
                self.tb.close()
            self.tb = None


def _metrics_to_keep(path: Path, offset: int) -> int:
    """Bytes of metrics.jsonl to keep on resume: the checkpoint's offset, or, when the file
    was deleted or cut shorter than that, what is left up to its last whole line (extending
    it would fill the gap with NUL bytes that no JSON reader accepts)."""
    size = path.stat().st_size if path.exists() else 0
    if size >= offset:
        return offset
    keep = path.read_bytes()[:size].rfind(b"\n") + 1 if size else 0
    log.warning("%s holds %d of the %d bytes the checkpoint recorded (deleted or cut short); "
                "the lost lines are not restored and training goes on from the checkpoint",
                path, keep, offset)
    return keep


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("TensorBoard logging is off: pip install tensorboard to turn it on")
        return None
    return SummaryWriter(str(path))
