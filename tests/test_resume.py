"""Checkpoints: safe loading, and resumes that end bit-identical to unbroken runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import cli_env, run_cli
from gmmn.errors import CheckpointError
from gmmn.presets import get_preset
from gmmn.training.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from gmmn.training.run import run_training

# Tiny sizes: every stage of GMMN+AE runs, the best-AE bookkeeping included.
TINY_AE = {"iterations": 20, "hidden": (16,), "sample_batch_size": 64, "data_batch_size": 64,
           "ae_hidden": (16, 4), "ae_dropout": (0.1, 0.2), "pretrain_iterations": 12,
           "finetune_iterations": 30, "ae_eval_every": 10, "checkpoint_every": 5,
           "log_every": 5, "sample_every": 0}
TINY_AE_FLAGS = ["--iterations", "20", "--hidden", "16", "--sample-batch-size", "64",
                 "--data-batch-size", "64", "--ae-hidden", "16,4", "--ae-dropout", "0.1,0.2",
                 "--pretrain-iterations", "12", "--finetune-iterations", "30",
                 "--ae-eval-every", "10", "--checkpoint-every", "5", "--log-every", "5",
                 "--sample-every", "0"]


class Interrupt(Exception):
    pass


def _weights(path) -> dict:
    return load_checkpoint(path)["model"]


def _metrics(run_dir) -> list[tuple]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["stage"], r["iteration"], r["loss"]) for r in map(json.loads, lines)]


def _assert_same_run(a, b) -> None:
    wa, wb = _weights(a / "checkpoint.pt"), _weights(b / "checkpoint.pt")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert _metrics(a) == _metrics(b)  # the same lines, no duplicates after the resume


@pytest.mark.slow
def test_resume_in_a_second_process_is_bit_identical(tmp_path):
    cfg = get_preset("digits-gmmn-ae").override(**TINY_AE)
    run_training(cfg, out_dir=tmp_path / "whole")

    def stop(info):  # stop in fine-tuning, after the checkpoint of iteration 15
        if info.stage == "finetune" and info.iteration == 17:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_training(cfg, out_dir=tmp_path / "broken", callback=stop)
    state = load_checkpoint(tmp_path / "broken" / "checkpoint.pt")
    assert (state["stage"], state["iteration"], state["done"]) == ("finetune", 15, False)
    assert state["stage_state"]["best_state"] is not None  # best AE so far travels along
    out = run_cli("train", "--preset", "digits-gmmn-ae", "--out", str(tmp_path / "broken"),
               "--resume", "--no-progress", *TINY_AE_FLAGS)
    assert out.returncode == 0, out.stderr
    _assert_same_run(tmp_path / "whole", tmp_path / "broken")


@pytest.mark.slow  # a subprocess killed mid-run, then resumed: ~11 s
def test_resume_after_sigkill_is_bit_identical(tmp_path):
    flags = ["--preset", "digits-gmmn", "--iterations", "1500", "--hidden", "16",
             "--sample-batch-size", "32", "--data-batch-size", "32", "--checkpoint-every",
             "100", "--log-every", "50", "--sample-every", "0", "--late-from", "200"]
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "gmmn", "train", "--out", str(run),
                             "--no-progress", *flags], env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists():
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(run / "checkpoint.pt")
    assert not killed_at["done"] and killed_at["iteration"] < 1500
    print("killed after the checkpoint of iteration", killed_at["iteration"])
    out = run_cli("train", "--out", str(run), "--resume", "--no-progress", *flags)
    assert out.returncode == 0, out.stderr

    cfg = get_preset("digits-gmmn").override(iterations=1500, hidden=(16,), sample_batch_size=32,
        data_batch_size=32, checkpoint_every=100, log_every=50, sample_every=0, late_from=200)
    run_training(cfg, out_dir=tmp_path / "whole")
    _assert_same_run(tmp_path / "whole", run)


@pytest.mark.slow
def test_resume_refuses_another_preset_and_changed_settings(tmp_path, cli):
    cfg = get_preset("digits-gmmn").override(iterations=4, hidden=(8,),
                              sample_batch_size=16, data_batch_size=16, sample_every=0)
    run_training(cfg, out_dir=tmp_path)
    out = cli("train", "--preset", "digits-gmmn-ae", "--out", str(tmp_path), "--resume")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "preset 'digits-gmmn'" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    with pytest.raises(CheckpointError, match="--lr"):
        run_training(cfg.override(lr=0.5), out_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="--resume"):
        run_training(cfg, out_dir=tmp_path)  # never overwrite a run silently
    # A finished run resumes to itself.
    assert run_training(cfg, out_dir=tmp_path, resume=True).checkpoint["done"]


@pytest.mark.integration
def test_resume_without_checkpoint_starts_from_the_beginning(tmp_path):
    cfg = get_preset("digits-gmmn").override(iterations=4, hidden=(8,),
                              sample_batch_size=16, data_batch_size=16, log_every=1,
                              sample_every=0)
    (tmp_path / "metrics.jsonl").write_text('{"stale": true}\n')
    run_training(cfg, out_dir=tmp_path, resume=True)
    assert [r[1] for r in _metrics(tmp_path)] == [1, 2, 3, 4]
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["config"]["preset"] == "digits-gmmn"
    assert set(doc["versions"]) == {"python", "torch", "numpy", "gmmn"}


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "gmmn-checkpoint-1", "payload": Interrupt("code")}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a gmmn checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_rng_states_survive_a_safe_round_trip(tmp_path):
    import random

    import numpy as np

    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    save_checkpoint({"format": "gmmn-checkpoint-1", "rng": capture_rng()}, tmp_path / "c.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


# The baselines at tiny sizes: greedy stages with PCD chains (dbn), batches of 10 (scae),
# the annealed averaged momentum (gsn); each interrupted inside a stage after a checkpoint.
TINY_BASELINE = {"iterations": 10, "baseline_hidden": (12, 6), "data_batch_size": 20,
                 "checkpoint_every": 3, "log_every": 1, "sample_every": 0, "anneal_every": 4}


@pytest.mark.integration
@pytest.mark.parametrize("name,stop_stage", [("digits-dbn", "rbm-1"), ("digits-scae", "cae-2"),
                                             ("digits-gsn", "gsn")])
def test_baseline_resume_is_bit_identical(tmp_path, name, stop_stage):
    cfg = get_preset(name).override(**TINY_BASELINE)
    run_training(cfg, out_dir=tmp_path / "whole")

    def stop(info):  # after the checkpoint of iteration 6, before that of 9
        if info.stage == stop_stage and info.iteration == 8:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_training(cfg, out_dir=tmp_path / "broken", callback=stop)
    state = load_checkpoint(tmp_path / "broken" / "checkpoint.pt")
    assert (state["stage"], state["iteration"]) == (stop_stage, 6)
    if name == "digits-dbn":  # the persistent chains travel in the checkpoint
        assert state["stage_state"]["chains"]["started"]
    run_training(cfg, out_dir=tmp_path / "broken", resume=True)
    wa = _weights(tmp_path / "whole" / "checkpoint.pt")
    wb = _weights(tmp_path / "broken" / "checkpoint.pt")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    def losses(run):  # every logged loss and lr; elapsed times differ
        rows = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        return [{k: v for k, v in r.items() if k != "elapsed"} for r in rows]

    assert losses(tmp_path / "whole") == losses(tmp_path / "broken")
