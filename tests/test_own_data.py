"""The user's own tables: settings chosen from the data, standardisation on every path, the
check after training, and the start and end of a run folder (issue: own data first time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_wine

from conftest import SRC, cli_env, run_cli
from gmmn import GMMN, two_sample_test
from gmmn.data.splits import random_split
from gmmn.data.user import SPLIT_FRACTIONS
from gmmn.errors import FitCheckFailed
from gmmn.presets import get_preset
from gmmn.training.auto import (
    MEDIAN_RATIOS,
    check_fit,
    median_sigmas,
)
from gmmn.training.blocks import median_distance

# Small and fast: what each test checks does not need the preset's network.
TINY = ("--iterations", "30", "--sample-batch-size", "64", "--hidden", "16",
        "--checkpoint-every", "0", "--no-progress")
TINY_API = {"iterations": 30, "sample_batch_size": 64, "hidden": (16,)}


@pytest.fixture(scope="module")
def wine() -> np.ndarray:
    return load_wine().data  # (178, 13) float64, columns from 0.1 to 1680


def _fit_args(cfg) -> dict:
    """What check_fit takes of a run's config."""
    return {"lr": cfg.lr, "standardize": cfg.standardize, "iterations": cfg.iterations,
            "suggest_no_preset": cfg.preset != "tabular-gmmn"}


