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

Every reader (``--resume``, ``gmmn sample``, ``gmmn evaluate``, :func:`gmmn.load_run`) goes
through :func:`checkpoint_config`, which checks each entry's type and range against the
stored config (the stage index against its stages, the iteration against that stage's
length, the RNG states by restoring them into fresh generators) before anything uses one:
a damaged checkpoint is one :class:`CheckpointError` naming the file and the entry.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

from gmmn.config import TrainConfig
from gmmn.errors import CheckpointError, ConfigError
from gmmn.families import config_from_dict, family_of
from gmmn.files import atomic_write

FORMAT = "gmmn-checkpoint-1"
CHECKPOINT_NAME = "checkpoint.pt"
# Entries every reader checks; every gmmn since the first checkpoint writes them all. Of the
# data description, older checkpoints lack mean, std and fingerprint (absent means None).
REQUIRED = ("config", "data", "model", "stage_index", "stage", "iteration", "stage_state",
            "rng", "metrics_offset", "elapsed", "done")
DATA_REQUIRED = ("name", "dim", "image_shape", "unit_interval", "source")
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
        # torch's message advises loading with weights_only=False, which would run the
        # file's code: never quoted. Only the refused global or the broken part is named.
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if refused is not None:
            raise CheckpointError(f"{path} carries pickled Python objects, which gmmn never "
                                  f"loads ({refused[1]}); load only checkpoints written by "
                                  f"gmmn") from None
        raise CheckpointError(f"{path} is a corrupt checkpoint ({_safe_detail(exc)}); use "
                              f"another copy or train again") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({_first_line(exc)}); it "
                              f"may be truncated: use another copy or train again") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gmmn checkpoint (expected format {FORMAT})")
    return state


def checkpoint_config(state: dict, source: str | os.PathLike) -> TrainConfig:
    """The run's :class:`TrainConfig` from a loaded run checkpoint, after checking that it
    holds every entry a reader needs, each of the right type and in range
    (:func:`check_entries`); one CheckpointError naming ``source`` and the entry otherwise."""
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
        cfg = config_from_dict(data, source=str(source))
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"{source} holds an invalid config: {exc}") from exc
    check_entries(state, cfg, source)
    return cfg


class _Damaged(Exception):
    """One entry of a checkpoint is wrong: (entry, what is wrong with it)."""


def check_entries(state: dict, cfg: TrainConfig, source: str | os.PathLike) -> None:
    """Check every entry of ``state`` that a reader uses against ``cfg`` (its stored config):
    types, ranges and their agreement with each other (docs/reliability.md)."""
    try:
        _check_data(state["data"])
        _check_model(state["model"])
        _check_progress(state, cfg)
        _check_rng(state["rng"])
        _whole(state, "metrics_offset", 0)
        elapsed = state["elapsed"]
        if not _real(elapsed) or not math.isfinite(elapsed) or elapsed < 0:
            raise _Damaged("elapsed", f"must be a number of seconds >= 0, not {elapsed!r}")
        if "versions" in state and not isinstance(state["versions"], dict):
            raise _Damaged("versions", "must be a dict of package versions")
    except _Damaged as exc:
        entry, what = exc.args
        raise CheckpointError(f"{source} is damaged: its entry {entry} {what}; use another "
                              f"copy of the checkpoint or train the run again") from None


def stage_iterations(cfg: TrainConfig, name: str) -> int:
    """The length of stage ``name`` of a run of ``cfg`` (one of its family's stages)."""
    return family_of(cfg).stage_iterations(cfg, name)


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _whole(d: dict, key: str, low: int, high: int | None = None, prefix: str = "") -> int:
    v = d[key]
    whole = isinstance(v, int) and not isinstance(v, bool)
    if not whole or v < low or (high is not None and v > high):
        within = f"between {low} and {high}" if high is not None else f">= {low}"
        raise _Damaged(prefix + key, f"must be a whole number {within}, not {v!r}")
    return v


def _check_data(info) -> None:
    if not isinstance(info, dict):
        raise _Damaged("data", f"must be a dict describing the data, not a "
                               f"{type(info).__name__}")
    missing = [k for k in DATA_REQUIRED if k not in info]
    if missing:
        raise _Damaged("data", f"lacks {', '.join(missing)}")
    dim = _whole(info, "dim", 1, prefix="data.")
    for key in ("name", "source"):
        if not isinstance(info[key], str):
            raise _Damaged(f"data.{key}", f"must be a string, not {info[key]!r}")
    if not isinstance(info["unit_interval"], bool):
        raise _Damaged("data.unit_interval", f"must be true or false, not "
                                             f"{info['unit_interval']!r}")
    shape = info["image_shape"]
    if shape is not None and (
            not isinstance(shape, (list, tuple)) or len(shape) not in (2, 3)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
            or math.prod(shape) != dim):
        raise _Damaged("data.image_shape", f"must be none or (H, W) or (H, W, C) of positive "
                                           f"sizes whose product is data.dim {dim}, not "
                                           f"{shape!r}")
    for key in ("mean", "std"):
        v = info.get(key)
        if v is None:
            continue
        if (not torch.is_tensor(v) or not v.is_floating_point() or tuple(v.shape) != (dim,)
                or not bool(torch.isfinite(v).all()) or (key == "std" and not bool((v > 0).all()))):
            what = "positive " if key == "std" else ""
            raise _Damaged(f"data.{key}", f"must be none or {dim} finite {what}numbers (one "
                                          f"per feature), not {_shown(v)}")
    levels = info.get("levels")
    if levels is not None and not (
            isinstance(levels, (list, tuple)) and all(
                isinstance(pair, (list, tuple)) and len(pair) == 2
                and isinstance(pair[0], int) and not isinstance(pair[0], bool)
                and 0 <= pair[0] < dim and torch.is_tensor(pair[1]) and pair[1].ndim == 1
                and pair[1].numel() > 0 and pair[1].is_floating_point()
                and bool(torch.isfinite(pair[1]).all()) for pair in levels)):
        raise _Damaged("data.levels", f"must be absent or (column, values) pairs: a column "
                                      f"index below data.dim {dim} and its finite values, "
                                      f"not {_shown(levels)}")
    fp = info.get("fingerprint")
    if fp is not None and not (
            isinstance(fp, dict) and isinstance(fp.get("sha256"), str)
            and isinstance(fp.get("shape"), list)
            and all(isinstance(s, int) and not isinstance(s, bool) for s in fp["shape"])
            and all(_real(fp.get(k)) for k in ("min", "max"))):
        raise _Damaged("data.fingerprint", "must be none or the training split's shape, min, "
                                           "max and sha256")


