"""Faults and bad inputs from the hostile probe (issue 13): one test per row, each a case that
used to end in a traceback, a silent wrong result or lost work. docs/reliability.md lists
them with their outcomes. Long kill and signal loops are marked slow (pytest -m slow)."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import gmmn.evaluate.report as report_mod
from conftest import all_settings, config_with, one_line_error
from gmmn import GMMN, load_run
from gmmn.cli import main
from gmmn.config import TrainConfig
from gmmn.data import load_dataset
from gmmn.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    OutputError,
    TrainingDiverged,
    TrainingInterrupted,
)
from gmmn.evaluate.report import evaluate_run
from gmmn.families import config_from_dict
from gmmn.files import RunLock
from gmmn.presets import get_preset
from gmmn.training.checkpoint import load_checkpoint, save_checkpoint
from gmmn.training.run import run_training

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
TINY = {"iterations": 12, "hidden": (16,), "sample_batch_size": 32, "data_batch_size": 32,
        "checkpoint_every": 0, "log_every": 2, "sample_every": 0}
TINY_FLAGS = ["--iterations", "12", "--hidden", "16", "--sample-batch-size", "32",
              "--data-batch-size", "32", "--checkpoint-every", "0", "--log-every", "2",
              "--sample-every", "0", "--no-progress"]


class Stop(Exception):
    """Raised from a callback: the process 'dies' after the last checkpoint."""


def _cfg(**kw) -> TrainConfig:
    return get_preset("digits-gmmn").override(**{**TINY, **kw})


def _stop_at(iteration: int):
    def callback(step):
        if step.iteration == iteration:
            raise Stop

    return callback


def _interrupted_run(out, cfg: TrainConfig, *, at: int = 7) -> None:
    """A run in ``out`` whose last checkpoint is iteration ``at - 1``."""
    with pytest.raises(Stop):
        run_training(cfg, out_dir=out, callback=_stop_at(at))


_one_line_error = one_line_error  # tests/conftest.py


def _ranges() -> dict:
    """Every bounded setting's (low, high, low included, high included)."""
    return {n: b for n, (_, b) in all_settings().items() if b is not None}


def _same_run(a, b) -> None:
    wa, wb = load_checkpoint(a / "checkpoint.pt")["model"], load_checkpoint(b / "checkpoint.pt")
    for k, v in wa.items():
        assert torch.equal(v, wb["model"][k]), k
    def numbers(run):  # every logged number but the wall time
        return [{k: v for k, v in r.items() if k != "elapsed"}
                for r in _rows(run / "metrics.jsonl")]

    assert numbers(a) == numbers(b)


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "run"
    run_training(_cfg(iterations=3), out_dir=out)
    return out


# --- row 3: a lock on the run folder -------------------------------------------------------

@pytest.mark.integration
def test_a_second_run_in_a_busy_folder_refuses_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):  # held as another process holds it (its own open file)
        with pytest.raises(CheckpointError, match="in use by another gmmn process"):
            run_training(_cfg(), out_dir=out)
        assert main(["train", "--preset", "digits-gmmn", "--out", str(out), *TINY_FLAGS]) == 2
        _one_line_error(capsys, "in use by another gmmn process", f"pid {os.getpid()}")
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    run_training(_cfg(iterations=2), out_dir=out)  # released: the folder is usable again
    assert load_checkpoint(out / "checkpoint.pt")["done"]


# --- row 11: SIGINT / SIGTERM checkpoint, then stop -----------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_checkpoints_stops_and_resumes_bit_identical(tmp_path, sig):
    cfg = _cfg()  # checkpoint_every 0: only the signal writes one mid-stage
    run_training(cfg, out_dir=tmp_path / "whole")
    before = signal.getsignal(sig)

    def send(step):
        if step.iteration == 7:
            signal.raise_signal(sig)

    with pytest.raises(TrainingInterrupted, match=f"{sig.name} at gmmn iteration 7") as info:
        run_training(cfg, out_dir=tmp_path / "cut", callback=send)
    assert info.value.signum == sig and signal.getsignal(sig) is before
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert (state["iteration"], state["done"]) == (7, False)
    run_training(cfg, out_dir=tmp_path / "cut", resume=True)
    _same_run(tmp_path / "whole", tmp_path / "cut")


