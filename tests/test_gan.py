"""The GAN baseline: its losses, schedule and networks, one stage of the shared loop, resume
bit-identical, and sampling a GAN run like any other (fast, in-process)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gmmn import load_run
from gmmn.cli import main
from gmmn.errors import ConfigError
from gmmn.families import build_model
from gmmn.families.gan import GanStage, discriminator_loss, generator_loss
from gmmn.models import Discriminator
from gmmn.presets import GAN_PAPER_SGD, get_preset
from gmmn.training.checkpoint import load_checkpoint
from gmmn.training.loop import train_loop
from gmmn.training.optim import gan_schedule
from gmmn.training.run import run_training

TINY = {"iterations": 12, "hidden": (16,), "disc_hidden": (8,), "disc_pieces": 3,
        "disc_dropout": (0.2, 0.5), "sample_batch_size": 32, "data_batch_size": 32,
        "checkpoint_every": 4, "log_every": 2, "sample_every": 0}


class Interrupt(Exception):
    pass


def test_losses_match_the_log_formulas():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 0.2])
    d = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    want_d = (-sum(math.log(d(v)) for v in real.tolist()) / 3
              - sum(math.log(1 - d(v)) for v in fake.tolist()) / 2)
    want_g = -sum(math.log(d(v)) for v in fake.tolist()) / 2  # non-saturating: -log D(G(z))
    assert float(discriminator_loss(real, fake)) == pytest.approx(want_d, rel=1e-6)
    assert float(generator_loss(fake)) == pytest.approx(want_g, rel=1e-6)
    assert torch.isfinite(discriminator_loss(torch.tensor([500.0]), torch.tensor([-500.0])))


def test_one_sided_label_smoothing_is_cross_entropy_against_one_minus_s():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 0.2])
    s = 0.1
    d = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    want = (sum(-(1 - s) * math.log(d(v)) - s * math.log(1 - d(v)) for v in real.tolist()) / 3
            - sum(math.log(1 - d(v)) for v in fake.tolist()) / 2)
    assert float(discriminator_loss(real, fake, s)) == pytest.approx(want, rel=1e-6)
    # the smoothed loss is minimised where D(x) = 1 - s, not at D(x) -> 1
    logit = torch.tensor([0.0], requires_grad=True)
    opt = torch.optim.SGD([logit], lr=1.0)
    for _ in range(500):
        opt.zero_grad()
        discriminator_loss(logit, torch.tensor([-50.0]), s).backward()
        opt.step()
    assert float(torch.sigmoid(logit.detach())) == pytest.approx(1 - s, abs=1e-4)


def test_schedule_decays_lr_and_ramps_momentum():
    s = gan_schedule(lr=0.1, momentum=0.5, final_momentum=0.7, momentum_ramp=100,
                     lr_decay=1.01, min_lr=0.05)
    assert s(1) == pytest.approx((0.1, 0.5))
    assert s(51) == pytest.approx((0.1 / 1.01 ** 50, 0.6))
    assert s(101)[1] == pytest.approx(0.7) and s(5000) == pytest.approx((0.05, 0.7))


def test_maxout_discriminator_by_hand():
    disc = Discriminator(4, (3,), pieces=2, dropout_rates=(0.0, 0.0))
    x = torch.randn(5, 4)
    first, out = disc.layers
    z = first(x)  # (5, 6): unit j takes pieces 2j and 2j+1
    h = torch.maximum(z[:, 0::2], z[:, 1::2])
    assert torch.allclose(disc(x), out(h).squeeze(1))
    w = torch.cat([p.detach().flatten() for p in disc.parameters() if p.ndim == 2])
    assert w.abs().max() <= 0.005 and w.abs().max() > 0  # pylearn2's irange 0.005


def test_config_refuses_bad_gan_settings():
    cfg = get_preset("digits-gan")
    for bad in ({"autoencoder": True}, {"disc_dropout": (0.2,)}, {"disc_pieces": 0},
                {"gan_optimizer": "rmsprop"}, {"gan_lr_decay": 0.5}):
        with pytest.raises(ConfigError):
            cfg.override(**bad)


def test_gan_presets_share_the_gmmn_generator():
    for data in ("mnist", "fashion-mnist", "digits"):
        gan, gmmn = get_preset(f"{data}-gan"), get_preset(f"{data}-gmmn")
        assert gan.family == "gan" and gan.hidden == gmmn.hidden and gan.prior_dim == gmmn.prior_dim
    assert get_preset("mnist-gan").gan_optimizer == "adam"
    assert get_preset("mnist-gan").disc_hidden == (240, 240)
    sgd = get_preset("mnist-gan").override(**GAN_PAPER_SGD)  # the documented option
    assert (sgd.gan_optimizer, sgd.lr, sgd.gan_final_momentum) == ("sgd", 0.1, 0.7)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 1e-3)])
def test_one_gan_iteration_changes_both_networks(optimizer, lr):
    cfg = get_preset("digits-gan").override(gan_optimizer=optimizer, lr=lr,
                              **{**TINY, "iterations": 1})
    model = build_model(cfg, 64, unit_interval=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stage = GanStage(model, torch.rand(100, 64), cfg)
    seen = []
    train_loop(stage, on_step=seen.append)
    assert set(seen[0].losses) == {"discriminator", "generator"}
    after = model.state_dict()
    for net in ("generator.", "discriminator."):
        keys = [k for k in after if k.startswith(net)]
        assert keys and all(not torch.equal(before[k], after[k]) for k in keys), net


def test_instance_noise_falls_linearly_to_zero_and_is_off_by_default():
    cfg = get_preset("digits-gan").override(gan_instance_noise=0.5,
                              **{**TINY, "iterations": 100})
    stage = GanStage(build_model(cfg, 64, unit_interval=True), torch.rand(100, 64), cfg)
    x = torch.zeros(20000, 4)
    for t, want in ((1, 0.5), (51, 0.25), (91, 0.05)):
        assert float(stage._noisy(x, t).std()) == pytest.approx(want, rel=0.03)
    quiet = cfg.override(gan_instance_noise=0.0)
    stage = GanStage(build_model(quiet, 64, unit_interval=True), torch.rand(100, 64), quiet)
    before = stage.dropout_rng.get_state()
    assert stage._noisy(x, 1) is x and torch.equal(stage.dropout_rng.get_state(), before)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_is_bit_identical(tmp_path, optimizer):
    cfg = get_preset("digits-gan").override(gan_optimizer=optimizer, **TINY)
    if optimizer == "sgd":
        cfg = cfg.override(lr=0.05, momentum=0.5, gan_momentum_ramp=6,
                                  gan_lr_decay=1.05, gan_instance_noise=0.2)  # noise resumes too
    run_training(cfg, out_dir=tmp_path / "whole")

    def stop(info):  # after the checkpoint of iteration 8
        if info.iteration == 10:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_training(cfg, out_dir=tmp_path / "broken", callback=stop)
    assert load_checkpoint(tmp_path / "broken" / "checkpoint.pt")["iteration"] == 8
    run_training(cfg, out_dir=tmp_path / "broken", resume=True)
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "broken" / "checkpoint.pt")["model"]
    assert any(k.startswith("discriminator.") for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The same lines, none duplicated (elapsed times differ, so compare the numbers).
    whole, broken = (_losses((tmp_path / d / "metrics.jsonl").read_text())
                     for d in ("whole", "broken"))
    assert whole == broken and [r[0] for r in whole] == list(range(2, 13, 2))


def _losses(text: str) -> list[tuple]:
    return [(r["iteration"], r["loss_discriminator"], r["loss_generator"])
            for r in map(json.loads, text.splitlines())]


def test_sample_and_load_run_work_on_a_gan_run(tmp_path):
    out = tmp_path / "gan"
    flags = ["--iterations", "6", "--hidden", "16", "--disc-hidden", "8", "--disc-pieces", "2",
             "--disc-dropout", "0.2,0.5", "--checkpoint-every", "3", "--sample-every", "0"]
    assert main(["train", "--preset", "digits-gan", "--out", str(out), "--no-progress",
                 *flags]) == 0
    assert (out / "samples.png").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["stage"] == "gan" and {"loss_discriminator", "loss_generator"} <= set(
        rows[-1])
    run = load_run(out)
    assert run.done and run.config.family == "gan" and run.model.discriminator is not None
    x = run.sample(9, seed=3)
    assert x.shape == (9, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert main(["sample", "--run", str(out), "--n", "9", "--seed", "3",
                 "--out", str(tmp_path / "s.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "s.npy"), x.numpy())


def test_a_diverged_gan_stops_with_one_clear_error():
    cfg = get_preset("digits-gan").override(**{**TINY, "log_every": 3})
    model = build_model(cfg, 64, unit_interval=True)
    stage = GanStage(model, torch.full((50, 64), float("nan")), cfg)
    with pytest.raises(ConfigError, match="diverged .* iteration 3"):
        train_loop(stage)
