"""The user's own data: .npz, .npy, .csv files and folders of PNG/JPEG images.

- ``.npz`` with ``train``, ``validation`` and ``test`` arrays (and optional
  ``train_labels``, ``validation_labels``, ``test_labels``); or holding exactly one array,
  which is split like a ``.npy``, optionally with its labels beside it (``labels`` or ``y``,
  one per row, split with the rows).
- ``.npy``, ``.csv`` (numeric columns, an optional header row) and image folders: one set,
  split 90 / 5 / 5 by a permutation seeded with ``seed``.
- Arrays of shape (N, H, W) or (N, H, W, C) with C = 3 or 4 are images and keep that shape
  as ``image_shape``; (N, H, W, 1) is grey, (H, W). Other 4-D arrays are tables. uint8
  arrays count as 0..255 pixels and are divided by 255.
- Image folders: every .png/.jpg/.jpeg directly inside, in name order; grayscale unless any
  image has colour, then all are RGB (alpha dropped), flattened as (H, W, 3). Images are
  resized to ``image_size`` (H, W) when given; otherwise all must share the first image's
  size. Sizes come from the headers, and the memory check runs before any image is decoded.

Pickled objects are never loaded (``allow_pickle=False``); arrays that cannot fit in memory
are refused from their header.
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
LABEL_KEYS = ("labels", "y")  # the labels beside a single data array in an .npz
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _as_values(x: np.ndarray) -> np.ndarray:
    # uint8 arrays are taken to be 8-bit pixels: scaling them puts images in [0, 1].
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x


_COLOUR_CHANNELS = (3, 4)  # RGB, RGBA: what a PNG grid and matplotlib can show


def _image_shape(x: np.ndarray) -> tuple[int, ...] | None:
    if x.ndim == 3 or (x.ndim == 4 and x.shape[3] == 1):
        return tuple(x.shape[1:3])
    if x.ndim == 4 and x.shape[3] in _COLOUR_CHANNELS:
        return tuple(x.shape[1:])
    if x.ndim == 4:
        log.warning("arrays of shape %s are read as a table of %d columns: images need 1, 3 "
                    "or 4 channels last", x.shape, int(np.prod(x.shape[1:])))
    return None


def _split_one(name: str, x: np.ndarray, *, source: str, seed: int, standardize: bool,
               image_shape: tuple[int, ...] | None, labels: np.ndarray | None = None) -> Splits:
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{source} holds no examples; it needs at least three rows")
    if len(x) < 3:
        raise DataError(f"{source} holds {len(x)} examples; at least three are needed "
                        "for train, validation and test")
    # Checked before splitting, so a bad value is reported by its row in the file.
    x = check_array(x, what="the data", source=source)
    if labels is not None and np.asarray(labels).reshape(-1).shape[0] != len(x):
        raise DataError(f"{source}: its labels hold {np.asarray(labels).size} values for "
                        f"{len(x)} examples; give one label per example")
    tr, va, te = random_split(len(x), SPLIT_FRACTIONS, seed=seed)
    y = None if labels is None else np.asarray(labels).reshape(-1)
    parts = {"train": tr, "validation": va, "test": te}
    return make_splits(name, {k: x[i] for k, i in parts.items()},
                       labels=None if y is None else {k: y[i] for k, i in parts.items()},
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
    check_array_file(path)
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
    label_keys = [k for k in LABEL_KEYS if k in arrays]
    if len(arrays) == 2 and len(label_keys) == 1:  # one data array and its labels
        y = arrays.pop(label_keys[0])
        (x,) = arrays.values()
        return _split_one(name, _as_values(x), source=str(path), seed=seed,
                          standardize=standardize, image_shape=_image_shape(x), labels=y)
    if len(arrays) == 1:
        (x,) = arrays.values()
        return _split_one(name, _as_values(x), source=str(path), seed=seed,
                          standardize=standardize, image_shape=_image_shape(x))
    raise DataError(f"{path} has the arrays {sorted(arrays) or 'none'}; expected train, "
                    "validation and test (plus optional *_labels), exactly one array, or one "
                    "array and its labels (named labels or y)")


def _load_error(path: Path, exc: Exception) -> DataError:
    """What np.load's exception means: refused pickled objects, or damaged bytes."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
        return DataError(f"{path} holds Python objects (pickled arrays), which are not loaded "
                         "for safety; save plain numeric arrays")
    if isinstance(exc, MemoryError):
        return DataError(f"{path} does not fit in the memory available ({first}); use a "
                         "smaller file or free memory")
    if isinstance(exc, zipfile.BadZipFile | EOFError) or "not fully written" in first:
        return DataError(f"{path} is not a readable numpy file: truncated or corrupt ({first}); "
                         "copy or save it again")
    return DataError(f"{path} is not a readable numpy file ({first}); save it again with "
                     "numpy.save or numpy.savez")


