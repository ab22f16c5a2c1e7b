"""A model family is one module plus one line in the registry: a toy family, written in this
file alone and registered with one line, trains, resumes, samples and evaluates through
``gmmn train``, ``gmmn sample`` and ``gmmn evaluate`` with nothing else changed.

The toy: a diagonal Gaussian in data space whose mean and log-sd minimise the MMD to the
data, sampled from its N(0, I) prior as ``mean + sd * z``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from gmmn.cli import main
from gmmn.config import MOMENTUM, POSITIVE, POSITIVE_INT, Settings, TrainConfig, setting
from gmmn.families import FAMILIES
from gmmn.families.base import Family, PriorSampler
from gmmn.mmd import mmd_loss
from gmmn.training.blocks import BatchSampler, SampledStage, seeded_rng
from gmmn.training.loop import Part
from gmmn.training.optim import ReleasedSGD, constant

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class ToySettings(Settings):
    iterations: int = setting(30, "toy: iterations", POSITIVE_INT)
    lr: float = setting(0.05, "toy: learning rate", POSITIVE)
    momentum: float = setting(0.5, "toy: momentum", MOMENTUM)
    data_batch_size: int = setting(64, "toy: data rows per step", POSITIVE_INT)


class Gaussian(nn.Module):
    autoencoder = discriminator = None

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim))
        self.log_sd = nn.Parameter(torch.zeros(dim))
        self.prior_dim = dim

    def decode_prior(self, z: torch.Tensor) -> torch.Tensor:
        return self.mean + self.log_sd.exp() * z

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode_prior(torch.randn(n, self.prior_dim, generator=generator))


class ToyStage(SampledStage):
    def __init__(self, model: Gaussian, data: torch.Tensor, cfg: TrainConfig) -> None:
        m = cfg.model
        self.name, self.iterations, self.model = "toy", m.iterations, model
        self.rng = seeded_rng(cfg.seed, "toy", "prior")
        self.sampler = BatchSampler(data, m.data_batch_size, seeded_rng(cfg.seed, "toy", "data"))
        opt = ReleasedSGD(model.parameters(), lr=m.lr, momentum=m.momentum)
        self.parts = (Part("mmd", opt, constant(lr=m.lr, momentum=m.momentum), self.loss),)

    def loss(self, t: int) -> torch.Tensor:
        x = self.model.sample(64, generator=self.rng)
        return mmd_loss(x, self.sampler.next(), sigmas=[1.0, 3.0])

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.model.sample(n, generator=generator)


class ToyFamily(Family):
    name = "toy"
    settings = ToySettings
    label = "the toy Gaussian"

    def stage_names(self, cfg):
        return ["toy"]

    def build_model(self, cfg, data_dim, *, unit_interval):
        return Gaussian(data_dim)

    def build_stage(self, name, model, train, cfg, hooks, *, validation=None):
        return ToyStage(model, train, cfg)

    def sampler(self, model, cfg, info, *, sampling=None, rows=None):
        return PriorSampler(model, info, what=f"this run ({cfg.preset})")


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(FAMILIES, "toy", ToyFamily())  # the one line that registers it


def _train(out, *extra) -> int:
    return main(["train", "--preset", "digits-gmmn", "--family", "toy", "--out", str(out),
                 "--no-progress", "--sample-every", "0", "--log-every", "5",
                 "--checkpoint-every", "5", "--iterations", "30", "--lr", "0.05",
                 "--momentum", "0.5", "--data-batch-size", "64", *extra])


def test_a_family_defined_here_trains_resumes_samples_and_evaluates(toy, tmp_path, capsys,
                                                                     monkeypatch):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert _train(whole) == 0
    cfg = json.loads((whole / "config.json").read_text())["config"]
    assert cfg["family"] == "toy" and cfg["model"] == {"iterations": 30, "lr": 0.05,
                                                       "momentum": 0.5, "data_batch_size": 64}
    # The same run stopped at iteration 12 (its checkpoint holds 10), then resumed.
    import gmmn.training.run as run

    real = run.train_loop

    def stop_at_12(stage, *, start, hooks, on_step):
        def step(info):
            on_step(info)
            if info.iteration == 12:
                raise KeyboardInterrupt

        return real(stage, start=start, hooks=hooks, on_step=step)

    monkeypatch.setattr(run, "train_loop", stop_at_12)
    assert _train(broken) == 130  # the CLI's exit code for an interrupt
    monkeypatch.setattr(run, "train_loop", real)
    assert torch.load(broken / "checkpoint.pt", weights_only=True)["iteration"] == 10
    assert main(["train", "--out", str(broken), "--resume", "--no-progress"]) == 0
    a = torch.load(whole / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(broken / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == {"mean", "log_sd"} and all(torch.equal(a[k], b[k]) for k in a)
    assert (whole / "metrics.jsonl").read_text().count("\n") == 6
    # The family's sampler, through gmmn sample and gmmn evaluate.
    assert main(["sample", "--run", str(whole), "--n", "50", "--out",
                 str(tmp_path / "s.npy")]) == 0
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (50, 64) and np.isfinite(samples).all()
    assert main(["evaluate", "--run", str(whole), "--metrics", "parzen,nn,interpolation",
                 "--n-samples", "100"]) == 0
    report = json.loads((whole / "eval" / "report.json").read_text())
    assert np.isfinite(report["parzen"]["mean"]) and "figure" in report["interpolation"]
    assert report["run"]["done"]


def test_a_family_is_refused_where_it_is_not_registered(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:  # --family toy: no such choice without the line
        _train(tmp_path / "run")
    assert stopped.value.code == 2 and "invalid choice: 'toy'" in capsys.readouterr().err
