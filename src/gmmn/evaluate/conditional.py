"""What evaluation adds for a conditional run (a sampler with ``classes``; docs/conditional.md).

* ``conditional_accuracy``: samples of each class k are drawn on request (``sample(n,
  label=k)``) and the evaluation's feature classifier names their class; the fraction it
  names k, per class and over all of them (every class with the same number of samples).
  Reference: the classifier's accuracy on the test images, per class and overall.
* ``fd_per_class``: the Frechet distance on classifier features between the samples of class
  k and the test images of class k, per class and their mean. Reference: training images of
  class k in place of the samples.
* the ``conditional`` figure: one row of samples per class.

The run's other metrics score ``sample(n)``, whose classes are drawn with the training
frequencies, so they compare with an unconditional model's.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable

import torch

from gmmn.data import Splits
from gmmn.errors import GMMNError
from gmmn.evaluate import classifier as clf_mod
from gmmn.evaluate import figures, metrics

log = logging.getLogger(__name__)

FIGURE_COLUMNS = 10  # samples per class in the figure
# Feature rows per class below which a per-class FD is flagged (it estimates a 128 x 128
# covariance); MNIST's test set has about 1000 images per class.
MIN_CLASS_ROWS = 500
_SEED_STRIDE = 7919  # each class's samples from a stream of its own


def class_rows(labels: torch.Tensor, k: int, x: torch.Tensor) -> torch.Tensor:
    return x[labels == k]


def evaluate_conditional(report: dict, sampler, splits: Splits, figure: pathlib.Path, *,
                         n_samples: int, seed: int, cache_dir=None,
                         progress: Callable[[int, int], None] | None = None) -> None:
    """Add ``conditional_accuracy``, ``fd_per_class`` and the ``conditional`` figure."""
    classes = int(sampler.classes)
    per_class = max(1, n_samples // classes)
    grid = sampler.sample(classes * FIGURE_COLUMNS, seed=seed,
                          label=torch.arange(classes * FIGURE_COLUMNS) // FIGURE_COLUMNS)
    report["figures"]["conditional"] = figures.save_sample_grid(
        grid.detach().float().cpu(), figure, image_shape=splits.image_shape,
        ncols=FIGURE_COLUMNS).name
    try:
        clf = clf_mod.load_or_train_classifier(splits, cache_dir=cache_dir, progress=progress)
    except GMMNError as exc:
        report["conditional_accuracy"] = report["fd_per_class"] = {"skipped": str(exc)}
        return
    test_pred = clf_mod.predict(clf, splits.test)
    test_feats = clf_mod.features(clf, splits.test)
    train_feats = clf_mod.features(clf, splits.train)
    acc, ref_acc, fd, ref_fd, test_rows = {}, {}, {}, {}, {}
    hits = 0
    for k in range(classes):
        x = sampler.sample(per_class, seed=seed + _SEED_STRIDE * (k + 1), label=k)
        x = x.detach().reshape(per_class, -1).float().cpu()
        right = int((clf_mod.predict(clf, x) == k).sum())
        hits += right
        acc[str(k)] = right / per_class
        in_test = splits.test_labels == k
        test_rows[str(k)] = int(in_test.sum())
        if not bool(in_test.any()):
            continue  # a class the test split lacks has no reference
        ref_acc[str(k)] = float((test_pred[in_test] == k).double().mean())
        if int(in_test.sum()) < 2:
            continue
        real = test_feats[in_test]
        fd[str(k)] = metrics.frechet_distance(clf_mod.features(clf, x), real)
        train_k = train_feats[splits.train_labels == k][:per_class]
        if len(train_k) >= 2:
            ref_fd[str(k)] = metrics.frechet_distance(train_k, real)
    report["conditional_accuracy"] = {
        "overall": hits / (per_class * classes), "per_class": acc,
        "samples_per_class": per_class,
        "reference": {"what": "the classifier on test images", "overall": clf.test_accuracy,
                      "per_class": ref_acc}}
    report["fd_per_class"] = {
        "mean": _mean(fd), "per_class": fd,
        "reference": {"what": "training images of the class in place of samples",
                      "mean": _mean(ref_fd), "per_class": ref_fd},
        "sizes": {"samples_per_class": per_class, "test_rows": test_rows,
                  "too_small": any(v < MIN_CLASS_ROWS for v in test_rows.values())}}


def _mean(values: dict) -> float | None:
    return sum(values.values()) / len(values) if values else None
