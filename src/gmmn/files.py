"""Writing files so that no fault leaves half of one behind, and the run folder's lock.

Every file the package writes for a user (checkpoints, samples, reports, figures) goes
through :func:`atomic_write`: a temporary file in the destination's folder, fsync, then
``os.replace``. A crash at any moment (SIGKILL, a full disk) leaves the old file or the new
one, never a truncated mix; the temporary file is removed on errors, and
:func:`remove_stale_temps` sweeps the ones a SIGKILL left. Operating-system errors become one
:class:`gmmn.errors.OutputError` sentence naming the path (:func:`write_error`).

:class:`RunLock` is an advisory ``flock`` on ``.lock`` in a run folder: a second ``gmmn
train --out`` on the same folder refuses instead of interleaving its files with the first.
The kernel drops the lock when its process ends, however it ends, so a killed run never
leaves the folder locked.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from gmmn.errors import CheckpointError, OutputError

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".lock"


def write_error(exc: OSError, path: str | os.PathLike) -> OutputError:
    """One sentence for an OSError met while writing ``path``."""
    path = Path(path)
    where = path.parent if str(path.parent) else Path(".")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"no space left on {where} while writing {path.name}; free some "
                           f"space and run again (the previous {path.name}, if any, is intact)")
    if exc.errno == errno.ENOENT:
        return OutputError(f"cannot write {path}: the folder {where} does not exist; "
                           f"create it first")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return OutputError(f"cannot write {path}: {where} is not a folder; choose another path")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path}: no permission to write in {where}; choose "
                           f"a folder you can write")
    return OutputError(f"cannot write {path} ({exc.strerror or exc})")


# Free space below this (a few filesystem blocks) after a failed write means the disk filled:
# writers that hide the OSError (torch's zip writer raises RuntimeError "unexpected pos";
# numpy's "N requested and M written") are then reported as the full disk they met.
FULL_DISK_BYTES = 64 * 1024


def _disk_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL_DISK_BYTES


def _file_mode(path: Path) -> int:
    """The mode a new file at ``path`` gets: the old file's when overwriting one, else
    0o666 less the umask (mkstemp's 0o600 would make every report private)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync, and rename it to ``path``.

    The file keeps the mode of the one it replaces (a new one: 0o666 less the umask). Raises
    :class:`OutputError` for disk-full, permission and missing-folder errors, also when the
    writer hid a full disk behind its own error type.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; name a file")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=TEMP_SUFFIX, dir=folder)
    except OSError as exc:
        raise write_error(exc, path) from exc
    try:
        os.fchmod(fd, _file_mode(path))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        full = _disk_full(folder)  # measured before the temporary file frees its blocks
        Path(tmp).unlink(missing_ok=True)
        # Only errors that carry no errno of their own (torch's RuntimeError, numpy's bare
        # OSError) are read as the full disk; a real EIO or EACCES keeps its own sentence.
        if full and getattr(exc, "errno", None) is None:
            raise write_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path) from exc
        if isinstance(exc, OSError):
            raise write_error(exc, path) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """Delete ``NAME.*.tmp`` files in ``folder`` for each glob ``NAME`` of ``names``: the
    temporary files of :func:`atomic_write` calls that a SIGKILL cut short.

    Call it only while holding the folder's :class:`RunLock` (no writer is then running).
    """
    removed = []
    for name in names:
        for p in folder.glob(f"{name}.*{TEMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    if removed:
        log.info("removed %d unfinished temporary file(s) in %s", len(removed), folder)
    return removed


def prepare_folder(folder: Path, *, what: str = "--out") -> None:
    """Create ``folder`` (and its parents), or explain in one line why it cannot be, or why
    it takes no files (checked by creating and removing an empty one: root passes every
    permission check, and a folder such as /proc refuses new files all the same)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(f"{what} {folder} is a file, not a folder; choose a folder path") \
            from exc
    except OSError as exc:  # the path that failed: the folder or one of its parents
        raise write_error(exc, exc.filename or folder) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {folder}: no permission to write in it; choose a folder "
                          f"you can write")
    try:
        fd, probe = tempfile.mkstemp(prefix=".gmmn-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(f"no space left on {folder}; free some space and run again") \
                from exc
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OutputError(f"{what} {folder}: no permission to write in it; choose a "
                              f"folder you can write") from exc
        why = "" if exc.errno == errno.ENOENT else f" ({exc.strerror or exc})"  # e.g. /proc
        raise OutputError(f"{what} {folder} does not take new files{why}; choose a folder on "
                          f"a disk you can write") from exc


class RunLock:
    """An exclusive, non-blocking lock on ``folder/.lock`` (or ``folder/NAME``: another
    kind of writer, e.g. an evaluation, locks its own name), held until :meth:`release`."""

    def __init__(self, folder: Path, *, name: str = LOCK_NAME) -> None:
        self.path = folder / name
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows has no flock; run unlocked
            log.warning("no file locking on this platform: do not start two runs in %s",
                        folder)
            return
        # release() deletes the file, so a lock taken on a file that another process has
        # just deleted guards nothing: retry until the locked file is the one at the path.
        while self.fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise write_error(exc, self.path) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise CheckpointError(f"{folder} is in use by another gmmn process (pid "
                                      f"{owner}); wait for it to end or choose another --out") \
                    from exc
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
            else:
                os.close(fd)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Delete ``.lock`` (while still holding it, so no one else can have it) and unlock;
        a run that ended cleanly leaves no lock file behind. A killed process leaves the file,
        but not the lock: the kernel drops that with the process."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                # Only our own file: never one that another run created after ours went.
                if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                    self.path.unlink()
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
