"""Datasets as train / validation / test splits (placeholder: digits only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gmmn.errors import DataError


@dataclass(frozen=True)
class Splits:
    """A dataset as float32 (N, D) tensors; image data lies in [0, 1]."""

    name: str
    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None
    validation_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    image_shape: tuple[int, int] | None
    source: str  # where the files were found (path or package), for `gmmn data info`
    # True when every value lies in [0, 1] (image data): the generator ends in a sigmoid.
    # False for standardised or unbounded data: the generator's output layer is linear.
    unit_interval: bool = True
    # TFD only: the per-fold validation and test sets of the paper's protocol (else None).
    validation_folds: tuple[torch.Tensor, ...] | None = None
    test_folds: tuple[torch.Tensor, ...] | None = None

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


def load_dataset(name_or_path: str, *, data_dir=None, seed: int = 0) -> Splits:
    if name_or_path != "digits":
        raise DataError(f"unknown dataset {name_or_path!r}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = n_val = len(x) // 10
    te, va, tr = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    t = torch.from_numpy
    return Splits("digits", t(x[tr]), t(x[va]), t(x[te]), t(y[tr]), t(y[va]), t(y[te]), (8, 8),
                  "scikit-learn")