def _zscore(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # the hand-computed z-score: population sd, in float64, of the float32 training rows
    x = x.astype(np.float32)
    return x.mean(0, dtype=np.float64), x.std(0, dtype=np.float64)


@pytest.mark.integration
def test_api_standardize_true_stores_the_hand_computed_mean_and_std(wine):
    m = GMMN(standardize=True, **TINY_API).fit(wine, progress=False)
    mean, std = _zscore(wine)
    np.testing.assert_allclose(m.run_.data["mean"].numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(m.run_.data["std"].numpy(), std, rtol=1e-6)
    assert m.run_.config.standardize is True
    # samples come back in the data's units: proline (column 12) is in the hundreds
    assert 300 < np.median(m.sample(500, seed=0)[:, 12]) < 1500


@pytest.mark.integration
def test_api_chooses_everything_from_the_data_with_no_arguments(wine):
    m = GMMN(**TINY_API).fit(wine, progress=False)
    cfg = m.run_.config
    assert cfg.preset == "tabular-gmmn"
    assert cfg.standardize is True  # values outside [0, 1]
    assert cfg.lr == pytest.approx(0.1)  # linear output
    assert cfg.data_batch_size == len(wine)  # every row, fewer than 1000
    mean, std = _zscore(wine)
    z = torch.from_numpy(((wine.astype(np.float32) - mean.astype(np.float32))
                          / std.astype(np.float32)).astype(np.float32))
    m_z = median_distance(z, seed=0)
    assert cfg.sigmas == pytest.approx(tuple(m_z * r for r in MEDIAN_RATIOS), rel=1e-6)
    # the raw rows' median distance is set by proline alone: two orders of magnitude larger
    assert median_distance(torch.from_numpy(wine).float(), seed=0) > 50 * m_z
    assert isinstance(m.sample(3), np.ndarray)


@pytest.mark.integration
def test_unit_interval_data_is_left_as_it_is_with_the_papers_lr():
    x = np.random.default_rng(0).uniform(size=(200, 5))
    m = GMMN(**TINY_API).fit(x, progress=False)
    cfg = m.run_.config
    assert cfg.standardize is False and m.run_.data["mean"] is None
    assert cfg.lr == pytest.approx(2.0)
    assert cfg.sigmas == pytest.approx(median_sigmas(torch.from_numpy(x).float(), seed=0))


@pytest.mark.slow
def test_cli_standardize_stores_the_z_score_of_the_training_split(tmp_path, wine):
    np.save(tmp_path / "wine.npy", wine)
    out = tmp_path / "run"
    done = run_cli("train", "--preset", "digits-gmmn", "--dataset", str(tmp_path / "wine.npy"),
                   "--standardize", "--lr", "0.1", "--out", str(out), *TINY)
    assert done.returncode == 0, done.stderr
    train, _, _ = random_split(len(wine), SPLIT_FRACTIONS, seed=0)
    mean, std = _zscore(wine[train])
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    np.testing.assert_allclose(state["data"]["mean"].numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(state["data"]["std"].numpy(), std, rtol=1e-6)


@pytest.mark.slow
def test_cli_trains_a_file_with_no_preset_and_records_the_choices(tmp_path, wine):
    np.savetxt(tmp_path / "wine.csv", wine, delimiter=",")
    out = tmp_path / "run"
    done = run_cli("train", "--dataset", str(tmp_path / "wine.csv"), "--out", str(out), *TINY)
    assert done.returncode == 0, done.stderr
    assert "chosen from the data: --standardize true" in done.stdout
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["preset"] == "tabular-gmmn" and cfg["standardize"] is True
    assert cfg["model"]["lr"] == 0.1 and cfg["model"]["data_batch_size"] == 160
    assert len(cfg["model"]["sigmas"]) == 6
    assert not (out / ".lock").exists()  # a clean end leaves no lock file
    # the stored, chosen values make a resume of the finished run a no-op, not a refusal
    again = run_cli("train", "--out", str(out), "--resume", "--no-progress")
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_a_named_dataset_still_needs_its_preset(tmp_path):
    done = run_cli("train", "--dataset", "mnist", "--out", str(tmp_path / "r"))
    assert done.returncode == 2
    assert "--preset is required for --dataset mnist (e.g. --preset mnist-gmmn)" in done.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_the_diverging_readme_case_fails_with_the_fix(tmp_path, wine):
    # The old README line: the digits preset (lr 2, pixel-sized kernels) on raw wine. Before
    # the check it exited 0 with sample means 200 data sd off.
    np.save(tmp_path / "wine.npy", wine)
    out = tmp_path / "run"
    done = run_cli("train", "--preset", "digits-gmmn", "--dataset", str(tmp_path / "wine.npy"),
                   "--out", str(out), "--iterations", "500", "--sample-batch-size", "100",
                   "--hidden", "32,32", "--checkpoint-every", "0", "--no-progress")
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gmmn train: error: training finished, but ")
    assert "beyond the training data's" in last and "--lr 0.1" in last
    assert "--standardize" in last and "Traceback" not in done.stderr
    assert (out / "checkpoint.pt").exists()  # kept, for a look


@pytest.mark.integration
def test_the_api_raises_on_a_diverged_fit_and_keeps_the_model(wine):
    m = GMMN(preset="digits-gmmn", lr=2.0, sigmas=(0.5, 1.0, 2.0), iterations=500,
             sample_batch_size=100, hidden=(32, 32))
    with pytest.raises(FitCheckFailed, match="spread is far wider"):
        m.fit(wine, progress=False)
    assert not m.fit_check_.ok and m.sample(5).shape == (5, 13)


def test_check_fit_passes_data_like_samples_and_flags_far_and_collapsed_ones():
    cfg = get_preset("tabular-gmmn")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 4, generator=g)
    good = check_fit(torch.randn(2000, 4, generator=g), x, [1.0] * 30, **_fit_args(cfg),
                     linear=True)
    assert good.ok and good.binding and 0.9 < good.sd_ratio < 1.1
    far = check_fit(100 + torch.randn(2000, 4, generator=g), x, [], **_fit_args(cfg), linear=True)
    assert far.far_fraction == 1.0 and any("beyond" in p for p in far.problems)
    # a sigmoid output cannot leave [0, 1]: only the spread is judged there
    assert not check_fit(100 + torch.randn(2000, 4, generator=g), x, [], **_fit_args(cfg),
                         linear=False).problems
    flat = check_fit(torch.zeros(2000, 4) + 0.01 * torch.randn(2000, 4, generator=g), x, [],
                     **_fit_args(cfg), linear=True)
    assert flat.sd_ratio < 0.2 and "collapsed" in flat.message()


def test_check_fit_sees_a_loss_that_rose_at_the_end():
    cfg = get_preset("tabular-gmmn")
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(1))
    falling = [1.0 / (1 + t) for t in range(40)]
    rising = falling[:30] + [1.0] * 10
    assert check_fit(x, x, falling, **_fit_args(cfg), linear=True).ok
    rose = check_fit(x, x, rising, **_fit_args(cfg), linear=True)
    assert rose.loss_rise > 0.5 and "rose at the end" in rose.message()


def test_a_short_run_warns_instead_of_failing():
    cfg = get_preset("tabular-gmmn").override(iterations=50)
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(2))
    check = check_fit(1e3 * x, x, [], **_fit_args(cfg), linear=True)
    assert not check.ok and not check.binding and not check.failed


