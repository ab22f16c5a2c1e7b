"""`gmmn evaluate` and `gmmn reproduce` writing their outputs under hostile input (issue 24,
rows 1c, 2, 2b, 2c, 3, 11, 17, 21c, 21d). Each test runs the real command on a tiny trained
run; full and read-only disks are real small tmpfs mounts where this machine lets a test mount
one (as root, as in CI), with a simulated twin beside each. docs/reliability.md lists them."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import gmmn.evaluate.report as report_mod
import gmmn.reproduce as reproduce_mod
from conftest import cli_env
from gmmn import load_run
from gmmn.cli import main
from gmmn.data import load_dataset
from gmmn.errors import OutputError
from gmmn.evaluate.report import evaluate_run
from gmmn.files import RunLock, prepare_folder

FAST = ["--metrics", "parzen", "--n-samples", "200"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("trained") / "R"
    assert main(["train", "--preset", "digits-gmmn", "--iterations", "20",
                 "--sample-batch-size", "32", "--data-batch-size", "32", "--hidden", "16",
                 "--checkpoint-every", "0", "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path) -> pathlib.Path:
    """A fresh copy of the tiny run for each test, which may write into it."""
    return pathlib.Path(shutil.copytree(trained, tmp_path / "R"))


def _evaluate(*args) -> int:
    return main(["evaluate", *FAST, *map(str, args)])


def _files(folder: pathlib.Path) -> dict[str, bytes]:
    """Every entry of ``folder`` (hidden ones too): a file's bytes, a folder as None."""
    return {p.name: p.read_bytes() if p.is_file() else None for p in folder.iterdir()}


def _one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()[-1:]  # after any closed progress bars
    err = err[0] if err else ""
    assert err.startswith("gmmn ") and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


@contextlib.contextmanager
def _mounted(folder: pathlib.Path, options: str):
    """A small tmpfs on ``folder`` for the duration (skips where mounting is not allowed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root); the simulated test stays")
    folder.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill(disk: pathlib.Path, *, leave: int) -> None:
    """Fill ``disk`` to the last byte, then give ``leave`` bytes back."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    with contextlib.suppress(OSError):
        os.truncate(filler, max(0, filler.stat().st_size - leave))


# --- row 2: an existing folder as --out ------------------------------------------------------

@pytest.mark.integration
def test_a_folder_as_out_gets_the_report_inside_and_nothing_beside_it(run, capsys):
    (run / "eval").mkdir()
    before = _files(run)
    assert _evaluate("--run", run, "--out", run / "eval") == 0
    assert _files(run) == before  # the run's samples.png and checkpoint untouched, nothing new
    assert {"report.json", "report.md", "samples.png", "training_curves.png"} <= set(
        os.listdir(run / "eval"))
    assert "report: " + str(run / "eval" / "report.json") in capsys.readouterr().out
    # A path without an extension that does not exist yet is a folder too.
    assert _evaluate("--run", run, "--out", run / "eval-2") == 0
    assert json.loads((run / "eval-2" / "report.json").read_text())["parzen"]


# --- row 2b: a named report beside others --------------------------------------------------

@pytest.mark.integration
def test_a_named_report_keeps_the_other_reports_and_their_figures(run):
    assert _evaluate("--run", run) == 0
    before = _files(run / "eval")
    assert _evaluate("--run", run, "--out", run / "eval" / "seed2.json", "--seed", "2") == 0
    after = _files(run / "eval")
    assert {k: after.get(k) for k in before} == before  # report.json, report.md, figures
    assert set(after) - set(before) == {"seed2.json", "seed2.md", "seed2-samples.png",
                                        "seed2-training_curves.png"}
    named = json.loads((run / "eval" / "seed2.json").read_text())
    assert named["seed"] == 2 and named["figures"]["samples"] == "seed2-samples.png"
    assert "(seed2-samples.png)" in (run / "eval" / "seed2.md").read_text()
    assert json.loads((run / "eval" / "report.json").read_text())["seed"] == 0