@pytest.mark.integration
def test_the_cli_exits_128_plus_the_signal_after_the_checkpoint(tmp_path, capsys, monkeypatch):
    import gmmn.training.run as runner

    real = runner.run_training

    def train_with_sigterm(cfg, **kw):
        kw["callback"] = lambda step: step.iteration == 5 and signal.raise_signal(signal.SIGTERM)
        return real(cfg, **kw)

    monkeypatch.setattr(runner, "run_training", train_with_sigterm)
    out = tmp_path / "run"
    code = main(["train", "--preset", "digits-gmmn", "--out", str(out), *TINY_FLAGS])
    assert code == 128 + signal.SIGTERM
    _one_line_error(capsys, "stopped by SIGTERM at gmmn iteration 5", "--resume")
    assert load_checkpoint(out / "checkpoint.pt")["iteration"] == 5


# --- row 4: every field's range, in one place ------------------------------------------------

def _numeric(hint) -> bool:
    text = str(hint)
    return "int" in text or "float" in text


def test_every_numeric_config_field_has_a_range():
    numeric = {n for n, (h, _) in all_settings().items() if _numeric(h)}
    assert numeric == set(_ranges())


@pytest.mark.parametrize(("field", "value"), [
    ("ae_clip", -1.0), ("ae_clip", 0.0), ("lr", math.inf), ("lr", math.nan), ("ae_lr", -0.1),
    ("gan_min_lr", -1.0), ("gan_lr_decay", 0.5), ("seed", -1), ("init_std", 0.0),
    ("sigmas", (1.0, math.inf)), ("sigma_weights", (-1.0,)), ("late_lr_factor", math.inf),
    ("finetune_momentum", (0.0, 0.5, 1.5)), ("disc_pieces", 0), ("late_from", 0),
    ("pretrain_iterations", -1), ("gan_final_momentum", 1.0),
])
def test_out_of_range_fields_are_refused(field, value):
    with pytest.raises(ConfigError, match="--" + field.replace("_", "-")):
        config_with(**{field: value})


@pytest.mark.integration
def test_a_negative_clip_is_one_line_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "digits-gmmn-ae", "--ae-clip", "-1", "--out", str(out),
                 *TINY_FLAGS]) == 2
    _one_line_error(capsys, "--ae-clip must be positive")
    assert not out.exists()


# --- row 5: resume refuses other data --------------------------------------------------------

@pytest.mark.integration
def test_resume_refuses_changed_data_and_accepts_checkpoints_without_a_fingerprint(tmp_path):
    data = tmp_path / "data.npy"
    x = np.random.default_rng(0).random((120, 6), dtype=np.float32)
    np.save(data, x)
    cfg = _cfg(dataset=str(data), checkpoint_every=3)
    out = tmp_path / "run"
    _interrupted_run(out, cfg)
    np.save(data, x * 99)  # other values, other output layer
    with pytest.raises(CheckpointError, match="is not the data the run .* was trained on"):
        run_training(cfg, out_dir=out, resume=True)
    np.save(data, x)
    state = load_checkpoint(out / "checkpoint.pt")
    assert set(state["data"]["fingerprint"]) == {"shape", "min", "max", "sha256"}
    del state["data"]["fingerprint"]  # as written before fingerprints existed
    save_checkpoint(state, out / "checkpoint.pt")
    run_training(cfg, out_dir=out, resume=True)
    assert load_checkpoint(out / "checkpoint.pt")["done"]


# --- row 14: stale checkpoint temp files -----------------------------------------------------