@pytest.mark.slow
def test_a_failed_start_leaves_no_run_folder(tmp_path):
    missing = run_cli("train", "--dataset", str(tmp_path / "nope.npy"),
                      "--out", str(tmp_path / "a"))
    assert missing.returncode == 2 and not (tmp_path / "a").exists()
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 3)))
    cuda = run_cli("train", "--dataset", str(tmp_path / "x.npy"), "--device", "cuda",
                   "--out", str(tmp_path / "b"))
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is not a failed start here")
    assert cuda.returncode == 2 and "CUDA is not available" in cuda.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_no_download_is_one_line_and_no_folder(tmp_path):
    env = {**cli_env(), "GMMN_DATA": str(tmp_path / "empty")}
    done = subprocess.run([sys.executable, "-m", "gmmn", "train", "--preset", "mnist-gmmn",
                           "--no-download", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_mmd_test_standardize_pools_and_finds_a_shift_one_feature_hides(tmp_path, wine):
    # raw wine: the median bandwidth is set by proline (sd ~315); a 1-sd shift of malic acid
    # (sd ~1.1) is invisible to it, and plain to the test on pooled z-scores
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(wine))
    a, b = wine[perm[:89]], wine[perm[89:]].copy()
    b[:, 1] += wine[:, 1].std()
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    raw = json.loads(run_cli("mmd-test", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"),
                             "--permutations", "500").stdout)
    std = json.loads(run_cli("mmd-test", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"),
                             "--permutations", "500", "--standardize").stdout)
    assert raw["p_value"] > 0.1 and std["p_value"] < 0.01 and std["standardize"] is True
    # the flag is exactly the test on the pooled z-scores
    pooled = np.concatenate([a, b])
    z = (pooled - pooled.mean(0)) / pooled.std(0)
    by_hand = two_sample_test(torch.from_numpy(z[:89]), torch.from_numpy(z[89:]),
                              permutations=500)
    assert std["statistic"] == pytest.approx(by_hand.statistic, rel=1e-9)
    assert std["p_value"] == by_hand.p_value


@pytest.mark.slow
def test_the_api_sets_the_passive_wait_policy_unless_the_user_did():
    code = "import os; from gmmn import GMMN; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in cli_env().items() if k != "OMP_WAIT_POLICY"}
    unset = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True)
    assert unset.stdout.strip() == "PASSIVE"
    mine = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, check=True)
    assert mine.stdout.strip() == "ACTIVE"
    assert os.path.isdir(SRC)


def test_an_explicit_preset_keeps_its_own_lr_in_the_api():
    # A GAN preset's lr 2e-4 must not become the GMMN's 2 (a review found it collapsing).
    from gmmn.api import array_splits

    digits = np.random.default_rng(0).uniform(size=(100, 64))
    cfg = GMMN(preset="digits-gan")._config(array_splits(digits))
    assert cfg.lr == get_preset("digits-gan").lr
    assert GMMN(preset="digits-gmmn")._config(array_splits(digits)).lr == 2.0
    assert GMMN(preset="digits-gmmn")._config(array_splits(100 * digits)).lr is None  # -> 0.1


def test_a_constant_column_is_not_far_from_itself():
    cfg = get_preset("tabular-gmmn")
    g = torch.Generator().manual_seed(3)
    x = torch.cat([torch.randn(500, 4, generator=g), torch.full((500, 1), 7.0)], 1)
    s = torch.cat([torch.randn(2000, 4, generator=g),
                   7.0 + 0.05 * torch.randn(2000, 1, generator=g)], 1)
    assert check_fit(s, x, [], **_fit_args(cfg), linear=True).ok


@pytest.mark.integration
def test_run_training_resumes_a_tabular_run_given_the_unresolved_preset(tmp_path, wine):
    from gmmn.training.run import run_training

    np.save(tmp_path / "wine.npy", wine)
    cfg = get_preset("tabular-gmmn").override(dataset=str(tmp_path / "wine.npy"),
                              iterations=20, sample_batch_size=32, hidden=(8,),
                              checkpoint_every=0, device="cpu")
    first = run_training(cfg, out_dir=tmp_path / "r", resume=True)
    again = run_training(cfg, out_dir=tmp_path / "r", resume=True)  # not "cannot change it"
    assert again.config == first.config and first.config.lr == pytest.approx(0.1)


def test_column_levels_finds_categories_and_snapping_puts_samples_on_them():
    from gmmn.data.splits import column_levels, snap_to_levels

    x = torch.tensor([[0.0, 1.5, 10.0], [1.0, 2.5, 11.0], [0.0, 3.5, 12.0], [1.0, 4.5, 13.0]])
    levels = column_levels(x, 2)
    assert [j for j, _ in levels] == [0]  # columns 1 and 2 hold four values each
    assert torch.equal(levels[0][1], torch.tensor([0.0, 1.0]))
    assert column_levels(x, 0) == [] and len(column_levels(x, 4)) == 3
    s = torch.tensor([[0.4, 9.0, 9.0], [0.6, -9.0, -9.0], [-3.0, 0.0, 0.0]])
    out = snap_to_levels(s, levels)
    assert out[:, 0].tolist() == [0.0, 1.0, 0.0]  # the nearest of 0 and 1
    assert torch.equal(out[:, 1:], s[:, 1:]) and s[0, 0] == 0.4  # others, and s, untouched


