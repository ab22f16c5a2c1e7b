"""``gmmn reproduce``: the quick digits table end to end, resuming, and the MNIST path on a
small IDX set written by the test."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gmmn.cli import main
from gmmn.config import TrainConfig
from gmmn.data import mnist
from gmmn.presets import GAN_PAPER_SGD, get_preset
from gmmn.reproduce import PAPER_TABLE, available_models, plan, scale_iterations, train_command


@pytest.fixture
def quiet_env(tmp_path, monkeypatch):
    # The classifier cache goes to a private folder; one thread, since the test machine's
    # two cores are shared and oversubscribed threads slow torch down tenfold.
    monkeypatch.setenv("GMMN_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same for the in-process runs
    yield tmp_path
    torch.set_num_threads(threads)


@pytest.mark.slow  # the whole quick reproduce, twice: ~40 s
def test_quick_digits_table_and_rerun(quiet_env, cli):
    out = quiet_env / "repro"
    res = cli("reproduce", "--dataset", "digits", "--quick", "--out", str(out), timeout=300)
    assert res.returncode == 0, res.stderr
    md = (out / "table.md").read_text()
    assert res.stdout == md
    table = json.loads((out / "table.json").read_text())
    assert table["dataset"] == "digits" and table["quick"] and table["n_samples"] == 1000
    assert [r["preset"] for r in table["rows"]] == ["digits-gmmn", "digits-gmmn-ae",
                                                    "digits-gan"]
    for row, paper in zip(table["rows"], ("GMMN (data space)", "GMMN+AE", "Adversarial nets"),
                          strict=True):
        assert row["paper_mnist"]["mean"] == PAPER_TABLE[paper][0]
        assert row["seeds"] == [0] and len(row["runs"]) == 1
        run = row["runs"][0]
        # One seed: the row's mean is the run's number, with no spread over seeds.
        assert row["parzen"]["mean"] == {"mean": run["parzen"]["mean"], "seed_std": None,
                                         "n_seeds": 1}
        assert np.isfinite(run["parzen"]["mean"]) and run["parzen"]["stderr"] > 0
        assert run["train_seconds"] > 0 and run["eval_seconds"] > 0
        assert run["fd"]["value"] >= 0 and 0 <= run["classes_present"]["classes_present"] <= 1
        # Paths and commands are relative to the output folder, never absolute.
        assert run["run"] == f"{row['preset']}/seed-0" and str(quiet_env) not in json.dumps(row)
        train_cmd, eval_cmd = run["commands"]
        assert train_cmd.startswith(f"gmmn train --preset {row['preset']} --out "
                                    f"{row['preset']}/seed-0")
        assert eval_cmd == f"gmmn evaluate --run {row['preset']}/seed-0 --n-samples 1000"
        assert train_cmd in md and eval_cmd in md
        assert (out / run["report"]).exists()
        assert f"| {run['parzen']['mean']:.1f} | " in md
    assert str(quiet_env) not in md
    real = table["real_data"]["parzen"]["mean"]
    assert real > max(r["parzen"]["mean"]["mean"] for r in table["rows"])  # the ceiling
    assert "| GMMN+AE | 282 +- 2 | 2204 +- 20 |" in md  # the paper's table beside ours
    assert "| Adversarial nets | 225 +- 2 | 2057 +- 26 |" in md
    assert "not comparable" in md
    # Rerunning skips what is done: the same numbers, no retraining.
    again = cli("reproduce", "--dataset", "digits", "--quick", "--out", str(out), timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("evaluation done before, kept") == 3
    assert json.loads((out / "table.json").read_text())["rows"] == table["rows"]
    # Other settings in the same folder are refused, not mixed into the table.
    clash = cli("reproduce", "--dataset", "digits", "--out", str(out), timeout=300)
    assert clash.returncode == 2 and "cannot change it" in clash.stderr


@pytest.mark.integration
def test_rows_aggregate_their_seeds(quiet_env):
    from gmmn.reproduce import reproduce

    out = quiet_env / "seeds"
    p = plan("digits", out=out, quick=True, scale=0.02, n_samples=200, models=["gmmn-ae"],
             seeds=(0, 1))
    table = reproduce(p)
    (row,) = table["rows"]
    assert row["seeds"] == [0, 1] and [r["seed"] for r in row["runs"]] == [0, 1]
    means = [r["parzen"]["mean"] for r in row["runs"]]
    assert means[0] != means[1]  # two trainings, two evaluations
    summary = row["parzen"]["mean"]
    # Mean and sample standard deviation of two numbers, written out.
    assert summary["mean"] == pytest.approx((means[0] + means[1]) / 2)
    assert summary["seed_std"] == pytest.approx(abs(means[0] - means[1]) / np.sqrt(2))
    assert row["parzen"]["run_stderr"] == pytest.approx(
        np.mean([r["parzen"]["stderr"] for r in row["runs"]]))
    recalls = [r["precision_recall"]["recall"] for r in row["runs"]]
    assert row["precision_recall"]["recall"]["mean"] == pytest.approx(np.mean(recalls))
    md = (out / "table.md").read_text()
    assert f"| 0,1 | {summary['mean']:.1f} +- {summary['seed_std']:.1f} |" in md
    for run in row["runs"]:
        assert (out / "digits-gmmn-ae" / f"seed-{run['seed']}" / "checkpoint.pt").exists()
        assert f"--seed {run['seed']}" in run["commands"][1] or run["seed"] == 0


def test_model_seeds_and_bad_selections():
    from gmmn.errors import ConfigError

    p = plan("mnist", out="x", seeds=(0, 1, 2), model_seeds={"gan": (0,)})
    seeds = {m.suffix: m.seeds for m in p.models}
    assert seeds["gmmn-ae"] == (0, 1, 2) and seeds["gan"] == (0,)
    assert [c.seed for c in p.configs].count(1) == len(p.models) - 1
    with pytest.raises(ConfigError, match="digits has no model 'gmmn-ae-plus'"):
        plan("digits", out="x", models=["gmmn-ae-plus"])
    with pytest.raises(ConfigError, match="distinct non-negative"):
        plan("digits", out="x", seeds=(1, 1))


def test_the_gan_papers_recipe_is_an_opt_in_row_scored_by_its_parzen_variant():
    from gmmn.reproduce import evaluate_command

    assert "gan-paper" not in [m.suffix for m in plan("mnist", out="x").models]
    p = plan("mnist", out="x", models=["gan", "gan-paper"], seeds=(0, 1, 2))
    row = p.models[1]
    assert row.suffix == "gan-paper" and row.paper_row == "Adversarial nets"
    assert [c.preset for c in row.configs] == ["mnist-gan-paper"] * 3
    assert row.configs[0].split == "gan"  # trained and validated on the GAN paper's split
    command = evaluate_command(Path("r"), n_samples=10000, seed=1, data_dir=None,
                               parzen_variant="gan")
    assert "--parzen-variant gan" in command
    with pytest.raises(Exception, match="no model 'gan-paper'"):
        plan("digits", out="x", models=["gan-paper"])  # MNIST only


def test_train_command_rebuilds_the_config():
    from gmmn.cli import build_parser
    from gmmn.cli.train import build_config

    for name in ("digits-gmmn-ae", "mnist-gan"):
        cfg = scale_iterations(get_preset(name).override(seed=3), 0.01)
        args = build_parser().parse_args(train_command(cfg, Path("x")).split()[1:])
        assert build_config(args, "x") == (cfg, None)


def test_scaling_touches_only_what_a_model_uses():
    gmmn = scale_iterations(get_preset("mnist-gmmn"), 0.1)
    gan = scale_iterations(get_preset("mnist-gan").override(**GAN_PAPER_SGD), 0.1)
    assert (gmmn.iterations, gmmn.late_from) == (4000, 1000)
    assert "pretrain_iterations" not in gmmn.flat()  # not a setting of the GMMN family
    assert (gan.iterations, gan.gan_momentum_ramp) == (13750, 13750)
    ae = scale_iterations(get_preset("mnist-gmmn-ae"), 0.025)
    assert (ae.pretrain_iterations, ae.finetune_momentum_from) == (75, (1, 1, 5))
    assert isinstance(ae, TrainConfig)


def test_unknown_dataset_is_one_clear_error():
    from gmmn.errors import ConfigError

    with pytest.raises(ConfigError, match="TFD has no GAN preset"):
        plan("tfd", out="x")


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.integration
def test_mnist_path_on_a_small_idx_set(quiet_env, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    data = quiet_env / "data"
    data.mkdir()
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (150, 28, 28)),
              "train-labels-idx1-ubyte.gz": np.arange(150) % 10,
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (60, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": np.arange(60) % 10}
    sums = {}
    for name, array in arrays.items():
        raw = _idx(array)
        (data / name).write_bytes(gzip.compress(raw))
        sums[name] = hashlib.sha256(raw).hexdigest()
    # The loader checks files against the SHA-256 table of its IdxSource; a test set is
    # registered the way tests/test_data_idx.py builds its sources: the same source with
    # this set's sums (and a hold-out that fits 150 images).
    monkeypatch.setitem(mnist.SOURCES, "mnist", dataclasses.replace(
        mnist.SOURCES["mnist"], sha256=sums, n_validation=30))
    out = quiet_env / "repro"
    code = main(["reproduce", "--dataset", "mnist", "--quick", "--iterations-scale", "0.00025",
                 "--n-samples", "40", "--data-dir", str(data), "--out", str(out)])
    assert code == 0
    table = json.loads((out / "table.json").read_text())
    assert [r["preset"] for r in table["rows"]] == [f"mnist-{m}" for m in
                                                    available_models("mnist")]
    md = (out / "table.md").read_text()
    assert "| paper, MNIST |" in md and "not comparable" not in md
    for row in table["rows"]:
        run = row["runs"][0]
        assert np.isfinite(run["parzen"]["mean"])
        assert f"--data-dir {data}" in run["commands"][1]
        assert f"--data-dir {data}" in run["commands"][0]
    gan = json.loads((out / "mnist-gan" / "seed-0" / "config.json").read_text())["config"]
    expected = round(get_preset("mnist-gan").iterations * 0.00025)  # the preset, scaled
    assert gan["model"]["iterations"] == expected and gan["data_dir"] == str(data)
    assert capsys.readouterr().out == md