# --- row 2c: an --out that would overwrite the run's own files ------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("target, words", [
    ("checkpoint.pt", "neither a .json report nor a folder"),
    ("samples.png", "neither a .json report nor a folder"),
    ("metrics.jsonl", "neither a .json report nor a folder"),
    ("config.json", "overwrite the run's config.json"),
    (".", "overwrite the run's samples.png"),
])
def test_an_out_that_would_overwrite_run_files_is_refused(run, capsys, target, words):
    before = _files(run)
    assert _evaluate("--run", run, "--out", run / target) == 2
    _one_line_error(capsys, words)
    assert _files(run) == before


@pytest.mark.integration
def test_a_report_into_another_run_folder_is_refused_and_a_named_one_in_its_own_is_not(
        run, tmp_path, capsys):
    other = pathlib.Path(shutil.copytree(run, tmp_path / "other"))
    before = _files(other)
    assert _evaluate("--run", run, "--out", other) == 2
    _one_line_error(capsys, "overwrite the run's samples.png")
    assert _files(other) == before
    before = _files(run)
    assert _evaluate("--run", run, "--out", run / "mine.json") == 0
    after = _files(run)
    assert {k: after[k] for k in before} == before
    assert {"mine.json", "mine.md", "mine-samples.png"} <= set(after)


# --- row 3: one evaluation (and one reproduction) at a time --------------------------------

@pytest.mark.integration
def test_a_second_evaluation_of_a_report_folder_refuses_and_leaves_the_first_alone(run,
                                                                                  capsys):
    folder = run / "eval"
    folder.mkdir()
    live = folder / ".evaluating-live"  # the working folder of the evaluation that runs
    live.mkdir()
    (live / "samples.png").write_bytes(b"being written")
    with RunLock(folder, name=report_mod.EVAL_LOCK):  # held as another process holds it
        assert _evaluate("--run", run) == 2
        _one_line_error(capsys, "in use by another gmmn process", f"pid {os.getpid()}")
        assert sorted(os.listdir(folder)) == [".evaluate.lock", ".evaluating-live"]
        assert (live / "samples.png").read_bytes() == b"being written"
    # Released: the next evaluation sweeps what a killed one left, and leaves no lock behind.
    assert _evaluate("--run", run) == 0
    assert sorted(os.listdir(folder)) == ["report.json", "report.md", "samples.png",
                                          "training_curves.png"]


@pytest.mark.slow
def test_two_real_evaluations_of_one_run_the_second_refuses(run, capsys):
    """Two processes; the first is stopped (SIGSTOP) while it holds the lock, so the second
    meets it whatever the machine's speed."""
    first = subprocess.Popen([sys.executable, "-m", "gmmn", "evaluate", "--run", str(run),
                              "--metrics", "parzen", "--n-samples", "1000"],
                             env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lock = run / "eval" / report_mod.EVAL_LOCK
        deadline = time.monotonic() + 120
        while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        first.send_signal(signal.SIGSTOP)
        assert lock.exists(), first.communicate()
        assert _evaluate("--run", run, "--seed", "5") == 2
        _one_line_error(capsys, "in use by another gmmn process", f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["seed"] == 0 and report["figures"]["samples"] == "samples.png"
    assert not any(p.name.startswith(".") for p in (run / "eval").iterdir())


@pytest.mark.integration
def test_a_second_reproduce_on_one_folder_refuses_before_doing_anything(tmp_path, capsys):
    out = tmp_path / "rep"
    out.mkdir()
    with RunLock(out, name=reproduce_mod.LOCK_NAME):
        assert main(["reproduce", "--dataset", "digits", "--quick", "--models", "gmmn",
                     "--out", str(out)]) == 2
        _one_line_error(capsys, "in use by another gmmn process", f"pid {os.getpid()}")
        assert os.listdir(out) == [reproduce_mod.LOCK_NAME]
    assert os.listdir(out) == []  # released and removed by its holder


# --- row 11: the device ----------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("device, words", [("foo", "unknown device 'foo'"),
                                           ("cuda", "CUDA is not available")])
def test_a_bad_or_missing_device_is_one_line(run, capsys, device, words):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert _evaluate("--run", run, "--device", device) == 2
    _one_line_error(capsys, words)
    assert not (run / "eval").exists()