def check_array_file(path: Path) -> None:
    """Check a .npy or .npz file from its headers before numpy reads it: a corrupt or
    truncated .npy, pickled objects, or arrays that cannot fit in memory are one DataError.
    Files that are neither (by their first bytes) are left to the caller."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(_NPY_MAGIC):
        _check_npy(path)
    elif magic.startswith(_ZIP_MAGIC):
        _check_npz(path)


def _read_npy_header(fh) -> tuple[tuple[int, ...], np.dtype]:
    fmt = np.lib.format
    major, _ = fmt.read_magic(fh)
    read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
    shape, _, dtype = read(fh)
    return tuple(shape), dtype


def _load_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    # The array as stored, then the float32 copy that training uses.
    count = int(np.prod(shape, dtype=object))
    return count * dtype.itemsize + 4 * count


def _check_fits_file(path: Path, nbytes: int, described: str) -> None:
    check_fits(nbytes, error=DataError, what=f"loading {path} ({described})",
               fix="load fewer rows (save a slice with numpy.save) or free memory")


def _check_npy(path: Path) -> None:
    """Read a .npy header ourselves: a damaged header, a file shorter than the header
    promises, or an array that cannot fit in memory is named as such (numpy's own errors
    range from tokenizer failures to complaints about pickles)."""
    with open(path, "rb") as fh:
        try:
            shape, dtype = _read_npy_header(fh)
        except Exception as exc:  # noqa: BLE001 - the header is a Python literal from the user
            raise DataError(f"{path} has a corrupt .npy header ({type(exc).__name__}); the "
                            "file is damaged: save it again with numpy.save") from exc
        if dtype.hasobject:
            raise DataError(f"{path} holds Python objects (pickled arrays), which are not "
                            "loaded for safety; save plain numeric arrays")
        need = int(np.prod(shape, dtype=object)) * dtype.itemsize
        have = path.stat().st_size - fh.tell()
    described = f"{' x '.join(map(str, shape))} {dtype}"
    if have < need:
        raise DataError(f"{path} is truncated: it holds {have} of the {need} bytes of data its "
                        f"header promises ({described}); copy or save it again")
    _check_fits_file(path, _load_bytes(shape, dtype), described)


def _check_npz(path: Path) -> None:
    """Refuse an .npz whose arrays cannot fit in memory, from their headers alone.

    A compressed member can claim any shape in a few bytes; numpy would allocate it whole.
    Damaged archives are left to np.load, whose errors :func:`_load_error` explains.
    """
    total, described = 0, []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    shape, dtype = _read_npy_header(fh)
                if not dtype.hasobject:
                    total += _load_bytes(shape, dtype)
                    described.append(f"{info.filename[:-4]} {' x '.join(map(str, shape))} "
                                     f"{dtype}")
    except Exception:  # noqa: BLE001 - a damaged archive: np.load names what is wrong
        return
    _check_fits_file(path, total, ", ".join(described))


def read_csv(path: Path) -> np.ndarray:
    """A float array from a numeric CSV file; the first row may be a header."""
    rows: list[list[float]] = []
    width = None
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) is encoding, not part of row 1.
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for number, row in enumerate(_csv_rows(reader, path), start=1):
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


def _csv_rows(reader, path: Path):
    """The rows of ``reader``, with the csv module's own errors (a field beyond its limit of
    131072 characters, a NUL byte) as one DataError naming the line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # line_num counts physical lines read, so it names the line the error is on.
            raise DataError(f"{path}, line {reader.line_num}: not CSV text of numbers ({exc}); "
                            "every field must be a number") from exc
        yield row


