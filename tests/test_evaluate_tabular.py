"""The tabular evaluation: each statistic against a brute-force or closed-form answer, and the
report's choice of it for data without an image shape (plus the image report's sample sizes)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import gmmn.cli.evaluate as cli_eval
from gmmn.api import Run
from gmmn.cli import main
from gmmn.data import load_dataset
from gmmn.data.splits import make_splits
from gmmn.errors import ConfigError, DataError
from gmmn.evaluate import figures
from gmmn.evaluate import tabular as T
from gmmn.evaluate.report import METRICS, TABULAR_METRICS, evaluate_run, parse_metrics
from gmmn.presets import get_preset
from gmmn.sampling import FunctionSampler

D = 5
SCALES = np.array([1.0, 10.0, 100.0, 0.1, 1000.0])  # units that differ by 10^4
OFFSETS = np.array([0.0, 50.0, -300.0, 2.0, 1e4])


def _table(n: int, rng: np.random.Generator) -> np.ndarray:
    """Correlated Gaussian rows in mixed units: features 0 and 1 correlate 0.8."""
    z = rng.normal(size=(n, D))
    z[:, 1] = 0.8 * z[:, 0] + 0.6 * z[:, 1]
    return (z * SCALES + OFFSETS).astype(np.float32)


def _splits(n_test: int = 120, *, scale: float = 1.0):
    rng = np.random.default_rng(1)
    parts = {"train": _table(400, rng) * scale, "validation": _table(100, rng) * scale,
             "test": _table(n_test, rng) * scale}
    return make_splits("table", parts, source="test")


class TableRun(FunctionSampler):
    """A sampler drawing from the data's own distribution, shifted by ``shift`` sds of
    feature 0 or collapsed onto one row."""

    def __init__(self, shift: float = 0.0, collapsed: bool = False, scale: float = 1.0):
        self.shift, self.collapsed, self.scale = shift, collapsed, scale
        super().__init__(self.draw, prior_dim=3)

    def draw(self, n, *, seed=None):
        x = _table(n, np.random.default_rng(1000 + (seed or 0))) * self.scale
        x[:, 0] += self.shift * SCALES[0] * self.scale
        if self.collapsed:
            x[:] = x[0]
        return x  # numpy, in the data's units: the tabular path must take arrays too


def _brute_standardise(train: np.ndarray, x: np.ndarray) -> np.ndarray:
    n, d = train.shape
    out = np.empty(x.shape)
    for j in range(d):
        mean = sum(float(train[i, j]) for i in range(n)) / n
        sd = math.sqrt(sum((float(train[i, j]) - mean) ** 2 for i in range(n)) / n)
        sd = sd if sd > 0 else 1.0
        for i in range(x.shape[0]):
            out[i, j] = (float(x[i, j]) - mean) / sd
    return out


def test_standardising_matches_a_double_loop_and_constant_features_get_sd_one():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(30, 4)) * [1, 5, 0, 1e3] + [0, 1, 7, -5]
    x = rng.normal(size=(10, 4))
    std = T.Standardiser.fit(train)
    np.testing.assert_allclose(std(x), _brute_standardise(train, x), rtol=1e-12, atol=1e-12)
    assert std.constant == (2,) and std.sd[2] == 1.0
    assert T.Standardiser.fit(std(train)).constant == (2,)  # sd 1 is not "constant"
    with pytest.raises(DataError, match="3 columns"):
        std(x[:, :3], what="the samples")
    with pytest.raises(DataError, match="NaN"):
        std(np.full((2, 4), np.nan), what="the samples")


def test_marginals_zero_for_the_data_itself_and_exactly_a_shift_or_a_scale():
    data = _brute_standardise(*(2 * [_table(200, np.random.default_rng(3))]))
    same = T.marginal_errors(data, data)
    assert np.all(np.array(same["mean_error"]) == 0) and same["sd_ratio"] == [1.0] * D
    assert all(np.all(np.array(v) == 0) for v in same["quantile_error"].values())
    shift = np.array([0.5, -1.0, 0.0, 2.0, 0.25])
    moved = T.marginal_errors(data + shift, data)
    np.testing.assert_allclose(moved["mean_error"], shift, atol=1e-12)
    for q in ("5%", "25%", "50%", "75%", "95%"):
        np.testing.assert_allclose(moved["quantile_error"][q], shift, atol=1e-12)
    assert moved["summary"]["mean_error"] == {"median_abs": pytest.approx(0.5),
                                              "max_abs": pytest.approx(2.0), "worst_feature": 3}
    mean = data.mean(0)
    wide = T.marginal_errors(mean + 2 * (data - mean), data)
    np.testing.assert_allclose(wide["sd_ratio"], [2.0] * D, rtol=1e-12)
    # Quantile errors of a doubled spread: q(2x) - q(x) = q(x) - mean, by numpy's linear rule.
    np.testing.assert_allclose(wide["quantile_error"]["95%"],
                               np.quantile(data, 0.95, axis=0) - mean, atol=1e-12)


def _brute_corr(x: np.ndarray) -> np.ndarray:
    n, d = x.shape
    r = np.eye(d)
    for a in range(d):
        for b in range(d):
            if a == b:
                continue
            ma, mb = x[:, a].mean(), x[:, b].mean()
            cov = sum((x[i, a] - ma) * (x[i, b] - mb) for i in range(n))
            va = sum((x[i, a] - ma) ** 2 for i in range(n))
            vb = sum((x[i, b] - mb) ** 2 for i in range(n))
            r[a, b] = cov / math.sqrt(va * vb) if va > 0 and vb > 0 else 0.0
    return r


def test_correlation_error_against_a_double_loop():
    rng = np.random.default_rng(4)
    data = _table(150, rng).astype(np.float64)
    assert T.correlation_error(data, data)["max_abs"] < 1e-12
    other = data.copy()
    other[:, 1] = rng.permutation(other[:, 1])  # breaks the 0.8 correlation of features 0, 1
    other[:, 3] = 7.0  # constant: correlates 0 with everything
    got = T.correlation_error(other, data)
    diff = np.abs(_brute_corr(other) - _brute_corr(data))[np.triu_indices(D, 1)]
    assert got["mean_abs"] == pytest.approx(diff.mean(), abs=1e-12)
    assert got["max_abs"] == pytest.approx(diff.max(), abs=1e-12)
    assert got["worst_pair"] == [0, 1] and got["max_abs"] > 0.6
    assert T.correlation_error(data[:, :1], data[:, :1])["mean_abs"] is None


def _brute_unbiased_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    def k(a, b):
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma * sigma))
    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd_test_statistic_is_the_unbiased_mmd2_and_rejects_only_a_shift():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    got = T.mmd_test(x, y, sigma=1.7, permutations=200, seed=0)
    assert got["statistic"] == pytest.approx(_brute_unbiased_mmd2(x, y, 1.7), abs=1e-10)
    a, b = rng.normal(size=(150, 4)), rng.normal(size=(150, 4))
    assert T.mmd_test(a, b, sigma=2.0, seed=0)["p_value"] > 0.05
    assert T.mmd_test(a + [1.0, 0, 0, 0], b, sigma=2.0, seed=0)["p_value"] <= 0.002


@pytest.mark.integration
def test_c2st_separates_different_data_and_is_near_a_half_for_alike_data():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(150, 4)), rng.normal(size=(150, 4))
    alike = T.classifier_test(a, b, seed=0)
    assert set(alike) == set(T.C2ST_CLASSIFIERS)
    for r in alike.values():
        assert abs(r["accuracy"] - 0.5) < 0.08 and r["p_value"] > 0.01 and r["folds"] == 5
    far = T.classifier_test(a + 3.0, b, seed=0)
    for r in far.values():
        assert r["accuracy"] > 0.95 and r["p_value"] < 1e-20
    # Same means, three times the spread: invisible to a linear rule, not to the trees.
    wide = T.classifier_test(3 * a, b, seed=0)
    assert abs(wide["logistic"]["accuracy"] - 0.5) < 0.1
    assert wide["boosted_trees"]["accuracy"] > 0.75
    # p-value and stderr of the binomial, from their definitions.
    r = wide["boosted_trees"]
    n, c = 300, round(r["accuracy"] * 300)
    tail = sum(math.comb(n, k) for k in range(c, n + 1)) / 2**n
    assert r["p_value"] == pytest.approx(tail, rel=1e-9)
    assert r["stderr"] == pytest.approx(math.sqrt(r["accuracy"] * (1 - r["accuracy"]) / n))
    assert "skipped" in T.classifier_test(a[:1], b, seed=0)


@pytest.mark.integration
def test_the_report_picks_the_tabular_metrics_for_a_table(tmp_path):
    sp = _splits()
    assert sp.image_shape is None
    mfile = tmp_path / "metrics.jsonl"
    mfile.write_text("".join(json.dumps({"stage": "gmmn", "iteration": i, "loss": 1 / (i + 1)})
                             + "\n" for i in range(5)))
    good = evaluate_run(TableRun(), sp, out_dir=tmp_path / "good", n_samples=400,
                        metrics_file=mfile)
    bad = evaluate_run(TableRun(shift=1.5), sp, out_dir=tmp_path / "bad", n_samples=400)
    on_disk = json.loads((tmp_path / "good" / "report.json").read_text())
    assert on_disk["metrics"] == list(TABULAR_METRICS) and on_disk["data_kind"] == "tabular"
    for key in TABULAR_METRICS:
        assert "reference" in on_disk[key] and "sizes" in on_disk[key], key
    assert not (set(METRICS) - {"parzen", "nn"}) & set(on_disk)  # no image metric
    assert on_disk["marginals"]["sizes"] == {"samples": 400, "test_rows": 120,
                                             "training_rows": 400, "too_small": False}
    assert on_disk["c2st"]["sizes"] == {"samples": 120, "test_rows": 120,
                                        "training_rows": 120, "too_small": False}
    names = {p.name for p in (tmp_path / "good").iterdir()}
    assert {"pairs.png", "marginals.png", "training_curves.png"} <= names
    assert not {"samples.png", "nearest_neighbours.png", "interpolations.png"} & names
    md = (tmp_path / "good" / "report.md").read_text()
    assert "training rows" in md and "images" not in md and "Too small" not in md
    # The true distribution sits by its reference; a shift of 1.5 sd in one feature does not.
    gm, bm = good["marginals"]["summary"]["mean_error"], bad["marginals"]["summary"][
        "mean_error"]
    assert gm["max_abs"] < 0.3 and bm["worst_feature"] == 0 and bm["max_abs"] > 1.2
    assert good["mmd-test"]["p_value"] > 0.01 and bad["mmd-test"]["p_value"] < 0.01
    for name in T.C2ST_CLASSIFIERS:
        assert good["c2st"][name]["accuracy"] < 0.62 < bad["c2st"][name]["accuracy"]
    assert good["mmd-test"]["sigma"] == bad["mmd-test"]["sigma"]  # from real rows only


@pytest.mark.integration
def test_a_small_test_split_is_flagged(tmp_path):
    report = evaluate_run(TableRun(), _splits(n_test=40), out_dir=tmp_path,
                          metrics_to_run=["marginals", "c2st"], n_samples=100)
    assert report["marginals"]["sizes"]["too_small"] and report["c2st"]["sizes"]["too_small"]
    md = (tmp_path / "report.md").read_text()
    assert "**Too small to trust**" in md and "40 test rows, fewer than 50" in md


@pytest.mark.integration
def test_parzen_on_a_table_uses_a_grid_in_the_data_scale(tmp_path):
    sp, big = _splits(), _splits(scale=1000.0)
    r = evaluate_run(TableRun(), sp, out_dir=tmp_path / "a", metrics_to_run=["parzen"],
                     n_samples=300)["parzen"]
    z = T.Standardiser.fit(sp.train)(sp.train)
    dist = [np.linalg.norm(z[i] - z[j]) for i in range(len(z)) for j in range(i + 1, len(z))]
    lower_median = sorted(dist)[(len(dist) - 1) // 2]  # torch.median's, of an even count
    np.testing.assert_allclose(r["sigmas"], lower_median * np.geomspace(0.01, 1.0, 21),
                               rtol=1e-9)
    assert not r["at_grid_edge"] and r["units"].startswith("standardised")
    # Units of 1000 times the size: the same standardised score, the Jacobian moves by log 1000
    # per feature.
    r2 = evaluate_run(TableRun(scale=1000.0), big, out_dir=tmp_path / "b",
                      metrics_to_run=["parzen"], n_samples=300)["parzen"]
    assert r2["mean"] == pytest.approx(r["mean"], abs=1e-3)
    assert r2["log_jacobian"] - r["log_jacobian"] == pytest.approx(-D * math.log(1000.0))
    # Samples 30 sd away want a bandwidth wider than the grid: at its edge, said in report.md.
    r3 = evaluate_run(TableRun(shift=30.0), sp, out_dir=tmp_path / "c",
                      metrics_to_run=["parzen"], n_samples=300)["parzen"]
    assert r3["at_grid_edge"] and r3["sigma"] == r3["sigmas"][-1]
    assert "edge of its grid" in (tmp_path / "c" / "report.md").read_text()


def test_image_metrics_on_a_table_and_table_metrics_on_images_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="fd.*for images.*a table"):
        evaluate_run(TableRun(), _splits(), out_dir=tmp_path, metrics_to_run=["fd", "c2st"])
    with pytest.raises(ConfigError, match="c2st.*for tables"):
        parse_metrics("parzen,c2st", tabular=False)
    with pytest.raises(ConfigError, match="unknown metric"):
        parse_metrics("bogus")
    assert parse_metrics(None, tabular=True) == TABULAR_METRICS
    assert parse_metrics(None) == METRICS


@pytest.mark.integration
def test_cli_evaluates_a_table_file_with_the_tabular_set(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(2)
    data = tmp_path / "table.npz"
    np.savez(data, train=_table(200, rng), validation=_table(60, rng), test=_table(60, rng))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run = Run.of_sampler(TableRun(), get_preset("tabular-gmmn").override(dataset=str(data)), {})
    monkeypatch.setattr(cli_eval, "_load_run", lambda path, *, device: run)
    assert main(["evaluate", "--run", str(run_dir), "--n-samples", "200"]) == 0
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert report["metrics"] == list(TABULAR_METRICS)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run_dir), "--metrics", "kid"]) == 2
    assert "kid are for images" in capsys.readouterr().err


def test_the_image_report_gains_sample_sizes_and_a_small_sample_note(tmp_path, monkeypatch):
    monkeypatch.setenv("GMMN_DATA", str(tmp_path / "cache"))
    sp = load_dataset("digits")

    def noisy(n, *, seed=None):
        g = torch.Generator().manual_seed(seed or 0)
        idx = torch.randint(len(sp.train), (n,), generator=g)
        return (sp.train[idx] + 0.02 * torch.randn(n, 64, generator=g)).clamp(0, 1)

    report = evaluate_run(FunctionSampler(noisy, prior_dim=2), sp, out_dir=tmp_path / "e",
                          metrics_to_run=["parzen", "nn", "fd"], n_samples=200)
    n_test, n_train = sp.test.shape[0], sp.train.shape[0]
    assert report["data_kind"] == "image"
    assert {"mean", "stderr", "sigma", "n_test", "reference"} <= set(report["parzen"])
    assert report["parzen"]["sizes"] == {"samples": 200, "validation_rows": 180,
                                         "test_rows": n_test, "training_rows": 200,
                                         "too_small": True}
    assert report["nn"]["sizes"] == {"samples": 180, "test_rows": 180,
                                     "training_rows": n_train, "too_small": True}
    assert report["fd"]["sizes"] == {"samples": 180, "test_rows": 180, "training_rows": 180,
                                     "too_small": True}
    md = (tmp_path / "e" / "report.md").read_text()
    assert "- fd: 180 samples against 180 test images; reference 180 training images" in md
    assert "**Too small to trust**" in md and "fewer than 1000" in md
    assert {"samples.png", "nearest_neighbours.png"} <= {p.name for p in
                                                         (tmp_path / "e").iterdir()}


@pytest.mark.integration
def test_tabular_figures_are_pngs_of_the_expected_layout(tmp_path):
    rng = np.random.default_rng(7)
    s, d = rng.normal(size=(100, 20)), rng.normal(size=(40, 20))
    with Image.open(figures.save_pair_scatter(s, d, tmp_path / "p.png")) as im:
        assert im.format == "PNG" and im.size == (920, 920)  # 4 x 4 panels of 2.2 in
    with Image.open(figures.save_marginal_histograms(s, d, tmp_path / "m.png")) as im:
        assert im.size == (960, 840)  # 16 features: 4 x 4 panels, at most 16
    with Image.open(figures.save_pair_scatter(s[:, :1], d[:, :1], tmp_path / "one.png")) as im:
        assert im.size == (260, 260)
    with pytest.raises(ConfigError, match="same width"):
        figures.save_marginal_histograms(s, d[:, :3], tmp_path / "bad.png")
