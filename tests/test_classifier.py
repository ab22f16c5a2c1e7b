"""The feature classifier: it learns, caches by data hash, and never trusts a corrupt cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gmmn.data import Splits, load_dataset
from gmmn.errors import DataError
from gmmn.evaluate import classifier as C


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_trains_caches_and_reloads_without_training(digits, tmp_path, monkeypatch):
    clf = C.load_or_train_classifier(digits, cache_dir=tmp_path)
    assert clf.test_accuracy > 0.85  # chance is 0.1
    assert clf.path is not None and clf.path.parent == tmp_path / "classifiers"

    def boom(*a, **k):
        raise AssertionError("retrained despite a valid cache entry")
    monkeypatch.setattr(C, "train_classifier", boom)
    again = C.load_or_train_classifier(digits, cache_dir=tmp_path)
    assert again.test_accuracy == clf.test_accuracy
    x = digits.test[:20]
    torch.testing.assert_close(C.features(again, x), C.features(clf, x))
    assert C.features(clf, x).shape == (20, 128)


def test_key_follows_the_data_and_the_env_var(digits, tmp_path, monkeypatch):
    changed = dataclasses.replace(digits, train=digits.train.flip(0))
    assert C._key(changed, C.ClassifierConfig()) != C._key(digits, C.ClassifierConfig())
    assert C._key(digits, C.ClassifierConfig(epochs=1)) != C._key(digits, C.ClassifierConfig())
    monkeypatch.setenv("GMMN_DATA", str(tmp_path))
    assert C.cache_root() == tmp_path


def test_corrupt_cache_is_retrained(digits, tmp_path):
    cfg = C.ClassifierConfig(epochs=1)
    path = tmp_path / "classifiers" / f"{C._key(digits, cfg)}.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    clf = C.load_or_train_classifier(digits, cache_dir=tmp_path, config=cfg)
    assert clf.test_accuracy > 0.5
    assert torch.load(path, weights_only=True)["test_accuracy"] == clf.test_accuracy


def test_unlabelled_data_is_a_user_error(digits, tmp_path):
    with pytest.raises(DataError, match="labels"):
        C.load_or_train_classifier(dataclasses.replace(digits, train_labels=None),
                                   cache_dir=tmp_path)


TINY = C.ClassifierConfig(hidden=8, features=4, epochs=2, batch_size=16)


def _tiny() -> Splits:
    gen = torch.Generator().manual_seed(5)
    x, y = torch.rand(60, 6, generator=gen), torch.randint(0, 3, (60,), generator=gen)
    return Splits(name="tiny", train=x[:40], validation=x[:0], test=x[40:],
                  train_labels=y[:40], validation_labels=y[:0], test_labels=y[40:],
                  image_shape=None, source="test")


def test_a_home_relative_gmmn_data_is_one_folder_for_data_and_classifiers(tmp_path, monkeypatch):
    from gmmn.data import download

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GMMN_DATA", "~/gmmn-cache")
    assert C.cache_root is download.cache_root  # one function, not a copy that could drift
    assert C.cache_root() == download.cache_root() == tmp_path / "gmmn-cache"
    assert download.cache_dir("digits").parent == tmp_path / "gmmn-cache"
    clf = C.load_or_train_classifier(_tiny(), config=TINY)  # no cache_dir: GMMN_DATA's
    assert clf.path is not None and clf.path.parent == tmp_path / "gmmn-cache" / "classifiers"


def test_training_and_loading_leave_the_global_rng_alone_and_depend_on_the_seed_only(tmp_path):
    splits = _tiny()
    weights = []
    for caller_seed in (1, 2):
        with torch.random.fork_rng(devices=[]):  # the test's own seeding stays here too
            torch.manual_seed(caller_seed)
            before = torch.random.get_rng_state()
            trained = C.load_or_train_classifier(splits, cache_dir=tmp_path / str(caller_seed),
                                                 config=TINY)
            assert torch.equal(torch.random.get_rng_state(), before)
            loaded = C.load_or_train_classifier(splits, cache_dir=tmp_path / str(caller_seed),
                                                config=TINY)
            assert torch.equal(torch.random.get_rng_state(), before)
        assert loaded.test_accuracy == trained.test_accuracy
        weights.append(trained.model.state_dict())
    # The caller's global seed does not reach the classifier; its own seed does.
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    other = C.train_classifier(splits.train, splits.train_labels, n_classes=3,
                               config=dataclasses.replace(TINY, seed=1))
    assert not torch.equal(other.state_dict()["head.weight"], weights[0]["head.weight"])
