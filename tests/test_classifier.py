"""The feature classifier: it learns, caches by data hash, and never trusts a corrupt cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gmmn.data import load_dataset
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
