"""A run folder: everything a training run keeps on disk, and the checks of a resume.

``config.json`` (config + package versions), ``metrics.jsonl`` (one JSON line per logged
iteration), ``checkpoint.pt`` (latest, written atomically), ``samples.png`` /
``samples-<stage>.png`` (image data), ``tensorboard/`` (when installed) and ``.lock`` (held
while a process trains in the folder: a second one refuses). :class:`RunFolder` owns them all:
the lock, the stored checkpoint and config (read once), the resume checks, the logs, the
pictures and checkpoint writes. Without a folder (``out`` None) it writes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import time
from pathlib import Path

from gmmn.config import AUTO_FIELDS, TrainConfig, flag, package_versions
from gmmn.data.splits import unstandardize
from gmmn.errors import CheckpointError
from gmmn.files import RunLock, atomic_write, prepare_folder, remove_stale_temps, write_error
from gmmn.training.blocks import seeded_rng
from gmmn.training.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
)
from gmmn.training.loop import Stage, StepInfo

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"
GRID_NAME = "samples.png"
# The files of a run folder written by gmmn.files.atomic_write (globs).
RUN_FILES = (CHECKPOINT_NAME, CONFIG_NAME, "samples*.png")
# Fields a resumed run may change: they affect bookkeeping (and how samples are drawn, for
# a chain's progress pictures), not the numbers training computes.
RESUMABLE_OVERRIDES = ("device", "checkpoint_every", "log_every", "sample_every", "data_dir",
                       "chains", "burn_in", "thin", "chain_noise", "chain_noise_space")
GRID_SAMPLES = 100


def load_resume(out_dir: str | Path) -> tuple[TrainConfig, dict] | None:
    """The config stored in ``out_dir``'s checkpoint and the checkpoint itself (to hand to
    :func:`gmmn.training.run.run_training`, so both are read once), or None if the folder
    has none."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    return checkpoint_config(state, path), state


