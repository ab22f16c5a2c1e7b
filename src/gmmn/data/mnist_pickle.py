"""Import the classic ``mnist.pkl.gz`` as the four official MNIST IDX files.

The pickle (from the Theano deep-learning tutorials, and shipped inside several packages)
holds a tuple of three ``(images, labels)`` pairs: 50000 training, 10000 validation and
10000 test images, float32 rows of 784 values equal to ``byte / 256``, labels as integers.
Its training part followed by its validation part is, in order, the official 60000-image
training file; its test part is the official test file. So the IDX bytes can be rebuilt
exactly, and each rebuilt file is checked against the published SHA-256 of the official
file before it is renamed into place.

A pickle can run code when it is loaded. :class:`_ArrayUnpickler` resolves only the few
numpy globals that an array pickle needs and refuses every other one, so a crafted file
fails with a :class:`DataError` before any of its payload runs.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np

from gmmn.data.idx import gunzip, idx_bytes, sha256_hex
from gmmn.data.mnist import SOURCES, IdxSource
from gmmn.errors import DataError
from gmmn.files import atomic_write

# What numpy's ndarray.__reduce__ names, under the module paths of numpy 1.x and 2.x.
_ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
})
# The pickle's parts, in the order the official training file stores them, and their rows.
PARTS = ("train", "validation", "test")
PICKLE_ROWS = (50000, 10000, 10000)
_SIDE = 28


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Only the text-to-bytes step a protocol-2 array pickle needs, not every codec.
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise DataError(f"a pickle asked for a {encoding!r} codec call, which a pickle of "
                        "numpy arrays never needs; refusing to unpickle it")
    return text.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers, nothing else."""

    def __init__(self, file, *, source: str) -> None:
        # latin1: the file was written by Python 2, whose str holds the arrays' raw bytes.
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            # Python 3 writes bytes into protocol-2 pickles as encode(text, "latin1").
            return _latin1_encode
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataError(f"{self._source} asks to load {module}.{name}, which a pickle of "
                            "numpy arrays never needs; refusing to unpickle it (the file may "
                            "run code when loaded): use the original mnist.pkl.gz")
        return super().find_class(module, name)


def read_mnist_pickle(path: str | Path, *, rows: tuple[int, int, int] | None = None,
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three ``(images, labels)`` parts of ``mnist.pkl.gz`` (gzipped or not), checked.

    Images come back as uint8 ``(N, 28, 28)`` (the pickle's ``byte / 256`` times 256),
    labels as uint8 ``(N,)``. Raises :class:`DataError` naming the file for anything that is
    not that layout.
    """
    rows = rows or PICKLE_ROWS
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; check the path") from exc
    if raw.startswith(b"\x1f\x8b"):
        raw = gunzip(raw, source=str(path), fix="fetch mnist.pkl.gz again")
    try:
        obj = _ArrayUnpickler(io.BytesIO(raw), source=str(path)).load()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001  (any failure inside pickle means a bad file)
        raise DataError(f"{path} is not a readable pickle ({type(exc).__name__}: {exc}); "
                        "fetch mnist.pkl.gz again") from exc
    layout = (f"a tuple of three (images, labels) pairs with {rows[0]}, {rows[1]} and "
              f"{rows[2]} rows of 784 values")
    if not (isinstance(obj, tuple | list) and len(obj) == 3
            and all(isinstance(p, tuple | list) and len(p) == 2 for p in obj)):
        raise DataError(f"{path} does not hold {layout}; is it the classic mnist.pkl.gz?")
    parts = {}
    for name, n, (images, labels) in zip(PARTS, rows, obj, strict=True):
        if not (isinstance(images, np.ndarray) and isinstance(labels, np.ndarray)):
            raise DataError(f"{path}: the {name} part does not hold numpy arrays; expected "
                            f"{layout}")
        if images.dtype.kind not in "biuf":  # strings, complex numbers, dates: not pixels
            raise DataError(f"{path}: the {name} images hold {images.dtype} values, not real "
                            "numbers; is it the classic mnist.pkl.gz?")
        if images.shape != (n, _SIDE * _SIDE) or labels.shape != (n,):
            raise DataError(f"{path}: the {name} part has images {images.shape} and labels "
                            f"{labels.shape} where ({n}, 784) and ({n},) were expected; "
                            "is it the classic mnist.pkl.gz?")
        scaled = np.asarray(images, dtype=np.float64) * 256.0
        pixels = np.rint(scaled)
        if not (np.all(np.abs(scaled - pixels) < 1e-3) and pixels.min() >= 0
                and pixels.max() <= 255):
            raise DataError(f"{path}: the {name} images are not bytes / 256 (values from "
                            f"{float(images.min()):.4g} to {float(images.max()):.4g}); is it "
                            "the classic mnist.pkl.gz?")
        if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9:
            raise DataError(f"{path}: the {name} labels are not digits 0..9; is it the "
                            "classic mnist.pkl.gz?")
        parts[name] = (pixels.astype(np.uint8).reshape(n, _SIDE, _SIDE),
                       labels.astype(np.uint8))
    return parts


def import_mnist_pickle(path: str | Path, dest: str | Path, *,
                        source: IdxSource | None = None,
                        rows: tuple[int, int, int] | None = None) -> list[Path]:
    """Write the four official MNIST IDX files (gzipped) rebuilt from ``mnist.pkl.gz``.

    Every file is built in memory and checked against ``source.sha256`` first; only when all
    four match are they written, each to a temporary file in ``dest`` that is renamed onto
    its name. A mismatch raises :class:`DataError` and writes nothing. Returns the paths.
    ``source`` defaults to ``SOURCES["mnist"]``; ``rows`` is the pickle's layout
    (:data:`PICKLE_ROWS`; tests use small pickles).
    """
    source = source or SOURCES["mnist"]
    parts = read_mnist_pickle(path, rows=rows)
    train_images = np.concatenate([parts["train"][0], parts["validation"][0]])
    train_labels = np.concatenate([parts["train"][1], parts["validation"][1]])
    content = {
        source.files["train_images"]: idx_bytes(train_images),
        source.files["train_labels"]: idx_bytes(train_labels),
        source.files["test_images"]: idx_bytes(parts["test"][0]),
        source.files["test_labels"]: idx_bytes(parts["test"][1]),
    }
    for filename, data in content.items():
        want = source.sha256.get(filename)
        if want is not None and sha256_hex(data) != want:
            raise DataError(f"{path} does not rebuild the official {source.name} file "
                            f"{filename} (SHA-256 {sha256_hex(data)[:12]}..., expected "
                            f"{want[:12]}...); nothing was written: use the original "
                            "mnist.pkl.gz, or download the IDX files with "
                            "'gmmn data download mnist'")
    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {dest} ({exc.strerror or exc}); choose a writable "
                        "--data-dir or set GMMN_DATA") from exc
    written = []
    for filename, data in content.items():
        packed = gzip.compress(data, mtime=0)
        atomic_write(dest / filename, lambda f, packed=packed: f.write(packed))
        written.append(dest / filename)
    return written
