"""Checkpoints: atomic writes, safe loads, and the process-wide RNG states.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — nothing that
needs pickled code — so it loads with ``torch.load(weights_only=True)``. The config travels as
a JSON string, RNG states as uint8/int64 tensors. A file that carries pickled Python objects
is refused with :class:`gmmn.errors.CheckpointError` rather than executed.

Keys (format ``FORMAT``): ``format``, ``config`` (JSON), ``versions``, ``data`` (name,
dim, image_shape, unit_interval, source, mean, std and ``fingerprint``: the training split's
shape, range and SHA-256, absent in older files), ``stage_index``, ``stage``, ``iteration``
(iterations completed in that stage), ``model`` (state dict of the generative model),
``stage_state`` (optimiser buffers, data order, stage RNGs, best autoencoder),
``rng`` (python, numpy, torch global states), ``metrics_offset`` (bytes of metrics.jsonl to
keep on resume), ``elapsed`` (seconds of training so far), ``done``.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from gmmn.config import TrainConfig
from gmmn.errors import CheckpointError, ConfigError
from gmmn.files import atomic_write

FORMAT = "gmmn-checkpoint-1"
CHECKPOINT_NAME = "checkpoint.pt"
# Entries every reader needs; the others are optional (older checkpoints lack some).
REQUIRED = ("config", "data", "model", "stage_index", "iteration")
_ZIP_MAGIC = b"PK\x03\x04"


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (:func:`gmmn.files.atomic_write`): a crash, even
    SIGKILL, leaves the old file or the new one; a full disk is one :class:`OutputError`."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, *, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; refuse pickled code or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train a run there first")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror or exc})") from exc
    # torch.save has written zip archives since torch 1.6; anything else would reach the
    # legacy unpickler, whose complaint about random bytes reads like refused code.
    if magic != _ZIP_MAGIC:
        raise CheckpointError(f"{path} is not a gmmn checkpoint (not a PyTorch zip archive: "
                              f"empty, truncated or another kind of file)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        why = next((ln.split("error:", 1)[-1].split(" was not", 1)[0].strip()
                    for ln in str(exc).splitlines() if "Unsupported global" in ln), None)
        if why is None:
            raise CheckpointError(f"{path} is a corrupt checkpoint ({_first_line(exc)})") from exc
        raise CheckpointError(
            f"{path} carries pickled Python objects that a safe load refuses to run ({why}); "
            f"load only checkpoints written by gmmn") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({_first_line(exc)}); it "
                              f"may be truncated: use another copy or train again") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gmmn checkpoint (expected format {FORMAT})")
    return state


def checkpoint_config(state: dict, source: str | os.PathLike) -> TrainConfig:
    """The run's :class:`TrainConfig` from a loaded run checkpoint, after checking that it
    holds every entry a reader needs; one CheckpointError otherwise."""
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{source} lacks the checkpoint entries {missing}; it is damaged "
                              f"or was not written by gmmn")
    try:
        data = json.loads(state["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source} holds an unreadable config (not JSON: "
                              f"{_first_line(exc)}); the checkpoint is damaged") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{source} holds a config that is not a JSON object; the "
                              f"checkpoint is damaged")
    try:
        return TrainConfig.from_dict(data, source=str(source))
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"{source} holds an invalid config: {exc}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def capture_rng() -> dict:
    """The global python, numpy and torch RNG states as tensors (safe to load)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python_version": version,
        "python_state": torch.tensor(internal, dtype=torch.int64),
        "python_gauss": gauss,
        "numpy_kind": kind,
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached": float(cached),
        "torch": torch.get_rng_state(),
    }


def restore_rng(state: dict) -> None:
    random.setstate((state["python_version"], tuple(state["python_state"].tolist()),
                     state["python_gauss"]))
    np.random.set_state((state["numpy_kind"], state["numpy_keys"].numpy().astype(np.uint32),
                         state["numpy_pos"], state["numpy_has_gauss"], state["numpy_cached"]))
    torch.set_rng_state(state["torch"])