@pytest.mark.integration
def test_start_and_resume_remove_temp_files_of_killed_writes(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt.a1b2c3.tmp").write_bytes(b"x" * 1000)
    _interrupted_run(out, _cfg(checkpoint_every=3))
    assert not list(out.glob("*.tmp"))
    (out / "checkpoint.pt.d4e5f6.tmp").write_bytes(b"x" * 1000)
    (out / "samples-gmmn.png.g7h8i9.tmp").write_bytes(b"x" * 10)
    (out / "notes.tmp").write_text("the user's own file")
    run_training(_cfg(checkpoint_every=3), out_dir=out, resume=True)
    assert [p.name for p in out.glob("*.tmp")] == ["notes.tmp"]


# --- row 9: metrics.jsonl deleted before a resume --------------------------------------------

@pytest.mark.integration
def test_resume_recreates_a_deleted_metrics_file_cleanly(tmp_path, caplog):
    out = tmp_path / "run"
    _interrupted_run(out, _cfg(checkpoint_every=3))
    (out / "metrics.jsonl").unlink()
    with caplog.at_level(logging.WARNING, logger="gmmn.training.run"):
        run_training(_cfg(checkpoint_every=3), out_dir=out, resume=True)
    raw = (out / "metrics.jsonl").read_bytes()
    assert b"\0" not in raw
    assert [r["iteration"] for r in _rows(out / "metrics.jsonl")] == [8, 10, 12]
    assert any("metrics.jsonl holds 0 of the" in r.getMessage() for r in caplog.records)


# --- row 7: a full disk ----------------------------------------------------------------------

def _full_disk(monkeypatch) -> None:
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.integration
def test_a_full_disk_during_a_checkpoint_is_one_error_and_keeps_the_old_file(tmp_path,
                                                                              monkeypatch):
    out = tmp_path / "run"

    def fill_disk(step):
        if step.iteration == 4:
            _full_disk(monkeypatch)

    with pytest.raises(OutputError, match=f"no space left on {out} while writing checkpoint.pt"):
        run_training(_cfg(checkpoint_every=3), out_dir=out, callback=fill_disk)
    monkeypatch.undo()
    assert load_checkpoint(out / "checkpoint.pt")["iteration"] == 3
    assert not list(out.glob("*.tmp"))


@pytest.mark.integration
@pytest.mark.parametrize("name", ["s.npy", "s.csv", "s.png"])
def test_a_full_disk_during_sampling_leaves_no_file(tiny_run, tmp_path, monkeypatch, capsys,
                                                    name):
    _full_disk(monkeypatch)
    code = main(["sample", "--run", str(tiny_run), "--n", "5", "--out", str(tmp_path / name)])
    monkeypatch.undo()
    assert code == 2
    _one_line_error(capsys, f"no space left on {tmp_path}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_a_full_disk_while_logging_metrics_is_one_error(tmp_path, monkeypatch):
    import gmmn.training.rundir as runner

    class Full:  # metrics.jsonl on a disk that fills up after the first line
        def __init__(self, f):
            self.f, self.lines = f, 0

        def write(self, data):
            self.lines += 1
            if self.lines > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(runner, "open", lambda *a, **kw: Full(open(*a, **kw)), raising=False)
    out = tmp_path / "run"
    with pytest.raises(OutputError, match=f"no space left on {out} while writing metrics.jsonl"):
        run_training(_cfg(), out_dir=out)


# --- row 6 (training half): divergence is named as such ---------------------------------------

@pytest.mark.integration
def test_divergence_names_the_iteration_and_lr_not_the_data(tmp_path, capsys):
    with pytest.raises(TrainingDiverged, match=r"diverged in stage gmmn: its mmd loss became "
                                               r"(nan|inf) at iteration \d+ \(lr 1000"):
        run_training(_cfg(output="linear", lr=1000.0))
    out = tmp_path / "run"
    assert main(["train", "--preset", "digits-gmmn", "--output", "linear", "--lr", "1000",
                 "--out", str(out), *TINY_FLAGS]) == 2
    err = _one_line_error(capsys, "training diverged", "lower --lr")
    assert "clean or drop" not in err


# --- row 10: a data batch larger than the data ------------------------------------------------

@pytest.mark.integration
def test_a_data_batch_larger_than_the_training_split_is_capped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="gmmn.training.run"):
        result = run_training(_cfg(iterations=2, data_batch_size=100000))
    assert any("--data-batch-size 100000 exceeds the 1437 training rows" in r.getMessage()
               for r in caplog.records)
    assert result.checkpoint["done"]


def test_the_batch_sampler_never_draws_more_rows_than_the_data_holds():
    from gmmn.training.blocks import BatchSampler

    data = torch.arange(7.0)[:, None]
    sampler = BatchSampler(data, 100000, torch.Generator().manual_seed(0))
    batch = sampler.next()
    assert sorted(batch[:, 0].tolist()) == list(range(7))


# --- row 2: sizes that cannot fit --------------------------------------------------------------

def test_an_image_size_that_cannot_fit_is_refused_before_allocating(tmp_path, capsys):
    from PIL import Image

    for i in range(2):
        Image.fromarray(np.full((4, 4), 60 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    assert main(["data", "info", str(tmp_path), "--image-size", "1000000x1000000"]) == 2
    _one_line_error(capsys, "2 images of 1000000x1000000 needs at least", "TiB")


# --- row 8: a CSV with a byte-order mark -------------------------------------------------------

def test_a_byte_order_mark_is_encoding_not_a_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text("\ufeff" + "".join(f"{i},{i * 2}\n" for i in range(1, 41)),
                    encoding="utf-8")
    sp = load_dataset(path)
    assert len(sp.train) + len(sp.validation) + len(sp.test) == 40


# --- row 12: tracebacks that are now one line ---------------------------------------------------

def test_a_corrupt_npy_header_is_named(tmp_path, capsys):
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros((10, 3)))
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"{") + 2] = ord("'")  # the header is a Python literal: break its quotes
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt .npy header"):
        load_dataset(path)
    assert main(["data", "info", str(path)]) == 2
    _one_line_error(capsys, "corrupt .npy header")


