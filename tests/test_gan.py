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


@pytest.mark.integration
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


@pytest.mark.integration
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


# --- the GAN paper's own recipe (mnist-gan-paper) ----------------------------------------------

def _paper(**extra):
    """mnist-gan-paper's recipe at digits size (digits has no GAN split: its own hold-out)."""
    return get_preset("mnist-gan-paper").override(
        dataset="digits", split="paper", **{**TINY, "prior_dim": 6, "select_every": 4,
                                             "select_samples": 200, **extra})


def test_the_paper_preset_follows_the_released_files():
    c = get_preset("mnist-gan-paper")
    assert (c.family, c.split, c.prior, c.prior_dim, c.hidden) == (
        "gan", "gan", "normal", 100, (1200, 1200))
    assert (c.init_std, c.init_range, c.output_bias) == (None, 0.05, "marginals")
    assert (c.disc_hidden, c.disc_pieces, c.disc_dropout) == ((240, 240), 5, (0.2, 0.5, 0.5))
    assert (c.gan_update, c.disc_loss_scale, c.gan_optimizer, c.lr, c.momentum) == (
        "simultaneous", 0.5, "sgd", 0.1, 0.5)
    assert (c.gan_final_momentum, c.gan_lr_decay, c.gan_min_lr) == (0.7, 1.000004, 1e-6)
    assert (c.sample_batch_size, c.data_batch_size, c.gan_momentum_ramp) == (100, 100, 125000)
    # the GAN paper's network: about 2.5 M generator and 1.2 M discriminator weights
    model = build_model(c, 784, unit_interval=True)
    g = sum(p.numel() for p in model.generator.parameters())
    d = sum(p.numel() for p in model.discriminator.parameters())
    assert 2.4e6 < g < 2.6e6 and 1.1e6 < d < 1.3e6


def test_the_generator_starts_from_uniform_weights_and_the_data_marginals():
    cfg = _paper()
    model = build_model(cfg, 64, unit_interval=True)
    w = torch.cat([layer.weight.detach().flatten() for layer in model.generator.layers])
    assert float(w.abs().max()) <= 0.05 and float(w.std()) > 0.02  # U(-0.05, 0.05)
    assert all(float(layer.bias.abs().max()) == 0 for layer in model.generator.layers)
    x = torch.rand(300, 64)
    x[:, 0] = 0.0  # a pixel that is always off: its mean clipped to 1e-7
    from gmmn.families import get_family

    get_family("gan").init_from_data(cfg, model, x)
    bias = model.generator.layers[-1].bias.double()
    expected = x.double().mean(0).clamp(1e-7, 1 - 1e-7)
    torch.testing.assert_close(torch.sigmoid(bias), expected, rtol=1e-6, atol=1e-12)
    z = model.generator.sample_prior(20000, torch.Generator().manual_seed(0))
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02  # N(0, I)


def test_a_simultaneous_step_is_each_net_descending_its_own_loss_at_the_old_weights():
    # A hand-written reference of the GAN paper code's update, one step of plain SGD: the
    # same batch, noise and dropout masks give d_obj = 0.5 (BCE(1, D(x)) + BCE(0, D(G(z))))
    # and g_obj = BCE(1, D(G(z))); D moves by -lr dD d_obj, G by -lr dG g_obj, both taken
    # before either moved.
    cfg = _paper(lr=0.1, momentum=0.0, gan_final_momentum=0.0, gan_lr_decay=1.0,
                 select_every=0, iterations=1)
    model = build_model(cfg, 64, unit_interval=True)
    data = torch.rand(32, 64)
    stage = GanStage(model, data, cfg)
    gen, disc = model.generator, model.discriminator
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # the reference draws what the stage will draw, from copies of its streams
    prior = torch.Generator().set_state(stage.prior_rng.get_state())
    drop = torch.Generator().set_state(stage.dropout_rng.get_state())
    order = stage.sampler.order.clone()
    real = data[order[:32]]
    fake = gen(gen.sample_prior(32, prior))
    real_logits = disc(real, drop)
    state = drop.get_state()
    fake_logits = disc(fake, drop)
    d_obj = 0.5 * discriminator_loss(real_logits, fake_logits)
    d_grads = torch.autograd.grad(d_obj, list(disc.parameters()), retain_graph=True)
    drop.set_state(state)
    g_obj = generator_loss(fake_logits)
    g_grads = torch.autograd.grad(g_obj, list(gen.parameters()))
    train_loop(stage)  # one iteration of the stage itself
    for p0, g, p1 in zip([before[f"discriminator.{k}"] for k, _ in disc.named_parameters()],
                         d_grads, disc.parameters(), strict=True):
        torch.testing.assert_close(p1.detach(), p0 - 0.1 * g, rtol=1e-5, atol=1e-7)
    for p0, g, p1 in zip([before[f"generator.{k}"] for k, _ in gen.named_parameters()],
                         g_grads, gen.parameters(), strict=True):
        torch.testing.assert_close(p1.detach(), p0 - 0.1 * g, rtol=1e-5, atol=1e-7)
    # and not the alternating update's: its generator sees the discriminator after its step
    alt = build_model(cfg, 64, unit_interval=True)
    alt.load_state_dict(before)
    train_loop(GanStage(alt, data, cfg.override(gan_update="alternating")))
    assert not torch.equal(alt.generator.layers[0].weight, gen.layers[0].weight)


def test_validation_selection_keeps_the_best_generator_and_resumes_bit_identically(tmp_path):
    cfg = _paper()
    whole = run_training(cfg, out_dir=tmp_path / "whole")
    rows = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text()
            .splitlines()]
    scored = [r for r in rows if "val_parzen" in r]
    assert [r["iteration"] for r in scored] == [4, 8, 12]
    best = max(r["val_parzen"] for r in scored)
    assert scored[-1]["best_val_parzen"] == best
    # the kept generator is the one that scored best
    stage = GanStage(whole.model, torch.rand(10, 64), cfg,
                     validation=load_splits_of(cfg).validation)
    assert stage.validation_score()[0] == pytest.approx(best, abs=1e-9)

    def stop(info):  # after the checkpoint of iteration 8 (and its selection)
        if info.iteration == 10:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_training(cfg, out_dir=tmp_path / "broken", callback=stop)
    run_training(cfg, out_dir=tmp_path / "broken", resume=True)
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "broken" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses((tmp_path / "whole" / "metrics.jsonl").read_text()) == _losses(
        (tmp_path / "broken" / "metrics.jsonl").read_text())


def load_splits_of(cfg):
    from gmmn.training.run import load_splits

    return load_splits(cfg)


def test_bad_recipe_settings_are_refused():
    for bad, word in (({"gan_update": "both"}, "--gan-update"),
                      ({"output_bias": "mean"}, "--output-bias"),
                      ({"prior": "cauchy"}, "--prior"),
                      ({"init_std": 0.1}, "--init-range and --init-std")):
        with pytest.raises(ConfigError, match=word):
            _paper(**bad)
    with pytest.raises(ConfigError, match="--select-every scores the validation rows"):
        GanStage(build_model(_paper(), 64, unit_interval=True), torch.rand(10, 64), _paper())