class RunFolder:
    """The run directory ``out`` (None: nothing is written) of one training process."""

    def __init__(self, out: Path | None) -> None:
        self.out = out
        self.lock: RunLock | None = None
        self.created = False
        self.metrics = self.tb = None
        self.cfg: TrainConfig | None = None
        self.image_shape = None
        self.info: dict = {}
        self.loss_stage: str | None = None
        self.losses: list[float] = []  # the logged MMD losses of the current stage
        self.t0 = time.perf_counter()
        self.elapsed0 = 0.0

    # --- opening: the lock and the stored run ------------------------------------------

    def open(self, cfg: TrainConfig, *, resume: bool,
             loaded: tuple[TrainConfig, dict] | None = None) -> dict | None:
        """Create and lock the folder; the checkpoint to resume from, after checking that
        ``cfg`` may continue it (None when there is none). ``loaded``: the folder's stored
        config and checkpoint when the caller has read them (:func:`load_resume`)."""
        if self.out is None:
            return None
        self.created = not self.out.exists()
        prepare_folder(self.out)
        self.lock = RunLock(self.out)  # held until close()
        remove_stale_temps(self.out, RUN_FILES)
        path = self.out / CHECKPOINT_NAME
        if not path.exists():
            return None
        if not resume:
            raise CheckpointError(f"{self.out} already holds a run; pass --resume to continue "
                                  f"it or choose another --out")
        stored, state = loaded if loaded is not None else load_resume(self.out)
        self._check_resumable(stored, cfg)
        return state

    def _check_resumable(self, stored: TrainConfig, cfg: TrainConfig) -> None:
        if stored.preset != cfg.preset:
            raise CheckpointError(f"{self.out} holds a run of preset {stored.preset!r}, not "
                                  f"{cfg.preset!r}; resume it with --preset {stored.preset}")
        if stored.family != cfg.family:
            raise CheckpointError(f"{self.out} holds a run of family {stored.family}, not "
                                  f"{cfg.family}; a resumed run cannot change it")
        old, new = stored.flat(), cfg.flat()
        for name in new:
            a, b = old.get(name), new[name]
            if b is None and name in AUTO_FIELDS:
                continue  # "choose from the data": the stored run holds what was chosen
            if a != b and name not in RESUMABLE_OVERRIDES:
                raise CheckpointError(f"{self.out} was trained with {flag(name)} {a}, not {b}; "
                                      f"a resumed run cannot change it (drop the flag or use "
                                      f"another --out)")

    def check_same_data(self, stored: dict, info: dict, cfg: TrainConfig) -> None:
        """Refuse to resume on other data than the checkpoint recorded."""
        if stored["dim"] != info["dim"]:
            raise CheckpointError(f"the run in {self.out} was trained on {stored['dim']}-"
                                  f"dimensional data but {cfg.dataset!r} has {info['dim']}")
        old, new = stored.get("fingerprint"), info["fingerprint"]
        if old is None:  # a checkpoint from before fingerprints: nothing to compare
            return
        if old["sha256"] != new["sha256"] or old["shape"] != new["shape"]:
            def show(f: dict) -> str:
                return (f"{' x '.join(map(str, f['shape']))} values in "
                        f"[{f['min']:.4g}, {f['max']:.4g}], SHA-256 {f['sha256'][:12]}")
            raise CheckpointError(f"{cfg.dataset} is not the data the run in {self.out} was "
                                  f"trained on (then: {show(old)}; now: {show(new)}); restore "
                                  f"that data or start a new run with another --out")

    # --- the logs ------------------------------------------------------------------------

    def start_logs(self, cfg: TrainConfig, state: dict | None, info: dict) -> None:
        """Write config.json (a new run), open metrics.jsonl (cut back to the checkpoint on
        resume) and TensorBoard."""
        self.cfg, self.info = cfg, info
        self.image_shape = info["image_shape"]
        self.elapsed0 = float(state["elapsed"]) if state is not None else 0.0
        if self.out is None:
            return
        if state is None:
            text = json.dumps({"config": cfg.to_dict(), "versions": package_versions()},
                              indent=2) + "\n"
            atomic_write(self.out / CONFIG_NAME, lambda f: f.write(text.encode()))
        self.metrics_path = self.out / METRICS_NAME
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
        self.tb = _tensorboard(self.out / "tensorboard")

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
        if step.losses.get("mmd") is not None:
            self.losses.append(row["loss"])
        if self.metrics is not None:
            self._write_line((json.dumps(row) + "\n").encode())
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("stage", "iteration", "elapsed"):
                    self.tb.add_scalar(f"{step.stage}/{k}", v, t)

    def _write_line(self, line: bytes) -> None:
        # Flushed per line so `tail -f metrics.jsonl` follows a long run; resume still
        # truncates to the offset stored in the checkpoint.
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

    # --- pictures and checkpoints --------------------------------------------------------

    def sample_due(self, t: int) -> bool:
        return bool(self.out and self.image_shape and self.cfg.sample_every
                    and t % self.cfg.sample_every == 0)

    def grid_lost(self) -> bool:
        """Whether the final sample grid of an image run's folder is missing."""
        return self.out is not None and self.image_shape is not None and \
            not (self.out / GRID_NAME).exists()

    def grid(self, stage: Stage, name: str = GRID_NAME) -> None:
        if self.out is None or self.image_shape is None:
            return
        from gmmn.grid import save_grid

        # A fixed noise stream of its own: pictures never touch the training RNGs.
        images = stage.sample(GRID_SAMPLES, seeded_rng(self.cfg.seed, "pictures"))
        if images is not None:
            save_grid(unstandardize(images, self.info.get("mean"), self.info.get("std")),
                      tuple(self.image_shape), self.out / name)

    def flush(self) -> int:
        """Bytes of metrics.jsonl written so far (what a checkpoint records)."""
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

    # --- closing -------------------------------------------------------------------------

    def close_logs(self) -> None:
        # Nothing is buffered (see start_logs), so closing cannot meet a full disk again and
        # replace the error that stopped the run.
        if self.metrics is not None:
            with contextlib.suppress(OSError):
                self.metrics.close()
            self.metrics = None
        if self.tb is not None:
            with contextlib.suppress(Exception):  # TensorBoard's own writer on a full disk
                self.tb.close()
            self.tb = None

    def abandon(self) -> None:
        """After a failed start: delete the folder if this run created it and it is empty,
        so the next run finds nothing to confuse it. The lock file goes first; rmdir refuses
        a folder that another run has since put a file in."""
        if not self.created:
            return
        self.release()
        with contextlib.suppress(OSError):  # someone else's file appeared, or it is gone
            self.out.rmdir()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


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

