"""The :class:`Splits` container and the checks every loader ends with.

Every loader (IDX, TFD, digits, user files) produces numpy arrays and hands them to
:func:`make_splits`, so validation (finite, non-empty, same dimension in every split),
standardisation and the ``unit_interval`` flag are decided in one place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gmmn.errors import DataError

log = logging.getLogger(__name__)

# Labels are class numbers 0 <= y < MAX_CLASSES. The classifier behind the evaluation has one
# output per class up to the largest label, so the bound keeps its size (and memory) from
# following a stray label value; 10000 is far above any dataset gmmn ships or expects.
MAX_CLASSES = 10_000


@dataclass(frozen=True)
class Splits:
    """A dataset as float32 (N, D) tensors; image data lies in [0, 1].

    Images are flattened row-major; colour images as (H, W, C), so
    ``x.reshape(-1, *image_shape)`` restores them.
    """

    name: str
    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None
    validation_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    image_shape: tuple[int, ...] | None  # (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; None: table
    source: str  # where the files were found (path or package), for `gmmn data info`
    # True when every value lies in [0, 1] (image data): the generator ends in a sigmoid.
    # False for standardised or unbounded data: the generator's output layer is linear.
    unit_interval: bool = True
    # TFD only: the per-fold validation and test sets of the paper's protocol (else None).
    validation_folds: tuple[torch.Tensor, ...] | None = None
    test_folds: tuple[torch.Tensor, ...] | None = None
    # Per-feature mean and std of the training split, (D,), when standardize=True was asked:
    # samples are mapped back to data units with `unstandardize`.
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    # Class names indexed by label value, when the dataset defines them.
    label_names: tuple[str, ...] | None = None
    # "pobs": every split holds its own pseudo-observations (gmmn.copulas.pobs).
    transform: str | None = None

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])

    @property
    def standardized(self) -> bool:
        return self.mean is not None

    def unstandardize(self, x: torch.Tensor) -> torch.Tensor:
        """Map standardised values (e.g. generator samples) back to data units: x*std + mean."""
        return unstandardize(x, self.mean, self.std)


def standardize(x: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None
                ) -> torch.Tensor:
    """(x - mean) / std, the inverse of :func:`unstandardize`: data units into the units a
    model trained on standardised data saw (x unchanged when the data was not standardised)."""
    if mean is None or std is None:
        return x
    return (x - mean.to(x)) / std.to(x)


def unstandardize(x: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None
                  ) -> torch.Tensor:
    """x * std + mean, or x unchanged when the data was not standardised."""
    if mean is None or std is None:
        return x
    return x * std.to(x) + mean.to(x)


def column_levels(train: torch.Tensor, max_levels: int) -> list[tuple[int, torch.Tensor]]:
    """The columns of ``train`` that hold at most ``max_levels`` distinct values, each with
    its sorted values: [(column, levels), ...]; none when ``max_levels`` is 0.

    Such a column is a category or a count (diabetes' sex column holds two values), which a
    continuous generator can only smear around its values; :func:`to_data_units` puts each
    sample on the nearest one. Found in the units the model trains in, so standardised data
    gives the standardised values of the same levels."""
    if max_levels <= 0:
        return []
    out = []
    for j in range(train.shape[1]):
        values = torch.unique(train[:, j].float())
        if len(values) <= max_levels:
            out.append((j, values))
    return out


def snap_to_levels(x: torch.Tensor, levels) -> torch.Tensor:
    """``x`` with every column of ``levels`` ([(column, sorted values), ...]) replaced by its
    nearest value: each sample of a categorical column lies on one of the data's values."""
    if not levels:
        return x
    x = x.clone()
    for j, values in levels:
        v = values.to(x)
        x[:, j] = v[(x[:, j, None] - v).abs().argmin(1)]
    return x


def to_data_units(x: torch.Tensor, info: dict) -> torch.Tensor:
    """Model outputs (k, D) as samples in data units, by the run's data description
    ``info``: discrete columns on their levels (``info["levels"]``, absent in runs made
    before it), then the standardisation undone."""
    return unstandardize(snap_to_levels(x, info.get("levels")), info.get("mean"),
                         info.get("std"))


def zscore_stats(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (float32, accumulated in float64) of a float32 training split;
    constant features get std 1, so they stay at 0 after centring instead of dividing by 0."""
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def standardized(splits: Splits) -> Splits:
    """``splits`` z-scored by its training split's mean and std, as ``make_splits(...,
    standardize=True)`` does it (the same float32 numbers): every split, TFD's folds, and the
    mean and std kept for mapping samples back. Already standardised splits are returned."""
    if splits.standardized:
        return splits
    mean, std = zscore_stats(splits.train.numpy())
    m, s = torch.from_numpy(mean), torch.from_numpy(std)

    def z(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy((x.numpy() - mean) / std)

    def folds(fs):
        return None if fs is None else tuple(z(f) for f in fs)

    return dataclasses.replace(
        splits, train=z(splits.train), validation=z(splits.validation), test=z(splits.test),
        validation_folds=folds(splits.validation_folds), test_folds=folds(splits.test_folds),
        unit_interval=False, mean=m, std=s)


def random_split(n: int, fractions: Sequence[float], *, seed: int) -> list[np.ndarray]:
    """Indices 0..n-1 cut into len(fractions) parts of a seeded permutation, each sorted.

    Every part but the first gets round(f * n) items and at least one; the first takes the
    rest, so small sets still get a validation and a test example.
    """
    perm = np.random.default_rng(seed).permutation(n)
    sizes = [max(1, round(f * n)) for f in fractions[1:]]
    first = n - sum(sizes)
    if first < 1:
        raise DataError(f"{n} examples are too few to split into {len(fractions)} parts")
    bounds = np.cumsum([first, *sizes])
    return [np.sort(part) for part in np.split(perm, bounds[:-1])]


def check_real(x: np.ndarray, *, what: str, source: str) -> None:
    """A DataError unless x holds real numbers (bool, integer or float).

    Kinds, not ``np.number``: numpy counts timedelta64 as a signed integer, but durations
    have no float value to train on, and complex values would lose their imaginary part.
    """
    if x.dtype.kind == "c":  # astype(float32) would drop the imaginary part without a word
        raise DataError(f"{source}: {what} is complex-valued ({x.dtype}); gmmn models real "
                        "values: store the real and imaginary parts as separate columns")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{source}: {what} has non-numeric dtype {x.dtype}; store numbers only")


def check_array(x: np.ndarray, *, what: str, source: str) -> np.ndarray:
    """A float32 (N, D) copy of x, or a DataError naming `source` when x is unusable."""
    check_real(x, what=what, source=source)
    if x.ndim == 0 or x.shape[0] == 0 or x.size == 0:
        raise DataError(f"{source}: {what} is empty (shape {x.shape}); it needs at least one row")
    x = x.reshape(x.shape[0], -1)
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x))[0][0])
        raise DataError(f"{source}: {what} holds NaN or inf values (first in row {bad}); "
                        "remove or impute them")
    big = np.abs(x) > np.finfo(np.float32).max if x.dtype.itemsize > 4 else None
    if big is not None and big.any():
        row, col = (int(i) for i in np.argwhere(big)[0])
        raise DataError(f"{source}: {what} holds {x[row, col]:g} (row {row}), beyond float32's "
                        f"range of +-3.4e38 that training computes in; rescale the data")
    return x.astype(np.float32)


def _labels(y: np.ndarray | None, n: int, *, what: str, source: str) -> torch.Tensor | None:
    """int64 labels, each a class number 0 <= y < MAX_CLASSES, or a DataError."""
    if y is None:
        return None
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise DataError(f"{source}: {what} has {len(y)} labels for {n} examples; "
                        "give one label per example")
    if y.dtype.kind not in "iu":
        if not (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
            raise DataError(f"{source}: {what} must hold integers, got dtype {y.dtype}")
    # Compared before the int64 cast, which would wrap uint64 and large floats.
    bad = np.flatnonzero((y < 0) | (y >= MAX_CLASSES))
    if len(bad):
        value = y[bad[0]]
        shown = str(int(value)) if y.dtype.kind in "iu" else f"{value:g}"
        raise DataError(f"{source}: {what} holds the label {shown} (row {bad[0]}); labels "
                        f"are class numbers 0 <= y < {MAX_CLASSES}: number the classes "
                        "0, 1, 2, ...")
    return torch.from_numpy(y.astype(np.int64))


def make_splits(name: str, parts: dict[str, np.ndarray], *, source: str,
                labels: dict[str, np.ndarray | None] | None = None,
                image_shape: tuple[int, ...] | None = None,
                standardize: bool = False,
                validation_folds: Sequence[np.ndarray] | None = None,
                test_folds: Sequence[np.ndarray] | None = None,
                label_names: Sequence[str] | None = None) -> Splits:
    """Check the three splits (and TFD's folds), optionally standardise, build Splits.

    Standardisation: z = (x - mean) / std per feature, mean and std from the training split
    only (so validation and test stay unseen). Constant features get std 1 rather than a
    division by zero; they stay at 0 after centring.
    """
    labels = labels or {}
    arrays = {k: check_array(parts[k], what=f"the {k} split", source=source)
              for k in ("train", "validation", "test")}
    folds = {
        "validation fold": [check_array(f, what=f"validation fold {i}", source=source)
                            for i, f in enumerate(validation_folds or ())],
        "test fold": [check_array(f, what=f"test fold {i}", source=source)
                      for i, f in enumerate(test_folds or ())],
    }
    d = arrays["train"].shape[1]
    for what, x in [*arrays.items(), *((k, f) for k, fs in folds.items() for f in fs)]:
        if x.shape[1] != d:
            raise DataError(f"{source}: the {what} split has {x.shape[1]} features but train "
                            f"has {d}; every split needs the same dimension")
    if image_shape is not None and int(np.prod(image_shape)) != d:
        raise DataError(f"{source}: image shape {image_shape} does not match dimension {d}")

    mean = std = None
    if standardize:
        mean, std = zscore_stats(arrays["train"])
        arrays = {k: (x - mean) / std for k, x in arrays.items()}
        folds = {k: [(f - mean) / std for f in fs] for k, fs in folds.items()}
        unit = False
    else:
        everything = [*arrays.values(), *folds["validation fold"], *folds["test fold"]]
        unit = all(float(x.min()) >= 0.0 and float(x.max()) <= 1.0 for x in everything)

    t = torch.from_numpy
    return Splits(
        name=name,
        train=t(arrays["train"]), validation=t(arrays["validation"]), test=t(arrays["test"]),
        train_labels=_labels(labels.get("train"), len(arrays["train"]),
                             what="the train split", source=source),
        validation_labels=_labels(labels.get("validation"), len(arrays["validation"]),
                                  what="the validation split", source=source),
        test_labels=_labels(labels.get("test"), len(arrays["test"]),
                            what="the test split", source=source),
        image_shape=tuple(int(s) for s in image_shape) if image_shape else None,
        source=source,
        unit_interval=unit,
        validation_folds=tuple(t(f) for f in folds["validation fold"]) or None,
        test_folds=tuple(t(f) for f in folds["test fold"]) or None,
        mean=None if mean is None else t(mean),
        std=None if std is None else t(std),
        label_names=tuple(label_names) if label_names else None,
    )


def fingerprint(x: torch.Tensor) -> dict:
    """Shape, range and SHA-256 of a float32 tensor's bytes: what a resume compares, and what
    a baseline's chains check their starting rows against."""
    a = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return {"shape": list(a.shape), "min": float(a.min()), "max": float(a.max()),
            "sha256": hashlib.sha256(a.data).hexdigest()}


def transformed(splits: Splits, transform: str | None) -> Splits:
    """``splits`` with ``transform`` applied to each split on its own (None: unchanged).

    ``pobs``: the pseudo-observations rank / (n + 1) per column (:func:`gmmn.copulas.pobs`),
    the copula scale of Hofert, Prasad & Zhu (2021): values in (0, 1), no standardisation.
    Idempotent, so splits already transformed come back the same."""
    if transform is None or splits.transform == transform:
        return splits
    if transform != "pobs":
        raise DataError(f"unknown data transform {transform!r}; use pobs or none")
    if splits.standardized:
        raise DataError("--transform pobs needs data that is not standardised; drop "
                        "--standardize")
    from gmmn.copulas import pobs

    def u(x: torch.Tensor) -> torch.Tensor:
        if len(x) == 0:
            return x
        return torch.from_numpy(pobs(x.double().numpy()).astype(np.float32))

    folds = {k: None if getattr(splits, k) is None else tuple(u(f) for f in getattr(splits, k))
             for k in ("validation_folds", "test_folds")}
    return dataclasses.replace(splits, train=u(splits.train), validation=u(splits.validation),
                               test=u(splits.test), unit_interval=True, transform=transform,
                               **folds)
