"""The user's own data: .npz, .npy, .csv files and folders of PNG/JPEG images.

- ``.npz`` with ``train``, ``validation`` and ``test`` arrays (and optional
  ``train_labels``, ``validation_labels``, ``test_labels``); or holding exactly one array,
  which is split like a ``.npy``.
- ``.npy``, ``.csv`` (numeric columns, an optional header row) and image folders: one set,
  split 90 / 5 / 5 by a permutation seeded with ``seed``.
- Arrays of shape (N, H, W) or (N, H, W, C) are images and keep that shape as
  ``image_shape``; uint8 arrays count as 0..255 pixels and are divided by 255.
- Image folders: every .png/.jpg/.jpeg directly inside, in name order; grayscale unless any
  image has colour, then all are RGB, flattened as (H, W, 3). Images are resized to
  ``image_size`` (H, W) when given; otherwise all must share the first image's size.

Pickled objects are never loaded (``allow_pickle=False``).
"""

from __future__ import annotations

import csv
import logging
import zipfile
from pathlib import Path

import numpy as np

from gmmn.data.splits import Splits, check_array, make_splits, random_split
from gmmn.errors import DataError
from gmmn.memory import check_fits

log = logging.getLogger(__name__)

SPLIT_FRACTIONS = (0.90, 0.05, 0.05)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_KEYS = ("train", "validation", "test")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _as_values(x: np.ndarray) -> np.ndarray:
    # uint8 arrays are taken to be 8-bit pixels: scaling them puts images in [0, 1].
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x


def _image_shape(x: np.ndarray) -> tuple[int, ...] | None:
    return tuple(x.shape[1:]) if x.ndim in (3, 4) else None


def _split_one(name: str, x: np.ndarray, *, source: str, seed: int, standardize: bool,
               image_shape: tuple[int, ...] | None) -> Splits:
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{source} holds no examples; it needs at least three rows")
    if len(x) < 3:
        raise DataError(f"{source} holds {len(x)} examples; at least three are needed "
                        "for train, validation and test")
    # Checked before splitting, so a bad value is reported by its row in the file.
    x = check_array(x, what="the data", source=source)
    tr, va, te = random_split(len(x), SPLIT_FRACTIONS, seed=seed)
    return make_splits(name, {"train": x[tr], "validation": x[va], "test": x[te]},
                       source=source, image_shape=image_shape, standardize=standardize)


def load_array_file(path: Path, *, seed: int = 0, standardize: bool = False) -> Splits:
    """Load a .npy or .npz file (rules in the module docstring)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    # np.load falls back to unpickling for unknown bytes; telling formats apart first keeps
    # "not a numpy file" from being reported as "pickled objects".
    if not (magic.startswith(_NPY_MAGIC) or magic.startswith(_ZIP_MAGIC)):
        raise DataError(f"{path} is not a readable numpy file (no .npy or .npz header); "
                        "save it with numpy.save or numpy.savez")
    if magic.startswith(_NPY_MAGIC):
        _check_npy(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy's parser raises many types on bad bytes
        raise _load_error(path, exc) from exc
    name = path.stem
    if isinstance(loaded, np.ndarray):
        return _split_one(name, _as_values(loaded), source=str(path), seed=seed,
                          standardize=standardize, image_shape=_image_shape(loaded))
    with loaded:
        try:
            arrays = {k: loaded[k] for k in loaded.files}
        except Exception as exc:  # noqa: BLE001 - as above, per member of the archive
            raise _load_error(path, exc) from exc
    if all(k in arrays for k in _KEYS):
        shape = _image_shape(arrays["train"])
        return make_splits(
            name, {k: _as_values(arrays[k]) for k in _KEYS},
            labels={k: arrays.get(f"{k}_labels") for k in _KEYS},
            source=str(path), image_shape=shape, standardize=standardize)
    if len(arrays) == 1:
        (x,) = arrays.values()
        return _split_one(name, _as_values(x), source=str(path), seed=seed,
                          standardize=standardize, image_shape=_image_shape(x))
    raise DataError(f"{path} has the arrays {sorted(arrays) or 'none'}; expected train, "
                    "validation and test (plus optional *_labels), or exactly one array")


def _load_error(path: Path, exc: Exception) -> DataError:
    """What np.load's exception means: refused pickled objects, or damaged bytes."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
        return DataError(f"{path} holds Python objects (pickled arrays), which are not loaded "
                         "for safety; save plain numeric arrays")
    if isinstance(exc, zipfile.BadZipFile | EOFError) or "not fully written" in first:
        return DataError(f"{path} is not a readable numpy file: truncated or corrupt ({first}); "
                         "copy or save it again")
    return DataError(f"{path} is not a readable numpy file ({first}); save it again with "
                     "numpy.save or numpy.savez")


