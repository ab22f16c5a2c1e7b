"""A training run: data, models, the sequence of stages, logs, pictures and checkpoints.

GMMN: one stage, ``gmmn``. GMMN+AE: ``pretrain-1`` ... ``pretrain-K`` (skipped when
``pretrain_iterations`` is 0), ``finetune`` (skipped when 0), then ``gmmn`` on the
autoencoder's deterministic codes with the autoencoder frozen. GAN baseline: one stage,
``gan`` (:mod:`gmmn.gan`).

Files in the run directory: ``config.json`` (config + package versions), ``metrics.jsonl``
(one JSON line per logged iteration), ``checkpoint.pt`` (latest, written atomically),
``samples.png`` / ``samples-<stage>.png`` (image data), ``tensorboard/`` (when installed).
Resuming restores models, optimiser buffers, data order, every RNG, the stage and the best
autoencoder so far, and truncates ``metrics.jsonl`` to the checkpoint: a resumed run ends
bit-identical (on CPU) to one never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gmmn.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from gmmn.config import TrainConfig, package_versions
from gmmn.errors import CheckpointError, ConfigError
from gmmn.gan import GanStage
from gmmn.models import GenerativeModel, build_model
from gmmn.stages import FinetuneStage, GMMNStage, PretrainStage, make_generator
from gmmn.train import Hooks, Stage, StepInfo, train_loop

log = logging.getLogger(__name__)

# Fields a resumed run may change: they affect bookkeeping, not the numbers computed.
RESUMABLE_OVERRIDES = ("device", "checkpoint_every", "log_every", "sample_every", "data_dir")
GRID_SAMPLES = 100


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and name != "cuda" and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} was requested but CUDA is not available here; "
                          f"use --device cpu or auto")
    return torch.device(name)


def load_splits(cfg: TrainConfig):
    from gmmn.data import load_dataset

    extra = {"standardize": True} if cfg.standardize else {}
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
            "std": None if std is None else std.detach().cpu().float().clone()}


def to_data_units(x: torch.Tensor, info: dict) -> torch.Tensor:
    """Undo the loader's standardisation (identity for data that was not standardised)."""
    from gmmn.data.splits import unstandardize

    return unstandardize(x, info.get("mean"), info.get("std"))


def stage_names(cfg: TrainConfig) -> list[str]:
    if cfg.gan:
        return ["gan"]
    names = []
    if cfg.autoencoder:
        if cfg.pretrain_iterations:
            names += [f"pretrain-{k + 1}" for k in range(len(cfg.ae_hidden))]
        if cfg.finetune_iterations:
            names.append("finetune")
    return [*names, "gmmn"]


def build_stage(name: str, model: GenerativeModel, train: torch.Tensor, cfg: TrainConfig,
                hooks: Hooks | None = None) -> Stage:
    if name == "gan":
        return GanStage(model, train, cfg, hooks=hooks)
    ae = model.autoencoder
    if name.startswith("pretrain-"):
        return PretrainStage(ae, int(name.split("-")[1]) - 1, train, cfg)
    if name == "finetune":
        return FinetuneStage(ae, train, cfg)
    if ae is not None:
        with torch.no_grad():
            train = torch.cat([ae.encode(train[i:i + 5000]) for i in range(0, len(train), 5000)])
    return GMMNStage(model, train, cfg, hooks=hooks)