def _check_model(model) -> None:
    if not isinstance(model, dict) or not model:
        raise _Damaged("model", f"must be the model's state dict (names to tensors), not "
                                f"{_shown(model)}")
    bad = next((k for k, v in model.items() if not isinstance(k, str) or not torch.is_tensor(v)),
               None)
    if bad is not None:
        raise _Damaged(f"model[{bad!r}]", f"must be a tensor, not {_shown(model[bad])}")


def _check_progress(state: dict, cfg: TrainConfig) -> None:
    """Stage index, iteration, stage name, stage state and done agree with the config."""
    names = family_of(cfg).stage_names(cfg)
    index = _whole(state, "stage_index", 0, len(names))
    if index < len(names):
        _whole(state, "iteration", 0, stage_iterations(cfg, names[index]))
    else:
        _whole(state, "iteration", 0, 0)
    stage, stage_state, done = state["stage"], state["stage_state"], state["done"]
    if stage is not None and (index == len(names) or stage != names[index]):
        where = names[index] if index < len(names) else "none (the run is finished)"
        raise _Damaged("stage", f"is {stage!r} but stage_index {index} is {where}")
    if stage_state is not None and not isinstance(stage_state, dict):
        raise _Damaged("stage_state", f"must be none or a dict, not {_shown(stage_state)}")
    if stage_state is None and state["iteration"] > 0:
        raise _Damaged("stage_state", f"is none, but iteration {state['iteration']} of stage "
                                      f"{names[index]} needs its optimiser and data order")
    if not isinstance(done, bool):
        raise _Damaged("done", f"must be true or false, not {done!r}")
    if done != (index == len(names)):
        raise _Damaged("done", f"is {done}, but stage_index is {index} of the {len(names)} "
                               f"stages {names}")


def _check_rng(rng) -> None:
    """Restore the states into fresh generators: what a resume will do, without side effects."""
    if not isinstance(rng, dict):
        raise _Damaged("rng", f"must be a dict of RNG states, not {_shown(rng)}")
    try:
        python, numpy_state, torch_state = _rng_parts(rng)
        random.Random().setstate(python)
        np.random.RandomState().set_state(numpy_state)
        torch.Generator().set_state(torch_state)
    except KeyError as exc:
        raise _Damaged("rng", f"lacks {exc.args[0]}") from None
    except (TypeError, ValueError, RuntimeError, AttributeError, OverflowError,
            IndexError) as exc:
        raise _Damaged("rng", f"holds states that cannot be restored ({_first_line(exc)})"
                       ) from None


def _shown(v) -> str:
    if torch.is_tensor(v):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    return f"a {type(v).__name__}" if isinstance(v, (list, tuple, dict)) else repr(v)


def _safe_detail(exc: BaseException) -> str:
    """The part of an unpickling error that says what broke, without torch's advice to load
    with weights_only=False."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and "weights_only" not in line.lower() and "weights only" not in line.lower():
            return line
    return type(exc).__name__


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


def _rng_parts(state: dict) -> tuple[tuple, tuple, torch.Tensor]:
    """The python, numpy and torch states of :func:`capture_rng`'s dict, as they are set."""
    keys, pos = state["numpy_keys"].numpy(), state["numpy_pos"]
    if keys.min(initial=0) < 0 or keys.max(initial=0) >= 2**32:
        raise ValueError("numpy_keys must be 32-bit unsigned")
    if not isinstance(pos, int) or not 0 <= pos <= len(keys):  # numpy accepts any position
        raise ValueError(f"numpy_pos {pos!r} lies outside the {len(keys)} keys")
    return ((state["python_version"], tuple(state["python_state"].tolist()),
             state["python_gauss"]),
            (state["numpy_kind"], keys.astype(np.uint32), state["numpy_pos"],
             state["numpy_has_gauss"], state["numpy_cached"]),
            state["torch"])


def restore_rng(state: dict) -> None:
    python, numpy_state, torch_state = _rng_parts(state)
    random.setstate(python)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
