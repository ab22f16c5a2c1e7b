"""The optimiser, schedules, models and loop of gmmn training (fast, in-process)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from gmmn.errors import ConfigError
from gmmn.families import build_model, config_from_dict
from gmmn.families.gmmn import GMMNStage
from gmmn.models import Autoencoder, Generator, dropout
from gmmn.presets import PRESETS, get_preset
from gmmn.training.blocks import BatchSampler
from gmmn.training.loop import train_loop
from gmmn.training.optim import ReleasedSGD, gmmn_schedule, stepwise_momentum


def test_released_sgd_matches_the_formula_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = ReleasedSGD([p], lr=0.5, momentum=0.9)
    grads = [torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.5]), torch.tensor([4.0, -1.0])]
    schedule = [(0.5, 0.9), (0.05, 0.99), (0.05, 0.99)]  # an lr switch after step 1
    v = torch.zeros(2, dtype=torch.float64)
    w = p.detach().clone()
    for g, (lr, m) in zip(grads, schedule, strict=True):
        opt.lr, opt.momentum = lr, m
        p.grad = g.double()
        opt.step()
        v = m * v - lr * g.double()
        w = w + v
        assert torch.allclose(p.detach(), w, atol=0, rtol=1e-15)


def test_released_sgd_differs_from_torch_sgd_when_lr_changes():
    def run(kind):
        p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
        opt = (ReleasedSGD([p], lr=2.0, momentum=0.9) if kind == "released"
               else torch.optim.SGD([p], lr=2.0, momentum=0.9))
        for step in range(3):
            lr = 2.0 if step == 0 else 0.2
            if kind == "released":
                opt.lr = lr
            else:
                opt.param_groups[0]["lr"] = lr
            p.grad = torch.tensor([1.0], dtype=torch.float64)
            opt.step()
        return float(p.detach())

    # Constant lr: identical. After a switch, torch's buffer carries old gradients at the new lr.
    released, torch_sgd = run("released"), run("torch")
    # by hand: v1=-2, p=-1; v2=0.9*-2-0.2=-2, p=-3; v3=-1.8-0.2=-2, p=-5
    assert released == pytest.approx(-5.0)
    # torch: b1=1, p=1-2=-1; b2=1.9, p=-1-0.38=-1.38; b3=2.71, p=-1.38-0.542=-1.922
    assert torch_sgd == pytest.approx(-1.922)


def test_gmmn_schedule_switches_at_iteration_10000():
    s = gmmn_schedule(lr=2.0, momentum=0.9, late_from=10000, late_lr_factor=0.1,
                      late_momentum=0.99)
    assert s(1) == (2.0, 0.9)
    assert s(9999) == (2.0, 0.9)
    assert s(10000) == pytest.approx((0.2, 0.99))
    assert s(40000) == pytest.approx((0.2, 0.99))


@pytest.mark.parametrize("preset,late", [("mnist-gmmn-ae", 0.9), ("tfd-gmmn-ae", 0.0)])
def test_finetune_momentum_boundaries(preset, late):
    cfg = get_preset(preset)
    s = stepwise_momentum(lr=cfg.ae_lr, momenta=cfg.finetune_momentum,
                          starts=cfg.finetune_momentum_from)
    assert [s(t)[1] for t in (1, 49, 50, 199, 200, 3000)] == [0, 0, 0.5, 0.5, late, late]
    assert s(1)[0] == 0.1


def test_paper_preset_values():
    mnist, tfd_ae = get_preset("mnist-gmmn"), get_preset("tfd-gmmn-ae")
    assert mnist.hidden == (64, 256, 256, 1024) and mnist.prior_dim == 10
    assert mnist.iterations == 40000 and get_preset("tfd-gmmn").iterations == 48000
    assert (mnist.lr, mnist.momentum, mnist.late_from) == (2.0, 0.9, 10000)
    assert mnist.sigmas == pytest.approx([2 ** 0.5, 5 ** 0.5, 10 ** 0.5, 20 ** 0.5,
                                          40 ** 0.5, 80 ** 0.5])
    assert tfd_ae.lr == 0.1 and tfd_ae.ae_hidden == (512, 512, 128)
    assert tfd_ae.pretrain_iterations == 15000
    assert set(PRESETS) >= {"mnist-gmmn", "mnist-gmmn-ae", "tfd-gmmn", "tfd-gmmn-ae",
                            "fashion-mnist-gmmn", "fashion-mnist-gmmn-ae", "digits-gmmn",
                            "digits-gmmn-ae"}


def test_generator_shapes_init_and_prior():
    gen = Generator(10, (64, 256, 256, 1024), 784, sigmoid_output=True, init_std=0.1,
                    generator=torch.Generator().manual_seed(0))
    sizes = [(layer.in_features, layer.out_features) for layer in gen.layers]
    assert sizes == [(10, 64), (64, 256), (256, 256), (256, 1024), (1024, 784)]
    w = gen.layers[3].weight.detach()
    assert abs(float(w.std()) - 0.1) < 0.005 and abs(float(w.mean())) < 0.005
    assert all(torch.equal(layer.bias, torch.zeros_like(layer.bias)) for layer in gen.layers)
    z = gen.sample_prior(5000, torch.Generator().manual_seed(1))
    assert z.shape == (5000, 10) and z.min() >= -1 and z.max() <= 1 and z.min() < -0.99
    x = gen(z[:7])
    assert x.shape == (7, 784) and x.min() >= 0 and x.max() <= 1
    lin = Generator(10, (8,), 3, sigmoid_output=False, init_std=None)
    assert lin(torch.full((2, 10), 50.0)).abs().max() > 1  # linear output is unbounded


def test_autoencoder_shapes_and_released_dropout():
    ae = Autoencoder((784, 1024, 32), (0.2, 0.5), released_dropout=True, sigmoid_output=True,
                     init_std=0.1)
    x = torch.rand(4, 784)
    assert ae.encode(x).shape == (4, 32) and ae(x).shape == (4, 784)
    assert [(d.in_features, d.out_features) for d in ae.decoders] == [(1024, 784), (32, 1024)]
    g = torch.Generator().manual_seed(0)
    ones = torch.ones(20000)
    kept = dropout(ones, 0.2, g, rescale=False)
    assert set(kept.unique().tolist()) == {0.0, 1.0}  # released: not rescaled
    assert abs(float(kept.mean()) - 0.8) < 0.02
    assert set(dropout(ones, 0.5, g, rescale=True).unique().tolist()) == {0.0, 2.0}
    assert torch.equal(dropout(ones, 0.5, None, rescale=False), ones)  # test time: identity
    w0 = ae.encoders[1].weight.detach().clone()
    ae.released_rescale(1)
    assert torch.allclose(ae.encoders[1].weight, w0 / 0.5)


def test_build_model_follows_data_dimension_and_refuses_too_small_data():
    cfg = get_preset("mnist-gmmn-ae")
    model = build_model(cfg, 100, unit_interval=True)
    assert model.autoencoder.sizes == (100, 1024, 32)
    assert model.generator.out_dim == 32 and model.sample(3).shape == (3, 100)
    assert build_model(get_preset("digits-gmmn"), 5, unit_interval=False).sample(2).shape == (
        2, 5)
    with pytest.raises(ConfigError, match="code smaller than its input"):
        build_model(cfg, 20, unit_interval=True)


def test_config_validation_and_round_trip():
    cfg = get_preset("digits-gmmn-ae")
    assert config_from_dict(cfg.to_dict()) == cfg
    assert config_from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.iterations = 3
    for bad in ({"iterations": 0}, {"iterations": -5}, {"device": "tpu"},
                {"ae_dropout": (0.1,)}, {"sigmas": (0.0,)}, {"momentum": 1.0}):
        with pytest.raises(ConfigError):
            cfg.override(**bad)
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("nope")


def test_batch_sampler_covers_each_epoch_and_wraps():
    data = torch.arange(10.0).unsqueeze(1)
    s = BatchSampler(data, 4, torch.Generator().manual_seed(0))
    first = torch.cat([s.next(), s.next(), s.next()[:2]]).squeeze(1)
    assert sorted(first.tolist()) == list(range(10))  # one epoch, then the wrap starts anew


def test_gmmn_steps_decrease_the_mmd():
    torch.manual_seed(0)
    cfg = get_preset("digits-gmmn").override(iterations=60, hidden=(32,),
                              sample_batch_size=128, data_batch_size=128, lr=1.0,
                              sigmas=(0.5, 1.0, 2.0))
    target = torch.rand(500, 2) * 0.2 + 0.7  # a blob in one corner; the sigmoid starts at 0.5
    model = build_model(cfg, 2, unit_interval=True)
    stage = GMMNStage(model, target, cfg)
    losses = []
    train_loop(stage, on_step=lambda info: losses.append(float(info.losses["mmd"])))
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10


def test_every_config_field_has_help():
    from gmmn.cli.train import field_help
    from gmmn.families import setting_classes

    missing = [(owner, f.name) for owner, cls in setting_classes().items()
               for f in dataclasses.fields(cls)
               if f.name not in ("preset", "family", "model", "sampling")
               and not cls.help_of(f.name)]
    assert not missing
    assert field_help("data_batch_size").startswith("data (or code) points per step")
    assert field_help("data_batch_size", "dbn") == "minibatch size"


def test_training_uses_the_split_of_the_run_seed():
    # `gmmn evaluate` loads the split of the run's seed; training must hold out the same rows.
    from gmmn.data import load_dataset
    from gmmn.training.run import load_splits

    cfg = get_preset("digits-gmmn").override(seed=3)
    got = load_splits(cfg)
    want = load_dataset("digits", seed=3)
    assert torch.equal(got.train, want.train) and torch.equal(got.test, want.test)
    assert not torch.equal(got.test, load_dataset("digits", seed=0).test)