def resume_config(out_dir: str | Path) -> TrainConfig | None:
    """The config stored in ``out_dir``'s checkpoint, or None if it has none."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.exists():
        return None
    return TrainConfig.from_dict(json.loads(load_checkpoint(path)["config"]))


@dataclass
class TrainResult:
    model: GenerativeModel
    config: TrainConfig
    data: dict
    checkpoint: dict  # the final checkpoint state (also written to out_dir when given)


def train(cfg: TrainConfig, *, out_dir: str | Path | None = None, resume: bool = False,
          splits=None, callback: Callable[[StepInfo], None] | None = None,
          hooks: Hooks | None = None) -> TrainResult:
    """Train ``cfg`` (on ``splits``, else on ``cfg.dataset``) and return the model.

    With ``out_dir``, writes the run files; ``resume=True`` continues from its checkpoint
    (a directory without one starts from the beginning). ``callback`` gets every
    :class:`gmmn.train.StepInfo`; ``hooks`` are passed to the loop (data-parallel).
    """
    out = Path(out_dir) if out_dir is not None else None
    hooks = hooks or Hooks()
    # Data-parallel: worker 0 reads the run directory (only it needs the files).
    state = hooks.from_main(lambda: _existing_state(out, cfg, resume))
    device = resolve_device(cfg.device)
    splits = splits if splits is not None else load_splits(cfg)
    info = data_info(splits)
    if state is not None and state["data"]["dim"] != info["dim"]:
        raise CheckpointError(f"the run in {out} was trained on {state['data']['dim']}-"
                              f"dimensional data but {cfg.dataset!r} has {info['dim']}")
    model = build_model(cfg, info["dim"], unit_interval=info["unit_interval"]).to(device)
    if not model.generator.sigmoid_output and cfg.lr > 0.5:
        log.warning("lr %g with a linear generator output (data outside [0, 1]) tends to "
                    "diverge; consider --lr 0.1", cfg.lr)
    train_x = splits.train.to(device=device, dtype=torch.float32)
    logger = _RunLogger(out if hooks.main else None, cfg, state, splits.image_shape, info)
    names = stage_names(cfg)
    first, start = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        first, start = int(state["stage_index"]), int(state["iteration"])
        restore_rng(state["rng"])
    ckpt = state
    for index in range(first, len(names)):
        hooks.broadcast(model)  # every worker starts each stage from worker 0's weights
        stage = build_stage(names[index], model, train_x, cfg, hooks)
        if state is not None and index == first and state["stage_state"] is not None:
            stage.load_state_dict(state["stage_state"])
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
            if cfg.checkpoint_every and t % cfg.checkpoint_every == 0 and t < stage.iterations:
                logger.checkpoint(_state(cfg, info, model, index, stage, t, logger))

        # Only the GMMN stage is data-parallel; autoencoder stages run whole on every worker.
        train_loop(stage, start=start, hooks=hooks if isinstance(stage, GMMNStage) else None,
                   on_step=on_step)
        stage.finish()
        ckpt = _state(cfg, info, model, index + 1, None, 0, logger, done=index + 1 == len(names))
        logger.checkpoint(ckpt)
        if stage.name in ("gmmn", "gan"):  # the last stage: samples of the finished model
            logger.grid(stage, "samples.png")
    logger.close()
    return TrainResult(model, cfg, info, ckpt)


def _existing_state(out: Path | None, cfg: TrainConfig, resume: bool) -> dict | None:
    if out is None:
        return None
    path = out / CHECKPOINT_NAME
    if not path.exists():
        return None
    if not resume:
        raise CheckpointError(f"{out} already holds a run; pass --resume to continue it or "
                              f"choose another --out")
    state = load_checkpoint(path)
    stored = TrainConfig.from_dict(json.loads(state["config"]))
    if stored.preset != cfg.preset:
        raise CheckpointError(f"{out} holds a run of preset {stored.preset!r}, not "
                              f"{cfg.preset!r}; resume it with --preset {stored.preset}")
    for f in dataclasses.fields(TrainConfig):
        a, b = getattr(stored, f.name), getattr(cfg, f.name)
        if a != b and f.name not in RESUMABLE_OVERRIDES:
            flag = "--" + f.name.replace("_", "-")
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
        if out is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        if state is None:
            doc = {"config": cfg.to_dict(), "versions": package_versions()}
            (out / "config.json").write_text(json.dumps(doc, indent=2) + "\n")
        self.metrics = open(out / "metrics.jsonl", "a+b")  # noqa: SIM115 (closed in close())
        self.metrics.truncate(int(state["metrics_offset"]) if state is not None else 0)
        self.metrics.seek(0, 2)
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
        if self.metrics is not None:
            # Flushed per line so `tail -f metrics.jsonl` follows a long run; resume still
            # truncates to the offset stored in the checkpoint.
            self.metrics.write((json.dumps(row) + "\n").encode())
            self.metrics.flush()
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
        self.metrics.flush()
        return self.metrics.tell()

    def checkpoint(self, state: dict) -> None:
        if self.out is not None:
            save_checkpoint(state, self.out / CHECKPOINT_NAME)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self.tb is not None:
            self.tb.close()


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("TensorBoard logging is off: pip install tensorboard to turn it on")
        return None
    return SummaryWriter(str(path))