@pytest.mark.integration
@pytest.mark.parametrize("target", ["file", "/dev/null"])
def test_out_that_is_not_a_folder_is_one_line(tmp_path, capsys, target):
    out = tmp_path / "f.txt" if target == "file" else target
    if target == "file":
        out.write_text("keep me")
    assert main(["train", "--preset", "digits-gmmn", "--out", str(out), *TINY_FLAGS]) == 2
    _one_line_error(capsys, f"--out {out} is a file, not a folder")
    if target == "file":
        assert out.read_text() == "keep me"


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_out_is_one_line(tmp_path, capsys):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    assert main(["train", "--preset", "digits-gmmn", "--out", str(locked / "run"),
                 *TINY_FLAGS]) == 2
    _one_line_error(capsys, "no permission")


@pytest.mark.integration
def test_sample_counts_and_batches_that_cannot_fit_are_one_line(tiny_run, tmp_path, capsys):
    assert main(["sample", "--run", str(tiny_run), "--n", str(10**12),
                 "--out", str(tmp_path / "s.npy")]) == 2
    _one_line_error(capsys, "--n 1000000000000 samples of 64 dimensions needs at least")
    assert main(["train", "--preset", "digits-gmmn", "--out", str(tmp_path / "r"),
                 *TINY_FLAGS, "--sample-batch-size", "100000000"]) == 2
    _one_line_error(capsys, "--sample-batch-size 100000000", "needs at least")


@pytest.mark.integration
@pytest.mark.parametrize("damage", ["config-json", "no-data", "tensor-shape", "no-model"])
def test_damaged_checkpoints_are_one_line(tiny_run, tmp_path, capsys, damage):
    state = load_checkpoint(tiny_run / "checkpoint.pt")
    if damage == "config-json":
        state["config"] = state["config"][:-5]
    elif damage == "no-data":
        del state["data"]
    elif damage == "no-model":
        del state["model"]
    else:
        key = next(iter(state["model"]))
        state["model"][key] = torch.zeros(3, 3)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(state, path)
    with pytest.raises(CheckpointError):
        load_run(path)
    assert main(["sample", "--run", str(tmp_path), "--out", str(tmp_path / "s.npy")]) == 2
    _one_line_error(capsys, str(path))


# --- row 13: messages that say what is actually wrong -----------------------------------------

def test_a_truncated_npy_is_called_truncated(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((100, 10)))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="is truncated") as info:
        load_dataset(path)
    assert "pickle" not in str(info.value)


