"""Checkpoints: atomic writes, safe loads, and the process-wide RNG states.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — nothing that
needs pickled code — so it loads with ``torch.load(weights_only=True)``. The config travels as
a JSON string, RNG states as uint8/int64 tensors. A file that carries pickled Python objects
is refused with :class:`gmmn.errors.CheckpointError` rather than executed.

Keys (format ``FORMAT``): ``format``, ``config`` (JSON), ``versions``, ``data`` (name,
dim, image_shape, unit_interval, source), ``stage_index``, ``stage``, ``iteration``
(iterations completed in that stage), ``model`` (state dict of the generative model),
``stage_state`` (optimiser buffers, data order, stage RNGs, best autoencoder),
``rng`` (python, numpy, torch global states), ``metrics_offset`` (bytes of metrics.jsonl to
keep on resume), ``elapsed`` (seconds of training so far), ``done``.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from gmmn.errors import CheckpointError

FORMAT = "gmmn-checkpoint-1"
CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same directory, fsync,
    then ``os.replace`` — a crash (even SIGKILL) leaves the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, *, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; refuse pickled code or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train a run there first")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        why = next((ln.split("error:", 1)[-1].split(" was not", 1)[0].strip()
                    for ln in str(exc).splitlines() if "Unsupported global" in ln), "")
        raise CheckpointError(
            f"{path} carries pickled Python objects that a safe load refuses to run ({why}); "
            f"load only checkpoints written by gmmn") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gmmn checkpoint (expected format {FORMAT})")
    return state


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
