"""Datasets as train / validation / test splits.

``load_dataset(name_or_path)`` is the one entry point. Names: ``digits`` (scikit-learn's
8x8 digits, bundled), ``mnist`` and ``fashion-mnist`` (IDX files, downloaded into the cache
when missing), ``tfd`` (the user's TFD_48x48.mat). Anything else is read as a path to the
user's own data (.npz, .npy, .csv or a folder of images). docs/data.md has the details.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gmmn.data.download import ProgressFactory, cache_dir, cache_root
from gmmn.data.splits import Splits, make_splits, random_split
from gmmn.errors import DataError

__all__ = ["DATASETS", "Splits", "cache_dir", "cache_root", "download_dataset", "load_dataset"]

DATASETS = ("digits", "mnist", "fashion-mnist", "tfd")


def _load_digits(*, seed: int, standardize: bool) -> Splits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)  # pixel counts 0..16 -> [0, 1]
    y = bunch.target.astype(np.int64)
    tr, va, te = random_split(len(x), (0.8, 0.1, 0.1), seed=seed)
    return make_splits(
        "digits", {"train": x[tr], "validation": x[va], "test": x[te]},
        labels={"train": y[tr], "validation": y[va], "test": y[te]},
        image_shape=(8, 8), source="scikit-learn (sklearn.datasets.load_digits)",
        standardize=standardize, label_names=[str(d) for d in range(10)])

# The benchmark datasets' validation hold-out is part of their definition (docs/paper.md,
# "Data": one fixed permutation, seed 0), not of a run's randomness.
PAPER_SPLIT_SEED = 0


def load_dataset(name_or_path: str | Path, *, data_dir: str | Path | None = None,
                 seed: int = 0, standardize: bool = False,
                 image_size: int | tuple[int, int] | None = None,
                 download: bool = True, progress: ProgressFactory | None = None,
                 split: str = "paper") -> Splits:
    """Load a named dataset or the user's own file/folder as :class:`Splits`.

    seed: the permutation behind the hold-outs of digits and of the user's own data. MNIST,
    Fashion-MNIST and TFD always use the paper's fixed split (permutation seed 0), whatever
    the seed, so that runs with different seeds are scored on the same validation set.
    standardize: z-score every feature with the training split's mean and std (kept in the
    Splits, see ``Splits.unstandardize``); the generator then needs a linear output.
    image_size: (H, W) or one int; resize the images of a folder to it.
    download: fetch missing MNIST / Fashion-MNIST files into the cache (else a DataError).
    progress: factory for a download progress bar; None keeps the library quiet.
    split: MNIST and Fashion-MNIST only: "paper" (the GMMN paper's random 5000 validation
    images) or "gan" (the GAN paper's: the first 50000 train, the last 10000 validate).
    """
    from gmmn.data import mnist, tfd, user

    key = str(name_or_path)
    if split != "paper" and key.lower() not in ("mnist", "fashion-mnist"):
        raise DataError(f"--split {split} is the GAN paper's MNIST split; {key} has only its "
                        f"own hold-out: use --split paper")
    if key.lower() in DATASETS:
        key = key.lower()
        if key == "digits":
            return _load_digits(seed=seed, standardize=standardize)
        if key == "tfd":
            return tfd.load_tfd(tfd.find_tfd(data_dir), seed=PAPER_SPLIT_SEED,
                                standardize=standardize)
        return mnist.load_idx_dataset(mnist.SOURCES[key], data_dir=data_dir,
                                      seed=PAPER_SPLIT_SEED,
                                      standardize=standardize, download_missing=download,
                                      progress=progress, split=split)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise DataError(f"{key!r} is neither a dataset name ({', '.join(DATASETS)}) nor an "
                        "existing file or folder; check the spelling or the path")
    if path.suffix.lower() == ".mat":
        return tfd.load_tfd(path, seed=seed, standardize=standardize)
    return user.load_user(path, seed=seed, standardize=standardize, image_size=image_size)


def download_dataset(name: str, *, data_dir: str | Path | None = None,
                     progress: ProgressFactory | None = None) -> list[Path]:
    """Make sure the files of `name` are present (downloading into the cache); their paths."""
    from gmmn.data import mnist

    if name not in mnist.SOURCES:
        raise DataError(f"only {', '.join(mnist.SOURCES)} can be downloaded, not {name!r}"
                        + ("; TFD must be placed by hand" if name == "tfd" else ""))
    return list(mnist.fetch(mnist.SOURCES[name], data_dir=data_dir, progress=progress).values())