def test_random_bytes_are_not_a_checkpoint_and_not_a_pickle(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a PyTorch zip archive") as info:
        load_run(path)
    assert "pickled" not in str(info.value)


def test_values_beyond_float32_are_named_as_such(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("".join(f"{i},1\n" for i in range(20)) + "1e39,2\n")
    with pytest.raises(DataError, match="1e\\+39 .*beyond float32's range") as info:
        load_dataset(path)
    assert "NaN" not in str(info.value)


# --- row 15: complex data ----------------------------------------------------------------------

@pytest.mark.integration
def test_complex_data_is_refused(tmp_path):
    path = tmp_path / "c.npy"
    np.save(path, (np.arange(30) * (1 + 2j)).reshape(10, 3))
    with pytest.raises(DataError, match="complex-valued"):
        load_dataset(path)
    with pytest.raises(DataError, match="complex-valued"):
        GMMN(iterations=2).fit(np.ones((10, 3)) * 1j)


# --- row 16: --output sigmoid on data outside [0, 1] -------------------------------------------

@pytest.mark.integration
def test_a_sigmoid_output_on_data_outside_the_unit_interval_is_refused(tmp_path):
    path = tmp_path / "wide.npy"
    np.save(path, np.random.default_rng(0).uniform(0, 99, (60, 4)).astype(np.float32))
    with pytest.raises(ConfigError, match=r"--output sigmoid keeps samples in \[0, 1\]"):
        run_training(_cfg(dataset=str(path), output="sigmoid"))


# --- row 18: kernel scales far from the data ---------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("sigma", [1e30, 1e-4])
def test_scales_far_from_every_distance_are_warned_about(caplog, sigma):
    with caplog.at_level(logging.WARNING, logger="gmmn.training.blocks"):
        run_training(_cfg(iterations=1, sigmas=(sigma,)))
    assert any("every kernel scale" in r.getMessage() for r in caplog.records)


@pytest.mark.integration
def test_scales_near_the_data_are_not_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="gmmn.training.blocks"):
        run_training(_cfg(iterations=1))
    assert not any("every kernel scale" in r.getMessage() for r in caplog.records)


# --- row 19: evaluation reports ----------------------------------------------------------------

@pytest.mark.integration
def test_a_report_of_a_half_trained_run_says_so(tiny_run, tmp_path):
    _interrupted_run(tmp_path / "half", _cfg(checkpoint_every=3))
    sp = load_dataset("digits")
    half = load_run(tmp_path / "half")
    report = evaluate_run(half.sampler(), sp, out_dir=tmp_path / "eval", status=half.status,
                          metrics_to_run=["nn"], n_samples=50)
    assert report["run"] == {"done": False, "stage": "gmmn", "iteration": 6}
    assert "**Unfinished run**" in (tmp_path / "eval" / "report.md").read_text()
    finished = load_run(tiny_run)
    done = evaluate_run(finished.sampler(), sp, out_dir=tmp_path / "eval2",
                        status=finished.status, metrics_to_run=["nn"], n_samples=50)
    assert done["run"]["done"] and "Unfinished" not in (tmp_path / "eval2" / "report.md"
                                                         ).read_text()


@pytest.mark.integration
def test_an_evaluation_killed_midway_leaves_the_old_report_whole(tiny_run, tmp_path,
                                                                   monkeypatch):
    sp = load_dataset("digits")
    run = load_run(tiny_run).sampler()
    out = tmp_path / "eval"
    evaluate_run(run, sp, out_dir=out, metrics_to_run=["nn"], n_samples=50, seed=0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def killed(report):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_mod, "render_markdown", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(run, sp, out_dir=out, metrics_to_run=["nn"], n_samples=50, seed=7)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# --- row 20: the Python API's bad arguments ----------------------------------------------------

@pytest.mark.integration
def test_api_arguments_raise_the_package_errors_naming_them(tmp_path):
    x = np.random.default_rng(0).random((40, 3), dtype=np.float32)
    with pytest.raises(ConfigError, match="sigmas must be 'median'"):
        GMMN(iterations=2, sigmas="abc").fit(x)
    with pytest.raises(ConfigError, match="unknown config field.*'bogus'"):
        GMMN(iterations=2, config_overrides={"bogus": 1}).fit(x)
    with pytest.raises(DataError, match="non-numeric"):
        GMMN(iterations=2).fit([["a", "b"], ["c", "d"]])
    with pytest.raises(DataError, match="meta tensor"):
        GMMN(iterations=2).fit(torch.empty(40, 3, device="meta"))
    model = GMMN(iterations=2).fit(x)
    with pytest.raises(OutputError, match="folder .*missing does not exist") as info:
        model.save(tmp_path / "missing" / "m.pt")
    assert ".tmp" not in str(info.value)


# --- a checkpoint from an older version --------------------------------------------------------

def test_config_fields_missing_from_an_old_checkpoint_get_one_warning(caplog):
    data = get_preset("digits-gmmn-ae").to_dict()
    del data["model"]["late_momentum"], data["model"]["ae_clip"]
    with caplog.at_level(logging.WARNING, logger="gmmn.config"):
        cfg = config_from_dict(data, source="old.pt")
        config_from_dict(data, source="old.pt")  # read again: no second line
    assert cfg.ae_clip == get_preset("digits-gmmn-ae").ae_clip
    [record] = caplog.records
    assert "old.pt has no late_momentum, ae_clip" in record.getMessage()


@pytest.mark.slow
def test_resuming_an_old_checkpoint_warns_once(tmp_path, cli):
    out = tmp_path / "run"
    _interrupted_run(out, _cfg(checkpoint_every=3))
    state = load_checkpoint(out / "checkpoint.pt")
    config = json.loads(state["config"])
    del config["model"]["late_momentum"]
    state["config"] = json.dumps(config)
    save_checkpoint(state, out / "checkpoint.pt")
    done = cli("train", "--out", str(out), "--resume", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("has no late_momentum") == 1, done.stderr


# --- slow: real processes, real signals (pytest -m slow; CI runs them, see .ci/run) -----------

SLOW_FLAGS = ["--preset", "digits-gmmn", "--iterations", "600", "--hidden", "16",
              "--sample-batch-size", "32", "--data-batch-size", "32", "--log-every", "10",
              "--sample-every", "0", "--late-from", "200", "--no-progress"]
SLOW_CFG = {"iterations": 600, "hidden": (16,), "sample_batch_size": 32, "data_batch_size": 32,
            "log_every": 10, "sample_every": 0, "late_from": 200}


def _start(out, *extra):
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.Popen([sys.executable, "-m", "gmmn", "train", "--out", str(out),
                             *SLOW_FLAGS, *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _logged(out) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signalled_cli_run_saves_exits_and_resumes_bit_identical(tmp_path, sig):
    out = tmp_path / "cut"
    proc = _start(out, "--checkpoint-every", "0")  # nothing but the signal checkpoints
    _wait_for(lambda: _logged(out) >= 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert f"stopped by {sig.name}" in err and "Traceback" not in err
    state = load_checkpoint(out / "checkpoint.pt")
    assert 30 <= state["iteration"] < 600 and not state["done"]
    resumed = _start(out, "--checkpoint-every", "0", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    cfg = _cfg(**SLOW_CFG)
    run_training(cfg, out_dir=tmp_path / "whole")
    _same_run(tmp_path / "whole", out)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_leaves_no_temp_files(tmp_path):
    out = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    for _ in range(6):  # checkpoints every iteration: many kills land inside a write
        proc = _start(out, "--checkpoint-every", "1", *(["--resume"] if kills else []))
        _wait_for(lambda: (out / "checkpoint.pt").exists(), proc)
        time.sleep(rng.uniform(0.05, 0.6))
        if proc.poll() is not None:
            break
        proc.kill()
        proc.wait()
        kills += 1
        load_checkpoint(out / "checkpoint.pt")  # always a whole file
    last = _start(out, "--checkpoint-every", "1", *(["--resume"] if kills else []))
    assert last.wait(timeout=300) == 0, last.communicate()
    assert kills >= 3 and not list(out.glob("*.tmp"))
    run_training(_cfg(**SLOW_CFG, checkpoint_every=1), out_dir=tmp_path / "whole")
    _same_run(tmp_path / "whole", out)


@pytest.mark.slow
def test_two_cli_runs_on_one_folder_the_second_refuses(tmp_path):
    out = tmp_path / "run"
    first = _start(out, "--checkpoint-every", "50", "--iterations", "1000000")
    try:
        _wait_for(lambda: (out / "checkpoint.pt").exists(), first)
        # --resume: without the lock it would train in the same folder at the same time.
        second = _start(out, "--checkpoint-every", "50", "--resume")
        _, err = second.communicate(timeout=120)
        assert first.poll() is None, "the first run must still be training"
    finally:
        first.terminate()
        first.communicate(timeout=120)
    assert second.returncode == 2 and f"in use by another gmmn process (pid {first.pid})" \
        in err, err
    assert len(err.strip().splitlines()) == 1
    assert first.returncode == 128 + signal.SIGTERM
    iterations = [r["iteration"] for r in _rows(out / "metrics.jsonl")]
    assert iterations == list(range(10, iterations[-1] + 1, 10))  # one writer, in order
