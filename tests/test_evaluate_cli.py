"""The evaluation report and `gmmn evaluate`, driven by a fake run on the digits data."""

from __future__ import annotations

import json

import pytest
import torch

import gmmn.cli.evaluate as cli_eval
from gmmn.api import Run
from gmmn.cli import main
from gmmn.data import load_dataset
from gmmn.evaluate.report import evaluate_run
from gmmn.presets import get_preset
from gmmn.sampling import FunctionSampler


class FakeRun(FunctionSampler):
    """A sampler whose samples are noisy training rows (a real Sampler type)."""

    def __init__(self, collapsed: bool = False) -> None:
        self.train = load_dataset("digits").train
        self.collapsed = collapsed
        self.w = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
        super().__init__(self.draw, prior_dim=4, decode=lambda z: torch.sigmoid(z @ self.w))

    def draw(self, n, *, seed=None):
        g = torch.Generator().manual_seed(seed or 0)
        idx = torch.zeros(n, dtype=torch.long) if self.collapsed else \
            torch.randint(len(self.train), (n,), generator=g)
        return (self.train[idx] + 0.02 * torch.randn(n, 64, generator=g)).clamp(0, 1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GMMN_DATA", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.integration
def test_report_has_every_metric_beside_its_reference(cache):
    sp = load_dataset("digits")
    metrics_file = cache / "metrics.jsonl"
    recs = [{"stage": "gmmn", "iteration": i, "loss": 1 / (i + 1)} for i in range(5)]
    metrics_file.write_text("".join(json.dumps(r) + "\n" for r in recs))
    good = evaluate_run(FakeRun(), sp, out_dir=cache / "good", n_samples=300,
                        metrics_file=metrics_file)
    bad = evaluate_run(FakeRun(collapsed=True), sp, out_dir=cache / "bad", n_samples=300)
    on_disk = json.loads((cache / "good" / "report.json").read_text())
    assert {"mean", "stderr", "sigma"} <= set(on_disk["parzen"])
    for key in ("parzen", "nn", "fd", "kid", "coverage", "precision-recall"):
        assert "reference" in on_disk[key], key
    for name in ("samples.png", "nearest_neighbours.png", "interpolations.png",
                 "training_curves.png", "report.md"):
        assert (cache / "good" / name).exists(), name
    md = (cache / "good" / "report.md").read_text()
    assert "| Parzen log-likelihood" in md and "real-data reference" in md
    # The collapsed generator is worse than the real-data ceiling on every sample metric.
    assert bad["fd"]["value"] > 3 * good["fd"]["value"]
    assert bad["kid"]["mean"] > 3 * max(good["kid"]["mean"], 1e-6)
    assert bad["coverage"]["classes_present"] <= 0.2 < good["coverage"]["classes_present"]
    assert bad["precision-recall"]["recall"] < 0.1 < good["precision-recall"]["recall"]
    assert good["classifier"]["test_accuracy"] > 0.85


def test_cli_writes_the_report_and_reports_user_errors(cache, monkeypatch, capsys):
    run_dir = cache / "run"
    run_dir.mkdir()
    run = Run.of_sampler(FakeRun(), get_preset("digits-gmmn"), {})
    monkeypatch.setattr(cli_eval, "_load_run", lambda path, *, device: run)
    out = cache / "res" / "digits.json"
    rc = main(["evaluate", "--run", str(run_dir), "--metrics", "parzen,nn",
               "--n-samples", "200", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["metrics"] == ["parzen", "nn"] and "fd" not in report
    assert "Parzen" in capsys.readouterr().out
    assert main(["evaluate", "--run", str(run_dir), "--metrics", "parzen,bogus"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(cache / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_seeds_and_sizes_of_an_evaluation_stay_those_of_the_committed_reports():
    from gmmn.evaluate import metrics, protocol, report

    seeds = (protocol.FRESH_SEED_OFFSET, report.SAMPLES_SEED_OFFSET,
             report.TRAIN_REF_SEED_OFFSET, report.INTERPOLATION_SEED_OFFSET)
    assert seeds == (1, 2, 3, 4)
    sizes = (report.GRID_SAMPLES, report.NN_ROWS, report.NN_FIGURE_ROWS,
             report.INTERPOLATION_LINES, metrics.PR_K)
    assert sizes == (100, 1000, 10, 8, 3)