# --- row 17: a damaged metrics.jsonl ---------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("damage", ["garbage line", "empty", "string loss", "not an object"])
def test_a_damaged_metrics_file_skips_only_the_training_curves(run, caplog, damage):
    metrics = run / "metrics.jsonl"
    good = metrics.read_text()
    metrics.write_text({"garbage line": good + "}{ not json\n", "empty": "",
                        "string loss": good + '{"stage": "gmmn", "iteration": 21, '
                                              '"loss": "abc"}\n',
                        "not an object": good + "[1, 2]\n"}[damage])
    with caplog.at_level(logging.WARNING, logger="gmmn.evaluate.report"):
        assert _evaluate("--run", run) == 0
    assert any("no training-curve figure" in r.getMessage() and "metrics.jsonl" in
               r.getMessage() for r in caplog.records)
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["parzen"]["mean"] < 0 and "training_curves" not in report["figures"]
    assert "metrics.jsonl" in report["training_curves"]["skipped"]
    md = (run / "eval" / "report.md").read_text()
    assert "Skipped:" in md and "- training_curves: " in md
    assert not (run / "eval" / "training_curves.png").exists()


# --- row 21c, 21d: folders that take no files, and read-only ones ---------------------------

@pytest.mark.integration
def test_an_out_in_a_folder_that_takes_no_files_is_one_line(run, capsys):
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc here")
    assert _evaluate("--run", run, "--out", "/proc/report.json") == 2
    _one_line_error(capsys, "/proc")


@pytest.mark.slow
def test_a_read_only_out_names_the_real_path(run, tmp_path, capsys):
    ro = tmp_path / "ro"
    with _mounted(ro, "ro,size=64k"):
        assert _evaluate("--run", run, "--out", ro / "new" / "report.json") == 2
        err = _one_line_error(capsys, f"cannot write {ro / 'new'}:", "no permission")
        assert str(ro / "new" / "x") not in err


def test_prepare_folder_names_the_folder_it_could_not_make(tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    with pytest.raises(OutputError) as info:
        prepare_folder(tmp_path / "run")
    assert f"cannot write {tmp_path / 'run'}: no permission" in str(info.value)
    assert "/x" not in str(info.value)


# --- row 1c: a full disk while the figures are written ---------------------------------------

@pytest.mark.slow
def test_a_full_disk_during_the_figures_is_one_line_and_keeps_the_old_report(run, tmp_path,
                                                                             capsys):
    disk = tmp_path / "disk"
    with _mounted(disk, "size=1m"):
        out = disk / "eval"
        assert _evaluate("--run", run, "--out", out / "report.json") == 0
        before = _files(out)
        _fill(disk, leave=8192)  # room for the lock, not for a 10 x 10 sample grid
        capsys.readouterr()
        assert _evaluate("--run", run, "--out", out / "report.json", "--seed", "3") == 2
        _one_line_error(capsys, f"no space left on {out} while writing samples.png")
        assert _files(out) == before  # the old report whole; no temporary folder or file


@pytest.mark.integration
def test_a_full_disk_during_the_figures_simulated(trained, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def full(self, fname, **kwargs):  # half a PNG, then the disk is full
        with contextlib.ExitStack() as stack:
            f = fname if hasattr(fname, "write") else stack.enter_context(open(fname, "wb"))
            f.write(b"\x89PNG half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    sp = load_dataset("digits")
    model = load_run(trained).sampler()
    out = tmp_path / "eval"
    evaluate_run(model, sp, out_dir=out, metrics_to_run=["nn"], n_samples=50)
    before = _files(out)
    monkeypatch.setattr(Figure, "savefig", full)
    with pytest.raises(OutputError, match=f"no space left on {out} while writing samples.png"):
        evaluate_run(model, sp, out_dir=out, metrics_to_run=["nn"], n_samples=50, seed=4)
    assert _files(out) == before


@pytest.mark.integration
def test_load_run_checks_its_device_in_one_error(run):
    # Row 11, the API's half: the same check as `gmmn train --device`.
    import torch

    from gmmn import load_run
    from gmmn.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown device 'foo'"):
        load_run(run, device="foo")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            load_run(run, device="cuda")
    assert load_run(run, device="auto").sample(3, seed=0).shape[0] == 3
