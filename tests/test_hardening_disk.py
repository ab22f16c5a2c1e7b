"""A real full disk (a small tmpfs) under training, logging and sampling, and the file modes of
every atomic write (issue 24, rows 1, 1b, 1d, 20)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import cli_env
from gmmn.errors import OutputError
from gmmn.files import atomic_write

TINY = ("--preset", "digits-gmmn", "--iterations", "20", "--sample-batch-size", "32",
        "--data-batch-size", "32", "--checkpoint-every", "0", "--no-progress")


@contextlib.contextmanager
def small_disk(path: Path, size: str = "2m"):
    """A tmpfs of ``size`` mounted at ``path``; skips where this machine cannot mount one."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root); the simulated tests stand")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, *, leave: int) -> None:
    """Fill ``disk`` until at most ``leave`` bytes are free (a filler file)."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(disk / f"filler-{uuid.uuid4().hex}", "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(0, free - leave))


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gmmn", *args], capture_output=True,
                          text=True, env=cli_env(), cwd=cwd, timeout=300)


@pytest.mark.slow
def test_a_full_disk_during_the_checkpoint_is_the_promised_line(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        fill(disk, leave=80 * 1024)  # config.json fits; the ~0.9 MB checkpoint does not
        done = _cli("train", *TINY, "--out", str(disk / "run"))
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert "no space left on" in last and "while writing checkpoint.pt" in last, last
        assert "Traceback" not in done.stderr and "unexpected pos" not in done.stderr
        assert not list((disk / "run").glob("*.tmp"))  # no half-written temporary left


@pytest.mark.slow
def test_torchs_hidden_full_disk_error_is_recognised_in_process(tmp_path):
    import torch

    with small_disk(tmp_path / "disk", "1m") as disk:
        fill(disk, leave=16 * 1024)
        with pytest.raises(OutputError, match="no space left on .* while writing ck.pt"):
            atomic_write(disk / "ck.pt", lambda f: torch.save({"w": torch.zeros(100000)}, f))
        assert not list(disk.glob("ck.pt*"))


@pytest.mark.slow
def test_a_full_disk_while_logging_metrics_leaves_whole_lines(tmp_path):
    import torch

    from gmmn.presets import get_preset
    from gmmn.training.loop import StepInfo
    from gmmn.training.rundir import RunFolder

    cfg = get_preset("digits-gmmn")
    with small_disk(tmp_path / "disk", "1m") as disk:
        out = disk / "run"
        out.mkdir()
        logger = RunFolder(out)
        logger.start_logs(cfg, None, {"image_shape": None})
        loss = {"mmd": torch.tensor(0.5)}
        logger.step(StepInfo("gmmn", cfg.log_every, cfg.iterations, loss, 2.0, 0.9, {}))
        fill(disk, leave=0)
        with pytest.raises(OutputError, match="no space left on .* while writing metrics.jsonl"):
            for k in range(2, 5000):  # fills the last partial page, then fails
                logger.step(StepInfo("gmmn", k * cfg.log_every, 10**9, loss, 2.0, 0.9,
                                     {"pad": 1.0} if k % 2 else {}))
        logger.close_logs()  # nothing buffered is left to fail a second time
        text = (out / "metrics.jsonl").read_bytes()
        assert text.endswith(b"\n") and all(line.startswith(b"{") for line in text.splitlines())


@pytest.mark.slow
def test_a_full_disk_during_sample_npy_says_no_space(tmp_path):
    run = tmp_path / "run"
    done = _cli("train", *TINY, "--out", str(run))
    assert done.returncode == 0, done.stderr
    with small_disk(tmp_path / "disk", "1m") as disk:
        fill(disk, leave=16 * 1024)
        done = _cli("sample", "--run", str(run), "--n", "5000", "--out", str(disk / "s.npy"))
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert "no space left on" in last and "while writing s.npy" in last, last
        assert "requested and" not in last
        assert not (disk / "s.npy").exists()


def test_the_hidden_full_disk_rule_simulated(tmp_path, monkeypatch):
    # Where no tmpfs can be mounted: a writer whose own error hides ENOSPC, on a folder whose
    # free space reads as nearly none.
    import gmmn.files as files

    monkeypatch.setattr(files, "_disk_full", lambda folder: True)

    def torch_like(f):
        f.write(b"x" * 10)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64")

    with pytest.raises(OutputError, match="no space left on"):
        atomic_write(tmp_path / "c.pt", torch_like)
    monkeypatch.setattr(files, "_disk_full", lambda folder: False)
    with pytest.raises(RuntimeError, match="unexpected pos"):  # not a full disk: not hidden
        atomic_write(tmp_path / "c.pt", torch_like)
    assert not list(tmp_path.iterdir())


def test_new_files_follow_the_umask_and_overwrites_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "new.txt", lambda f: f.write(b"a"))
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
        os.umask(0o002)
        atomic_write(tmp_path / "group.txt", lambda f: f.write(b"a"))
        assert stat.S_IMODE((tmp_path / "group.txt").stat().st_mode) == 0o664
        (tmp_path / "shared.txt").write_bytes(b"old")
        os.chmod(tmp_path / "shared.txt", 0o664)
        os.umask(0o077)
        atomic_write(tmp_path / "shared.txt", lambda f: f.write(b"new"))
        assert stat.S_IMODE((tmp_path / "shared.txt").stat().st_mode) == 0o664
        assert (tmp_path / "shared.txt").read_bytes() == b"new"
    finally:
        os.umask(old)


def test_write_error_names_enospc_and_edquot_alike():
    from gmmn.files import write_error

    for code in (errno.ENOSPC, errno.EDQUOT):
        msg = str(write_error(OSError(code, os.strerror(code)), Path("d/f.bin")))
        assert msg.startswith("no space left on d while writing f.bin")


def test_an_error_with_its_own_errno_is_not_called_a_full_disk(tmp_path, monkeypatch):
    import gmmn.files as files

    monkeypatch.setattr(files, "_disk_full", lambda folder: True)

    def eio(f):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with pytest.raises(OutputError) as err:
        atomic_write(tmp_path / "r.json", eio)
    assert "no space" not in str(err.value) and "Input/output error" in str(err.value)
    assert isinstance(err.value.__cause__, OSError)