@pytest.mark.integration
def test_a_binary_column_is_sampled_on_its_two_values_in_data_units(tmp_path):
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(50, 10, 300), rng.choice([0.0, 1.0], 300),
                         rng.normal(0, 1, 300)])
    m = GMMN(**TINY_API).fit(x, progress=False)
    assert m.run_.config.discrete_levels == 10  # the tabular preset's
    s = m.sample(400, seed=0)
    assert set(np.unique(s[:, 1]).round(5)) <= {0.0, 1.0}
    assert len(np.unique(s[:, 0])) > 300  # continuous columns stay continuous
    m.save(tmp_path / "m.pt")  # the levels travel with the checkpoint
    np.testing.assert_array_equal(GMMN.load(tmp_path / "m.pt").sample(400, seed=0), s)
    off = GMMN(config_overrides={"discrete_levels": 0}, **TINY_API).fit(x, progress=False)
    assert len(np.unique(off.sample(400, seed=0)[:, 1])) > 300


@pytest.mark.integration
def test_a_checkpoint_with_damaged_levels_is_refused(tmp_path):
    from gmmn import load_run
    from gmmn.errors import CheckpointError
    from gmmn.training.checkpoint import load_checkpoint, save_checkpoint

    x = np.column_stack([np.arange(60.0), np.tile([0.0, 1.0], 30)])
    GMMN(**TINY_API).fit(x, progress=False).save(tmp_path / "m.pt")
    state = load_checkpoint(tmp_path / "m.pt")
    assert [j for j, _ in state["data"]["levels"]] == [1]
    state["data"]["levels"] = [(5, torch.tensor([0.0, 1.0]))]  # no column 5 in 2-d data
    save_checkpoint(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="data.levels"):
        load_run(tmp_path / "bad.pt")


@pytest.mark.integration
def test_selection_keeps_the_generator_nearest_the_validation_rows(tmp_path):
    from gmmn.training.checkpoint import load_checkpoint

    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4))
    m = GMMN(config_overrides={"select_every": 10}, **TINY_API).fit(x, progress=False)
    assert m.run_.config.select_every == 10
    assert m.run_.config.data_batch_size == 96  # trained on the 4/5 not held out
    # the CLI logs each score; the kept generator is the one with the lowest
    out = tmp_path / "run"
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    done = run_cli("train", "--dataset", str(tmp_path / "x.npy"), "--out", str(out), *TINY,
                   "--select-every", "10")
    assert done.returncode == 0, done.stderr
    scored = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
              if "val_mmd2" in line]
    assert [r["iteration"] for r in scored] == [10, 20, 30]
    best = min(scored, key=lambda r: r["val_mmd2"])
    assert scored[-1]["best_val_mmd2"] == pytest.approx(best["val_mmd2"])
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["done"] and state["data"]["dim"] == 4


def test_fit_validation_rows_must_match_the_features():
    from gmmn.errors import DataError

    with pytest.raises(DataError, match="validation rows have 3 columns"):
        GMMN(**TINY_API).fit(np.ones((20, 4)), validation=np.ones((5, 3)), progress=False)


def test_select_every_without_validation_rows_is_one_clear_error():
    from gmmn.errors import ConfigError
    from gmmn.api import array_splits
    from gmmn.training.run import run_training

    cfg = get_preset("digits-gmmn").override(select_every=10, iterations=20)
    with pytest.raises(ConfigError, match="validation rows, but this run has none"):
        run_training(cfg, splits=array_splits(np.random.default_rng(0).random((50, 4))))


def test_keeps_best_puts_back_the_generator_of_the_best_score_and_resumes_it():
    from gmmn.training.blocks import KeepsBest

    class Scripted(KeepsBest):
        def __init__(self, scores):
            self.model = torch.nn.Module()
            self.model.generator = torch.nn.Linear(2, 2)
            self.iterations, self.scores = 30, list(scores)
            self.init_best(10, torch.zeros(3, 2))

        def validation_score(self):
            s = self.scores.pop(0)
            return s, {"val": s}

    stage = Scripted([0.1, 0.5, 0.2])
    kept = None
    for t in range(1, 31):
        with torch.no_grad():
            stage.model.generator.weight.fill_(t)
        out = stage.after_step(t)
        assert bool(out) == (t % 10 == 0)
        if t == 20:
            kept = stage.model.generator.weight.clone()
            resumed = Scripted([0.2])  # a run resumed from iteration 20's checkpoint
            resumed.load_best_state_dict(stage.best_state_dict())
    assert out == {"val": 0.2, "best_validation_score": 0.5}
    stage.finish()
    assert torch.equal(stage.model.generator.weight, kept)
    resumed.after_step(30)
    resumed.finish()
    assert torch.equal(resumed.model.generator.weight, kept)
