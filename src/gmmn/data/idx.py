"""Reading IDX files, the format of MNIST and Fashion-MNIST (gzipped or raw).

Format (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): a 4-byte magic number
``0x00 0x00 TYPE NDIM``, then NDIM big-endian uint32 dimension sizes, then the values in
row-major order, big-endian. TYPE 0x08 is unsigned byte, the type of every MNIST file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from pathlib import Path

import numpy as np

from gmmn.errors import DataError
from gmmn.memory import human_bytes

# IDX type byte -> big-endian numpy dtype.
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
# The most a gzip input may decompress to. The largest file gmmn reads through gzip, the
# classic mnist.pkl.gz, is about 220 MB unpacked (the MNIST IDX files 47 MB); a few MB of
# crafted gzip can unpack to many GB, so reading stops at the cap instead of filling memory.
GZIP_CAP = 1 << 30  # 1 GiB
_CHUNK = 1 << 20


def gunzip(raw: bytes, *, source: str, fix: str) -> bytes:
    """The decompressed bytes of gzip data (every member), at most :data:`GZIP_CAP` of them.

    Raises :class:`DataError` naming ``source`` for data that is cut short, damaged, or
    decompresses beyond the cap; ``fix`` ends the message for the first two.
    """
    cap = GZIP_CAP
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as fh:
            while chunk := fh.read(_CHUNK):
                out += chunk
                if len(out) > cap:
                    raise DataError(f"{source} decompresses to more than {human_bytes(cap)}, "
                                    "the cap on gzip inputs (the largest file gmmn reads, "
                                    "mnist.pkl.gz, is about 220 MB unpacked): it is no dataset "
                                    "gmmn reads, perhaps a decompression bomb; replace it")
    except (EOFError, OSError, zlib.error) as exc:
        # EOFError: cut short; BadGzipFile (an OSError) and zlib.error: damaged bytes.
        raise DataError(f"{source} is a truncated or corrupt gzip file ({exc}); {fix}") from exc
    return bytes(out)


def read_bytes(path: Path) -> bytes:
    """The content of `path`, decompressed when it is gzip (told by its first bytes, not name).

    Hashing and parsing both work on these bytes, so a raw file and any gzip of it (the
    Debian package recompresses Fashion-MNIST) are recognised as the same data.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    return gunzip(raw, source=str(path), fix="delete it and download it again")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_idx(data: bytes, *, source: str, ndim: int | None = None) -> np.ndarray:
    """The array stored in IDX bytes, checked against its header.

    `ndim`, when given, is the number of dimensions the caller needs (3 for images, 1 for
    labels); `source` names the file in error messages.
    """
    if len(data) < 4:
        raise DataError(f"{source} is too short to be an IDX file ({len(data)} bytes)")
    zero, kind, dims = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or kind not in _IDX_TYPES:
        raise DataError(f"{source} is not an IDX file (magic number {data[:4].hex()}); "
                        "expected 0000 followed by a type byte and a dimension count")
    if ndim is not None and dims != ndim:
        raise DataError(f"{source} has {dims} dimensions where {ndim} were expected; "
                        "is it the images file swapped with the labels file?")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"{source} is truncated inside its IDX header")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=dims, offset=4))
    dtype = _IDX_TYPES[kind]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise DataError(f"{source} is truncated: its header promises shape {shape} "
                        f"({expected} bytes) but it holds {len(data)} bytes; download it again")
    if len(data) > expected:
        raise DataError(f"{source} has {len(data) - expected} bytes beyond the shape {shape} "
                        "its header declares; the file is corrupt, download it again")
    values = np.frombuffer(data, dtype=dtype, count=(expected - header) // dtype.itemsize,
                           offset=header)
    # A native-endian copy: torch.from_numpy rejects big-endian arrays.
    return values.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed IDX bytes of `array` (what the published checksums cover)."""
    array = np.asarray(array)
    matches = [(k, d) for k, d in _IDX_TYPES.items()
               if array.dtype.kind == d.kind and array.dtype.itemsize == d.itemsize]
    if not matches:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    kind, dtype = matches[0]
    head = bytes([0, 0, kind, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return head + array.astype(dtype).tobytes()


def write_idx(path: Path, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write `array` as an IDX file (gzipped when `compress` or the name ends in .gz).

    For tests and for users converting their own data to the MNIST layout.
    """
    data = idx_bytes(array)
    if compress if compress is not None else str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    Path(path).write_bytes(data)
