"""The dataset cache and atomic, verified downloads into it.

A download goes to a temporary file in the destination folder, is verified there, and only
then is renamed onto its final name with :func:`os.replace` (atomic on one file system).
Whatever goes wrong (network error, short body, checksum mismatch, Ctrl-C) the temporary
file is removed, so the cache never holds a half-written file under a real name.

Progress is reported through an injectable factory, so library calls stay quiet and only
the CLI draws a tqdm bar.
"""

from __future__ import annotations

import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from gmmn.errors import DataError

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
# Seconds without a byte before a mirror counts as unreachable.
_TIMEOUT = 30.0


class ProgressBar(Protocol):
    def update(self, n: int) -> object: ...
    def close(self) -> object: ...


# Called as progress(description, total_bytes_or_None); tqdm fits with a small lambda.
ProgressFactory = Callable[[str, int | None], ProgressBar]


def cache_root() -> Path:
    """``$GMMN_DATA`` when set, else ``~/.cache/gmmn``; read at each call, not at import."""
    env = os.environ.get("GMMN_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gmmn"


def cache_dir(dataset: str) -> Path:
    """The cache folder of one dataset (not created here)."""
    return cache_root() / dataset


def _fetch_once(url: str, tmp, *, progress: ProgressFactory | None, label: str) -> None:
    """Stream `url` into the open file `tmp`; raise OSError/HTTPException on any failure."""
    with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = progress(label, total) if progress is not None else None
        received = 0
        try:
            while chunk := response.read(_CHUNK):
                tmp.write(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    # urllib raises IncompleteRead on most short bodies, but not all (e.g. without
    # chunked encoding when the peer closes cleanly), so the count is checked as well.
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)


def download(urls: Sequence[str], dest: Path, *, verify: Callable[[Path], None],
             progress: ProgressFactory | None = None) -> None:
    """Fetch the first of `urls` that works into `dest`, atomically.

    `verify(tmp_path)` raises DataError when the fetched bytes are wrong (checksum, format);
    the next mirror is then tried. Raises one DataError listing each mirror's failure.
    """
    failures: list[str] = []
    for url in urls:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part",
                                            dir=dest.parent)
        except OSError as exc:
            raise DataError(f"cannot write into the cache folder {dest.parent} "
                            f"({exc.strerror or exc}); set GMMN_DATA to a writable folder") from exc
        tmp_path = Path(tmp_name)
        try:
            log.info("downloading %s", url)
            with os.fdopen(fd, "wb") as tmp:
                _fetch_once(url, tmp, progress=progress, label=dest.name)
            verify(tmp_path)
            os.replace(tmp_path, dest)
            log.info("saved %s", dest)
            return
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # ValueError covers DataError from verify and urllib's "unknown url type".
            failures.append(f"{url}: {_describe(exc)}")
            log.info("download failed: %s", failures[-1])
        finally:
            # Also runs on KeyboardInterrupt, which must not leave a .part file behind.
            tmp_path.unlink(missing_ok=True)
    raise DataError(f"could not download {dest.name} ({'; '.join(failures)})")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed with {exc.expected} bytes still missing"
    return str(exc) or type(exc).__name__