def load_csv(path: Path, *, seed: int = 0, standardize: bool = False) -> Splits:
    x = read_csv(path)
    return _split_one(path.stem, x, source=str(path), seed=seed, standardize=standardize,
                      image_shape=None)


def _bytes_per_pixel(mode: str) -> int:
    # What PIL holds per pixel once decoded, at least: 32-bit modes 4 bytes, 16-bit 2 bytes.
    from PIL import Image

    width = 4 if mode in ("I", "F") else 2 if mode.startswith("I;16") else 1
    return Image.getmodebands(mode) * width


def _open_image(f: Path):
    """``Image.open(f)``, which reads the header only, with its errors as one DataError."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(f)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{f} is too large to decode ({exc}); shrink it or remove it") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{f} is not a readable image ({exc}); remove or replace it") from exc


def read_image_folder(folder: Path, *,
                      image_size: int | tuple[int, int] | None = None) -> np.ndarray:
    """(N, H, W) or (N, H, W, 3) float32 pixels in [0, 1] from the images in `folder`.

    Every header is read first: sizes and modes decide the output and the memory check, so
    an image whose pixels cannot fit (a decompression bomb: a few KB of PNG claiming
    20000x20000) is refused before anything is decoded. Then images are decoded one at a
    time, each converted and resized into the output before the next.
    """
    from PIL import Image

    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no .png, .jpg or .jpeg images")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    headers = []  # (mode, height, width) of each file
    for f in files:
        with _open_image(f) as im:
            headers.append((im.mode, im.height, im.width))
    mode = "L" if all(m in _GRAY_MODES for m, _, _ in headers) else "RGB"
    size = tuple(image_size or headers[0][1:])
    if image_size is None:
        for f, (_, h, w) in zip(files, headers, strict=True):
            if (h, w) != size:
                raise DataError(f"{f} is {h}x{w} but {files[0].name} is {size[0]}x{size[1]}; "
                                "pass an image size to resize them all")
    # uint8 pixels of every image and their float32 copy, before allocating any of it.
    pixels = size[0] * size[1] * (1 if mode == "L" else 3)
    out_bytes = pixels * (5.0 * len(files) + 4.0)
    check_fits(out_bytes, error=DataError, what=f"{len(files)} images of {size[0]}x{size[1]}",
               fix="pass a smaller image size")
    # Then one image decoded and converted beside them: the largest, from its header.
    big = max(range(len(files)), key=lambda i: headers[i][1] * headers[i][2]
              * _bytes_per_pixel(headers[i][0]))
    m, h, w = headers[big]
    check_fits(out_bytes + h * w * (_bytes_per_pixel(m) + 4.0), error=DataError,
               what=f"decoding {files[big]} ({h}x{w} pixels, mode {m})",
               fix="shrink that image or remove it")
    out = np.empty((len(files), *size, *(() if mode == "L" else (3,))), dtype=np.uint8)
    for i, f in enumerate(files):
        with _open_image(f) as im:
            try:
                rgb = im.convert(mode)  # decodes; RGBA and palettes lose alpha here
            except (OSError, SyntaxError, ValueError, EOFError) as exc:  # PIL's decoders
                raise DataError(f"{f} is not a readable image ({exc}); remove or replace "
                                "it") from exc
        if (rgb.height, rgb.width) != size:
            rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        out[i] = np.asarray(rgb, dtype=np.uint8)
    log.info("read %d %s images of %dx%d from %s", len(out), mode, size[0], size[1], folder)
    x = out.astype(np.float32)
    del out
    x /= 255.0
    return x


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
