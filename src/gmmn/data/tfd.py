"""The Toronto Face Database (TFD_48x48.mat), which users must bring themselves.

The file (a MATLAB .mat readable by :func:`scipy.io.loadmat`) holds ``images`` (N, 48, 48)
uint8, ``folds`` (N, 5) with 0 = unlabeled, 1 = train, 2 = validation, 3 = test for each of
the five folds, and the label arrays ``labs_ex`` (expression) and ``labs_id`` (identity).

The paper's protocol (docs/paper.md, "Data"), with this module's exact rule for validation:

- pool = images unlabeled in fold 0 (``folds[:, 0] == 0``) that are in no fold's test split
  (in the real file the second condition removes nothing; it guards against test leakage);
- the pool is permuted with ``numpy.random.default_rng(seed)``; fold k's validation set is
  the next chunk of that permutation, as large as fold k's test split, so the five chunks
  are disjoint;
- training = the rest of the pool (disjoint from every validation chunk and test split);
- fold k's test set = ``folds[:, k] == 3`` in file order, labelled with ``labs_ex``.

``Splits.validation`` / ``Splits.test`` are fold 0's sets; all five are in
``validation_folds`` / ``test_folds``. Pixels are scaled to [0, 1].
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gmmn.data.download import cache_dir
from gmmn.data.splits import Splits, check_real, make_splits
from gmmn.errors import DataError

log = logging.getLogger(__name__)

FILENAME = "TFD_48x48.mat"
N_FOLDS = 5


def find_tfd(data_dir: str | Path | None) -> Path:
    """The path of TFD_48x48.mat in data_dir, data_dir/tfd or the cache, else a DataError."""
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [Path(data_dir).expanduser(), Path(data_dir).expanduser() / "tfd"]
    dirs.append(cache_dir("tfd"))
    for d in dirs:
        if (d / FILENAME).is_file():
            return d / FILENAME
    raise DataError(f"{FILENAME} was not found in {', '.join(map(str, dirs))}; TFD cannot be "
                    f"downloaded, so place your copy of {FILENAME} in {cache_dir('tfd')} "
                    "or pass its folder as the data directory")


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except NotImplementedError as exc:  # MATLAB v7.3 files are HDF5
        raise DataError(f"{path} is a MATLAB v7.3 (HDF5) file; re-save it with "
                        "save('-v7') so scipy can read it") from exc
    except Exception as exc:  # noqa: BLE001
        # scipy's reader fails on damaged files with assorted types (MatReadError,
        # ValueError, even IndexError); to the user they all mean one thing.
        raise DataError(f"{path} is not a readable .mat file "
                        f"({type(exc).__name__}: {exc}); copy TFD_48x48.mat again") from exc
    missing = [k for k in ("images", "folds") if k not in mat]
    if missing:
        raise DataError(f"{path} lacks the variable(s) {', '.join(missing)}; expected TFD's "
                        "images, folds, labs_ex and labs_id")
    return mat


def load_tfd(path: str | Path, *, seed: int = 0, standardize: bool = False) -> Splits:
    """Load TFD_48x48.mat as Splits with the five folds (rules in the module docstring)."""
    path = Path(path)
    mat = _read_mat(path)
    images, folds = np.asarray(mat["images"]), np.asarray(mat["folds"])
    # Before any cast: astype(float32) would drop a complex image's imaginary part silently.
    check_real(images, what="images", source=str(path))
    if images.ndim != 3 or images.shape[0] == 0:
        raise DataError(f"{path}: images has shape {images.shape}; expected (N, 48, 48)")
    n = images.shape[0]
    if folds.shape != (n, N_FOLDS):
        raise DataError(f"{path}: folds has shape {folds.shape}; expected ({n}, {N_FOLDS}), "
                        "one column per fold for every image")
    if not np.isin(folds, (0, 1, 2, 3)).all():
        raise DataError(f"{path}: folds holds values other than 0, 1, 2, 3")
    labs_ex = mat.get("labs_ex")
    labs_ex = None if labs_ex is None else np.asarray(labs_ex).reshape(-1)
    if labs_ex is not None and len(labs_ex) != n:
        raise DataError(f"{path}: labs_ex has {len(labs_ex)} entries for {n} images")

    if np.issubdtype(images.dtype, np.integer):
        if images.min() < 0 or images.max() > 255:
            raise DataError(f"{path}: integer images must lie in 0..255")
        pixels = images.astype(np.float32) / 255.0
    else:
        pixels = images.astype(np.float32)

    test_sets = [np.flatnonzero(folds[:, k] == 3) for k in range(N_FOLDS)]
    if any(len(t) == 0 for t in test_sets):
        raise DataError(f"{path}: some fold has no test images (folds == 3)")
    in_any_test = (folds == 3).any(axis=1)
    pool = np.flatnonzero((folds[:, 0] == 0) & ~in_any_test)
    sizes = [len(t) for t in test_sets]
    if sum(sizes) >= len(pool):
        raise DataError(f"{path}: {len(pool)} unlabeled images are too few for five "
                        f"validation chunks of {sizes} images and a training set")
    perm = np.random.default_rng(seed).permutation(pool)
    bounds = np.cumsum(sizes)
    val_sets = [np.sort(c) for c in np.split(perm[: bounds[-1]], bounds[:-1])]
    train = np.sort(perm[bounds[-1]:])
    log.info("TFD: %d training, validation chunks %s, test splits %s", len(train), sizes, sizes)

    return make_splits(
        "tfd",
        {"train": pixels[train], "validation": pixels[val_sets[0]],
         "test": pixels[test_sets[0]]},
        labels={"test": None if labs_ex is None else labs_ex[test_sets[0]]},
        image_shape=tuple(images.shape[1:]),
        source=str(path),
        standardize=standardize,
        validation_folds=[pixels[v] for v in val_sets],
        test_folds=[pixels[t] for t in test_sets],
    )
