"""``gmmn train`` / ``gmmn sample`` end to end, their errors, and the Python API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gmmn import GMMN, load_run
from gmmn.api import array_splits
from gmmn.cli import main
from gmmn.errors import ConfigError
from gmmn.presets import get_preset
from gmmn.training.run import run_training

TINY = ["--iterations", "12", "--hidden", "16", "--sample-batch-size", "64",
        "--data-batch-size", "64", "--ae-hidden", "16,4", "--ae-dropout", "0.1,0.1",
        "--pretrain-iterations", "10", "--finetune-iterations", "10", "--ae-eval-every", "5",
        "--checkpoint-every", "5", "--log-every", "4", "--sample-every", "6"]


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits-ae"
    code = main(["train", "--preset", "digits-gmmn-ae", "--out", str(out), "--no-progress",
                 *TINY])
    assert code == 0
    return out


@pytest.mark.integration
def test_train_writes_the_run_files(ae_run):
    names = {p.name for p in ae_run.iterdir()}
    assert {"config.json", "metrics.jsonl", "checkpoint.pt", "samples.png",
            "samples-gmmn.png", "samples-finetune.png"} <= names
    cfg = json.loads((ae_run / "config.json").read_text())["config"]
    assert cfg["preset"] == "digits-gmmn-ae" and cfg["model"]["ae_hidden"] == [16, 4]
    rows = [json.loads(line) for line in (ae_run / "metrics.jsonl").read_text().splitlines()]
    stages = [r["stage"] for r in rows]
    assert stages[0] == "pretrain-1" and stages[-1] == "gmmn" and "finetune" in stages
    assert {"stage", "iteration", "loss", "lr", "momentum", "elapsed"} <= set(rows[-1])
    assert rows[-1]["iteration"] == 12


@pytest.mark.slow
def test_sample_is_deterministic_and_follows_the_extension(ae_run, tmp_path, cli):
    for seed, name in ((1, "a.npy"), (1, "b.npy"), (2, "c.npy")):
        assert main(["sample", "--run", str(ae_run), "--n", "7", "--seed", str(seed),
                     "--out", str(tmp_path / name)]) == 0
    a, b, c = (np.load(tmp_path / n) for n in ("a.npy", "b.npy", "c.npy"))
    assert a.shape == (7, 64) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert main(["sample", "--run", str(ae_run), "--n", "7", "--seed", "1",
                 "--out", str(tmp_path / "a.csv")]) == 0
    assert np.allclose(np.loadtxt(tmp_path / "a.csv", delimiter=","), a, atol=1e-6)
    out = cli("sample", "--run", str(ae_run), "--n", "16", "--out", str(tmp_path / "g.png"))
    assert out.returncode == 0, out.stderr
    from PIL import Image

    assert Image.open(tmp_path / "g.png").size[0] > 32


@pytest.mark.integration
def test_load_run_rebuilds_the_model(ae_run):
    run = load_run(ae_run)
    assert run.prior_dim == 10 and run.image_shape == (8, 8) and run.splits_name == "digits"
    assert run.config.preset == "digits-gmmn-ae" and run.done
    z = torch.zeros(3, 10)
    x = run.decode_prior(z)
    assert x.shape == (3, 64) and torch.equal(x[0], x[1])
    assert torch.equal(run.sample(5, seed=3), run.sample(5, seed=3))


@pytest.mark.integration
@pytest.mark.parametrize("args,message", [
    (["--preset", "nope"], "unknown preset"),
    (["--preset", "digits-gmmn", "--iterations", "0"], "--iterations must be positive"),
    (["--preset", "digits-gmmn", "--iterations", "-3"], "--iterations must be positive"),
    (["--preset", "digits-gmmn", "--device", "tpu"], "unknown --device"),
    (["--preset", "digits-gmmn", "--ae-dropout", "0.1"], "--ae-dropout"),
    ([], "--preset is required"),
])
def test_bad_flags_give_one_line(args, message, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


@pytest.mark.slow
def test_cuda_requested_without_cuda_is_one_clear_line(tmp_path, cli):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = cli("train", "--preset", "digits-gmmn", "--device", "cuda", "--out", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "CUDA is not available" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = cli("--debug", "train", "--preset", "digits-gmmn", "--device", "cuda",
              "--out", str(tmp_path))
    assert "Traceback" in out.stderr  # --debug shows it


def test_unparsable_flag_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--preset", "digits-gmmn", "--iterations", "many"])
    assert exc.value.code == 2
    assert "expected int" in capsys.readouterr().err


def test_sigmas_flag_takes_a_paper_set_or_numbers():
    from gmmn.cli.train import parse_sigmas
    from gmmn.mmd import paper_sigmas

    assert parse_sigmas("mnist-code") == tuple(paper_sigmas("mnist-code"))
    assert parse_sigmas("0.5,2") == (0.5, 2.0)


@pytest.mark.integration
def test_autoencoder_preset_refuses_data_smaller_than_its_code():
    cfg = get_preset("digits-gmmn-ae").override(iterations=2)
    splits = array_splits(np.random.default_rng(0).random((50, 6), dtype=np.float32))
    with pytest.raises(ConfigError, match="encodes into 12"):
        run_training(cfg, splits=splits)


@pytest.mark.integration
def test_api_fit_sample_save_load(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 3)) * 0.5 + 2).astype(np.float32)  # not in [0, 1]: linear
    model = GMMN(iterations=300, hidden=(16,), sample_batch_size=64,
                 data_batch_size=64).fit(x)
    s = model.sample(50, seed=1)
    assert s.shape == (50, 3) and s.dtype == np.float32
    assert np.array_equal(s, model.sample(50, seed=1))
    assert model.run_.config.lr == 0.1  # linear output: the API's smaller default
    assert abs(float(s.mean()) - 2.0) < 0.5  # moved from the linear output's 0 towards 2
    model.save(tmp_path / "m.pt")
    again = GMMN.load(tmp_path / "m.pt")
    assert np.array_equal(again.sample(50, seed=1), s)
    assert torch.equal(load_run(tmp_path / "m.pt").sample(50, seed=1), torch.from_numpy(s))
    ae = GMMN(autoencoder=True, iterations=5, hidden=(8,), sample_batch_size=32,
              data_batch_size=32, ae_hidden=(8, 2), ae_dropout=(0.1, 0.1),
              pretrain_iterations=3, finetune_iterations=3).fit(rng.random((100, 10)))
    assert ae.sample(4).shape == (4, 10)
    with pytest.raises(Exception, match="not fitted"):
        GMMN().sample(3)


@pytest.mark.integration
def test_samples_of_standardised_data_come_back_in_data_units(tmp_path):
    from gmmn.data import Splits

    z = torch.from_numpy(np.random.default_rng(0).normal(size=(400, 2)).astype(np.float32))
    mean, std = torch.tensor([100.0, -5.0]), torch.tensor([10.0, 0.1])
    splits = Splits(name="standardised", train=z, validation=z[:0], test=z[:0],
                    train_labels=None, validation_labels=None, test_labels=None,
                    image_shape=None, source="test", unit_interval=False, mean=mean, std=std)
    cfg = get_preset("digits-gmmn").override(iterations=200, hidden=(16,),
                              lr=0.1, sample_batch_size=64, data_batch_size=64,
                              sigmas=(0.5, 1.0, 2.0), sample_every=0)
    run_training(cfg, splits=splits, out_dir=tmp_path)
    x = load_run(tmp_path).sample(2000, seed=0)
    assert torch.allclose(x.mean(0), mean, atol=0, rtol=0.05)
    assert x[:, 1].std() < 1  # in data units: column 1 varies by about 0.1


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["digits-gmmn", "digits-gmmn-ae"])
def test_digits_presets_end_to_end(preset, tmp_path, cli):
    out = cli("train", "--preset", preset, "--out", str(tmp_path), "--no-progress")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    gmmn = [r["loss"] for r in rows if r["stage"] == "gmmn"]
    assert gmmn[-1] < 0.5 * gmmn[0]
    assert (tmp_path / "samples.png").exists()


@pytest.mark.integration
def test_reconstructions_decode_the_codes_of_the_rows_they_draw(ae_run):
    from gmmn.api import Reconstructions
    from gmmn.data import load_dataset
    from gmmn.errors import DataError

    run = load_run(ae_run)
    images = load_dataset("digits").train
    rec = Reconstructions(run, images)
    x = rec.sample(5, seed=3)
    rows = torch.randperm(len(images), generator=torch.Generator().manual_seed(3))[:5]
    ae = run.model.autoencoder
    assert torch.equal(x, ae.decode(ae.encode(images[rows])).detach())
    assert torch.equal(x, rec.sample(5, seed=3)) and x.shape == (5, 64)
    assert rec.sample(len(images) + 3, seed=0).shape == (len(images) + 3, 64)
    with pytest.raises(DataError, match="shape"):
        Reconstructions(run, images[:, :10])


@pytest.mark.integration
def test_evaluate_reconstructions_writes_its_own_report(ae_run, tmp_path, capsys):
    code = main(["evaluate", "--run", str(ae_run), "--reconstructions", "--metrics",
                 "parzen,nn", "--n-samples", "200"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((ae_run / "eval-reconstructions" / "report.json").read_text())
    assert report["metrics"] == ["parzen", "nn"] and "mean" in report["parzen"]
    assert main(["evaluate", "--run", str(ae_run), "--reconstructions", "--metrics",
                 "parzen,interpolation"]) == 2
    assert "no prior to interpolate" in capsys.readouterr().err


@pytest.mark.integration
def test_reconstructions_need_an_autoencoder(tmp_path):
    from gmmn.api import Reconstructions
    from gmmn.errors import DataError

    cfg = get_preset("digits-gmmn").override(iterations=2, hidden=(8,),
                              sample_batch_size=16, data_batch_size=16, sample_every=0)
    run_training(cfg, out_dir=tmp_path)
    with pytest.raises(DataError, match="no autoencoder"):
        Reconstructions(load_run(tmp_path), torch.zeros(3, 64))


@pytest.mark.slow
def test_code_space_match_script_compares_generated_and_real_codes(ae_run):
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    out = subprocess.run([sys.executable, str(root / "scripts" / "code_space_match.py"),
                          "--run", str(ae_run), "--n", "50"], capture_output=True, text=True,
                         env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert "50 codes of dimension 4" in out.stdout
    assert "median pairwise distance: generated" in out.stdout


@pytest.mark.integration
def test_cli_resume_reads_the_checkpoint_once_and_refuses_another_preset(tmp_path, monkeypatch,
                                                                         capsys):
    import gmmn.training.rundir as rundir

    out = str(tmp_path / "run")
    flags = ["--out", out, "--no-progress", "--iterations", "4", "--hidden", "8",
             "--sample-batch-size", "32", "--data-batch-size", "32", "--checkpoint-every", "2"]
    assert main(["train", "--preset", "digits-gmmn", *flags]) == 0
    reads = []
    real = rundir.load_checkpoint
    monkeypatch.setattr(rundir, "load_checkpoint",
                        lambda *a, **kw: reads.append(a) or real(*a, **kw))
    # no --preset and no flags: the stored config, from the one read of the checkpoint
    assert main(["train", "--resume", *flags[:3]]) == 0
    assert len(reads) == 1
    reads.clear()
    assert main(["train", "--resume", "--preset", "digits-gmmn-ae", *flags]) == 2
    assert "holds a run of preset 'digits-gmmn', not 'digits-gmmn-ae'" in capsys.readouterr().err
    assert len(reads) == 1


@pytest.mark.integration
def test_sample_data_dir_is_refused_for_a_run_that_samples_its_prior(ae_run, tmp_path, capsys):
    assert main(["sample", "--run", str(ae_run), "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "s.npy")]) == 2
    assert "--data-dir is only read by baseline runs" in capsys.readouterr().err
    assert not (tmp_path / "s.npy").exists()