def _check_npy(path: Path) -> None:
    """Read a .npy header ourselves: a damaged header or a file shorter than the header
    promises is named as such (numpy's own errors range from tokenizer failures to
    complaints about pickles)."""
    fmt = np.lib.format
    with open(path, "rb") as fh:
        try:
            major, _ = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            shape, _, dtype = read(fh)
        except Exception as exc:  # noqa: BLE001 - the header is a Python literal from the user
            raise DataError(f"{path} has a corrupt .npy header ({type(exc).__name__}); the "
                            "file is damaged: save it again with numpy.save") from exc
        if dtype.hasobject:
            raise DataError(f"{path} holds Python objects (pickled arrays), which are not "
                            "loaded for safety; save plain numeric arrays")
        need = int(np.prod(shape)) * dtype.itemsize
        have = path.stat().st_size - fh.tell()
    if have < need:
        raise DataError(f"{path} is truncated: it holds {have} of the {need} bytes of data its "
                        f"header promises ({' x '.join(map(str, shape))} {dtype}); copy or "
                        "save it again")


def read_csv(path: Path) -> np.ndarray:
    """A float array from a numeric CSV file; the first row may be a header."""
    rows: list[list[float]] = []
    width = None
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) is encoding, not part of row 1.
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for number, row in enumerate(csv.reader(fh), start=1):
                if not row or all(not c.strip() for c in row):
                    continue  # blank lines, e.g. a trailing one, carry no data
                try:
                    values = [float(c) for c in row]
                except ValueError:
                    if number == 1:
                        continue  # a header row
                    raise DataError(f"{path}, line {number}: non-numeric value; every column "
                                    "must be a number (only line 1 may be a header)") from None
                if width is None:
                    width = len(values)
                elif len(values) != width:
                    raise DataError(f"{path}, line {number}: {len(values)} columns where "
                                    f"earlier rows have {width}; every row needs the same count")
                rows.append(values)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} as CSV text ({exc})") from exc
    if not rows:
        raise DataError(f"{path} holds no data rows; add rows of comma-separated numbers")
    return np.asarray(rows, dtype=np.float64)


def load_csv(path: Path, *, seed: int = 0, standardize: bool = False) -> Splits:
    x = read_csv(path)
    return _split_one(path.stem, x, source=str(path), seed=seed, standardize=standardize,
                      image_shape=None)


def read_image_folder(folder: Path, *,
                      image_size: int | tuple[int, int] | None = None) -> np.ndarray:
    """(N, H, W) or (N, H, W, 3) float32 pixels in [0, 1] from the images in `folder`."""
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no .png, .jpg or .jpeg images")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{f} is not a readable image ({exc}); remove or replace it") from exc
    mode = "L" if all(im.mode in _GRAY_MODES for im in images) else "RGB"
    size = image_size or (images[0].height, images[0].width)
    # uint8 pixels, their float32 copy and one resized image, before allocating any of it.
    pixels = size[0] * size[1] * (1 if mode == "L" else 3)
    check_fits(pixels * (5.0 * len(files) + 4.0), error=DataError,
               what=f"{len(files)} images of {size[0]}x{size[1]}",
               fix="pass a smaller image size")
    out = []
    for f, im in zip(files, images, strict=True):
        im = im.convert(mode)
        if (im.height, im.width) != tuple(size):
            if image_size is None:
                raise DataError(f"{f} is {im.height}x{im.width} but {files[0].name} is "
                                f"{size[0]}x{size[1]}; pass an image size to resize them all")
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        out.append(np.asarray(im, dtype=np.uint8))
    log.info("read %d %s images of %dx%d from %s", len(out), mode, size[0], size[1], folder)
    return np.stack(out).astype(np.float32) / 255.0


def load_image_folder(folder: Path, *, seed: int = 0, standardize: bool = False,
                      image_size: int | tuple[int, int] | None = None) -> Splits:
    x = read_image_folder(folder, image_size=image_size)
    return _split_one(folder.name, x, source=str(folder), seed=seed, standardize=standardize,
                      image_shape=tuple(x.shape[1:]))


def load_user(path: Path, *, seed: int = 0, standardize: bool = False,
              image_size: int | tuple[int, int] | None = None) -> Splits:
    """Dispatch on the kind of path: folder, .npz/.npy or .csv."""
    if path.is_dir():
        return load_image_folder(path, seed=seed, standardize=standardize,
                                 image_size=image_size)
    suffix = path.suffix.lower()
    if suffix in (".npz", ".npy"):
        return load_array_file(path, seed=seed, standardize=standardize)
    if suffix == ".csv":
        return load_csv(path, seed=seed, standardize=standardize)
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use .npz, .npy, "
                    ".csv or a folder of PNG/JPEG images")
