"""The conditional GMMN families (cgmmn, cgmmn-ae): labels into joint rows, the model and its
sampler's conditions and errors, the user's .npz labels; then (integration) a two-class toy
that must learn each class's distribution, and train -> sample --label -> evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gmmn.api import Run, load_run
from gmmn.config import TrainConfig
from gmmn.data import load_dataset
from gmmn.data.splits import make_splits
from gmmn.errors import ConfigError, DataError
from gmmn.families import FAMILIES, get_family, make_config
from gmmn.families.cgmmn import ConditionalModel, ConditionalSampler, class_major
from gmmn.presets import get_preset


def _info(dim: int = 64) -> dict:
    return {"dim": dim, "mean": None, "std": None}


def _digits_model(seed: int = 0) -> tuple[TrainConfig, ConditionalModel]:
    cfg = get_preset("digits-cgmmn").override(seed=seed)
    return cfg, get_family("cgmmn").build_model(cfg, 64, unit_interval=True)


def test_the_families_and_presets_are_registered():
    assert FAMILIES["cgmmn"].name == "cgmmn" and FAMILIES["cgmmn-ae"].name == "cgmmn-ae"
    d, m = get_preset("digits-cgmmn"), get_preset("mnist-cgmmn-ae")
    assert (d.family, d.dataset, d.classes) == ("cgmmn", "digits", 10)
    assert (m.family, m.dataset, m.classes, m.ae_hidden) == ("cgmmn-ae", "mnist", 10, (1024, 32))
    assert m.sample_batch_size == m.data_batch_size == 1000


@pytest.mark.integration  # loading digits: about 0.5 s
def test_rows_carry_each_class_as_one_hot_columns_and_classes_come_from_the_labels():
    splits = load_dataset("digits")
    fam = get_family("cgmmn")
    cfg = fam.fit_data(get_preset("digits-cgmmn").override(classes=None), splits)
    assert cfg.classes == 10
    rows = fam.rows(cfg, splits, "train")
    assert rows.shape == (len(splits.train), 74)
    assert torch.equal(rows[:, :64], splits.train)
    assert torch.equal(rows[:, 64:].argmax(1), splits.train_labels)
    assert torch.equal(rows[:, 64:].sum(1), torch.ones(len(rows)))
    with pytest.raises(ConfigError, match="has labels up to 9 but --classes is 4; pass "
                                          "--classes 10"):
        fam.fit_data(get_preset("digits-cgmmn").override(classes=4), splits)


def test_unlabelled_data_is_refused_with_what_to_give():
    x = np.random.default_rng(0).random((30, 4), dtype=np.float32)
    splits = make_splits("t", {"train": x, "validation": x[:3], "test": x[:3]}, source="t.npy")
    with pytest.raises(DataError, match=r"has no labels for its train split.*labels or y array"):
        get_family("cgmmn").fit_data(get_preset("digits-cgmmn").override(dataset="t.npy"),
                                     splits)


def test_the_model_keeps_the_training_class_frequencies_and_samples_by_them():
    cfg, model = _digits_model()
    fam = get_family("cgmmn")
    labels = torch.tensor([3] * 90 + [7] * 10)
    joint = torch.cat([torch.rand(100, 64), torch.nn.functional.one_hot(labels, 10).float()], 1)
    fam.init_from_data(cfg, model, joint)
    assert model.class_frequencies[3] == pytest.approx(0.9)
    drawn = model.draw_labels(2000, torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {3, 7} and 0.87 < float((drawn == 3).double().mean()) < 0.93
    assert model.class_frequencies.dtype == torch.float32
    assert "class_frequencies" in model.state_dict()  # saved with the weights


def test_a_label_is_what_the_generator_is_fed():
    _, model = _digits_model()
    sampler = ConditionalSampler(model, _info(), what="this run")
    a = sampler.sample(5, seed=1, label=3)
    z = model.prior(5, torch.Generator().manual_seed(1))
    assert torch.allclose(a, model.decode(z, model.one_hot(torch.full((5,), 3))))
    assert torch.equal(a, sampler.sample(5, seed=1, label=3))  # the seed fixes the samples
    assert not torch.allclose(a, sampler.sample(5, seed=1, label=4))
    mixed = sampler.sample(3, seed=2, label=[0, 5, 9])
    assert torch.allclose(mixed[1], sampler.sample_conditions(torch.eye(10)[[0, 5, 9]],
                                                              seed=2)[1])
    assert sampler.sample(8, seed=0).shape == (8, 64)  # classes drawn by the frequencies
    assert torch.allclose(model.decode_prior(z), model.decode(z, model.one_hot(
        torch.zeros(5, dtype=torch.long))))  # the interpolations walk class 0


@pytest.mark.parametrize(("label", "message"), [
    (10, "label 10 is not a class of this run, which has classes 0 to 9"),
    (-1, "label -1 is not a class"),
    (2.5, "labels are class numbers 0 to 9, got 2.5"),
    (True, "labels are class numbers"),
    ([1, 2], "give one label or one per sample: 2 labels for 5 samples"),
])
def test_unknown_labels_are_one_clear_error(label, message):
    _, model = _digits_model()
    with pytest.raises(DataError, match=message):
        ConditionalSampler(model, _info(), what="this run").sample(5, seed=0, label=label)


def test_a_wrong_condition_shape_is_one_clear_error():
    _, model = _digits_model()
    sampler = ConditionalSampler(model, _info(), what="this run")
    with pytest.raises(DataError, match=r"conditions must be float rows of shape \(k, 10\)"):
        sampler.sample_conditions(torch.zeros(3, 4))
    with pytest.raises(DataError, match=r"shape \(k, 10\)"):
        sampler.sample_conditions(torch.zeros(3, dtype=torch.long))


def test_a_label_for_an_unconditional_run_says_to_drop_it():
    cfg = get_preset("digits-gmmn")
    model = get_family("gmmn").build_model(cfg, 64, unit_interval=True)
    with pytest.raises(ConfigError, match=r"this run \(digits-gmmn, family gmmn\) is "
                                          r"unconditional: drop the label"):
        Run(cfg, _info(), model, True).sample(4, seed=0, label=3)


def test_class_major_labels_fill_one_row_per_class():
    assert class_major(12, 4).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert class_major(10, 4).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]


@pytest.mark.parametrize("key", ["labels", "y"])
def test_a_user_npz_gives_its_labels_beside_one_array(tmp_path, key):
    x = np.random.default_rng(0).random((100, 5), dtype=np.float32)
    y = np.arange(100) % 4
    np.savez(tmp_path / "d.npz", x=x, **{key: y})
    splits = load_dataset(tmp_path / "d.npz")
    for split in ("train", "validation", "test"):
        rows, labels = getattr(splits, split), getattr(splits, f"{split}_labels")
        # each row keeps its own label: find it in x
        idx = [int(np.flatnonzero((x == r.numpy()).all(1))[0]) for r in rows]
        assert labels.tolist() == y[idx].tolist()
    np.savez(tmp_path / "short.npz", x=x, y=y[:99])
    with pytest.raises(DataError, match="its labels hold 99 values for 100 examples"):
        load_dataset(tmp_path / "short.npz")
    np.savez(tmp_path / "three.npz", x=x, y=y, z=y)
    with pytest.raises(DataError, match=r"or one array and its labels \(named labels or y\)"):
        load_dataset(tmp_path / "three.npz")


def test_the_conditional_families_refuse_torchrun():
    with pytest.raises(ConfigError, match="trains in one process"):
        get_family("cgmmn").check_world(get_preset("digits-cgmmn"), 2)


@pytest.mark.integration
def test_a_two_class_toy_learns_each_class_distribution():
    from gmmn.training.run import run_training

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    centre = np.where(y[:, None] == 0, 0.25, 0.75) * np.ones((1, 2))
    x = np.clip(centre + 0.05 * rng.standard_normal((600, 2)), 0, 1).astype(np.float32)
    splits = make_splits("toy", {"train": x[:500], "validation": x[500:550],
                                 "test": x[550:]}, source="toy",
                         labels={"train": y[:500], "validation": y[500:550], "test": y[550:]})
    # (lr 0.1 and above, or the paper's init_std 0.1, saturated the sigmoid in 300 steps)
    cfg = make_config("cgmmn", dataset="toy", prior_dim=4, hidden=(32, 32), iterations=300,
                      late_from=250, lr=0.05, init_std=None, sigmas=(0.1, 0.25, 0.5, 1.0),
                      sample_batch_size=100, data_batch_size=100, classes=None,
                      checkpoint_every=0, sample_every=0, log_every=50, device="cpu")
    result = run_training(cfg, splits=splits)
    assert result.config.classes == 2
    sampler = get_family("cgmmn").sampler(result.model, result.config, result.data)
    for k, c in ((0, 0.25), (1, 0.75)):
        s = sampler.sample(500, seed=k, label=k)
        assert torch.allclose(s.mean(0), torch.full((2,), c), atol=0.07), (k, s.mean(0))
        assert 0.02 < float(s.std(0).mean()) < 0.15  # the data's: 0.05


@pytest.mark.integration
def test_train_sample_a_label_and_evaluate(tmp_path, monkeypatch):
    from gmmn.cli import main

    monkeypatch.setenv("GMMN_DATA", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["train", "--preset", "digits-cgmmn", "--out", str(run), "--no-progress",
                 "--iterations", "20", "--late-from", "10", "--hidden", "32",
                 "--checkpoint-every", "0", "--sample-every", "0"]) == 0
    assert main(["sample", "--run", str(run), "--label", "3", "--n", "7",
                 "--out", str(tmp_path / "three.npy")]) == 0
    assert np.load(tmp_path / "three.npy").shape == (7, 64)
    assert torch.allclose(torch.from_numpy(np.load(tmp_path / "three.npy")),
                          load_run(run).sample(7, seed=0, label=3))
    assert main(["sample", "--run", str(run), "--n", "30", "--out",
                 str(tmp_path / "grid.png")]) == 0
    assert main(["evaluate", "--run", str(run), "--metrics", "fd,coverage",
                 "--n-samples", "200"]) == 0
    report = json.loads((run / "eval" / "report.json").read_text())
    acc = report["conditional_accuracy"]
    assert set(acc["per_class"]) == {str(k) for k in range(10)}
    assert acc["samples_per_class"] == 20
    assert acc["overall"] == pytest.approx(sum(acc["per_class"].values()) / 10)
    assert 0.5 < acc["reference"]["overall"] <= 1.0
    assert set(report["fd_per_class"]["per_class"]) == {str(k) for k in range(10)}
    assert report["figures"]["conditional"] == "conditional_samples.png"
    assert (run / "eval" / "conditional_samples.png").exists()
    assert "conditional accuracy" in (run / "eval" / "report.md").read_text()
    assert "fd" in report and "value" in report["fd"]  # the unconditional metrics stay


def test_the_code_space_model_is_the_gmmn_ae_autoencoder_and_a_conditional_generator():
    cfg = get_preset("mnist-cgmmn-ae").override(ae_hidden=(64, 8), ae_dropout=(0.2, 0.5),
                                                hidden=(16, 16))
    model = get_family("cgmmn-ae").build_model(cfg, 100, unit_interval=True)
    plain = get_family("gmmn-ae").build_model(
        get_preset("mnist-gmmn-ae").override(ae_hidden=(64, 8), ae_dropout=(0.2, 0.5),
                                             hidden=(16, 16)), 100, unit_interval=True)
    ae, ref = model.autoencoder.state_dict(), plain.autoencoder.state_dict()
    assert ae.keys() == ref.keys() and all(torch.equal(ae[k], ref[k]) for k in ae)
    assert model.generator.layers[0].in_features == 10 + 10  # noise, then the one-hot class
    assert model.generator.layers[-1].out_features == 8 and model.generator.sigmoid_output
    assert get_family("cgmmn-ae").stage_names(cfg) == ["pretrain-1", "pretrain-2", "finetune",
                                                       "cgmmn"]
    assert model.sample_labels(torch.tensor([1, 2]), None).shape == (2, 100)


@pytest.mark.integration
def test_the_code_space_family_trains_its_stages_on_labelled_digits():
    from gmmn.families import switch_family
    from gmmn.training.run import run_training

    cfg = switch_family(get_preset("digits-gmmn-ae"), "cgmmn-ae", classes=10).override(
        pretrain_iterations=5, finetune_iterations=5, ae_eval_every=5, iterations=5,
        late_from=3, sample_batch_size=50, data_batch_size=50, device="cpu",
        checkpoint_every=0, sample_every=0)
    result = run_training(cfg)
    assert result.checkpoint["done"]
    sampler = get_family("cgmmn-ae").sampler(result.model, result.config, result.data)
    assert sampler.sample(4, seed=0, label=7).shape == (4, 64)
