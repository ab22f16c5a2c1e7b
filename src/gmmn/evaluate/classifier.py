"""A small per-dataset classifier whose hidden layer gives features for FD, KID and coverage.

Inception features mean nothing for 28x28 grey images, so each dataset gets its own MLP
(D -> 256 -> 128 -> classes, ReLU) trained for a few epochs on the train split. Its test
accuracy goes into the report: features of a classifier that cannot tell classes apart make
FD and KID meaningless, and the accuracy says how far to trust them.

Trained weights are cached at ``<cache>/classifiers/<name>-<hash>.pt`` where ``<cache>`` is
``$GMMN_DATA`` or ``~/.cache/gmmn`` and the hash covers the training rows, labels and
settings, so a changed dataset or recipe never reuses stale weights. The cache is loaded with
``torch.load(weights_only=True)``; a corrupt file is retrained, not trusted.
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from gmmn.data import Splits, cache_root
from gmmn.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierConfig:
    hidden: int = 256
    features: int = 128  # the feature width FD and KID see
    epochs: int = 5  # enough for ~90% on Fashion-MNIST; more buys little for features
    batch_size: int = 128
    lr: float = 1e-3  # Adam's default; the net is small and the data normalised to [0, 1]
    seed: int = 0


class FeatureMLP(nn.Module):
    """MLP classifier; :meth:`features` returns the last hidden layer's activations."""

    def __init__(self, dim: int, n_classes: int, *, hidden: int, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(),
                                  nn.Linear(hidden, features), nn.ReLU())
        self.head = nn.Linear(features, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class Classifier:
    model: FeatureMLP
    n_classes: int
    test_accuracy: float
    path: pathlib.Path | None


def _key(splits: Splits, cfg: ClassifierConfig) -> str:
    h = hashlib.sha256()
    for t in (splits.train, splits.train_labels):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(repr(sorted(asdict(cfg).items())).encode())
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in splits.name)
    return f"{safe}-{h.hexdigest()[:16]}"


@torch.no_grad()
def _apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
           batch: int = 4096) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch].float()) for i in range(0, x.shape[0], batch)])


def predict(clf: Classifier, x: torch.Tensor) -> torch.Tensor:
    """Predicted class of each row."""
    clf.model.eval()
    return _apply(clf.model, x).argmax(1)


def features(clf: Classifier, x: torch.Tensor) -> torch.Tensor:
    """(n, features) float64 hidden-layer activations."""
    clf.model.eval()
    return _apply(clf.model.features, x).double()


def train_classifier(x: torch.Tensor, y: torch.Tensor, *, n_classes: int,
                     config: ClassifierConfig = ClassifierConfig(),
                     progress: Callable[[int, int], None] | None = None) -> FeatureMLP:
    """Adam on cross-entropy for ``config.epochs`` epochs; ``progress(step, total)``."""
    g = torch.Generator().manual_seed(config.seed)  # the shuffles
    # nn.Linear draws its init from the global CPU generator and takes no other: seed that one
    # inside fork_rng, which puts the caller's state back afterwards, even on an exception. Only
    # the CPU generator (devices=[]): the model is built on the CPU, and torch.manual_seed would
    # also reseed every GPU's generator, which fork_rng(devices=[]) would not restore.
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(config.seed)
        model = FeatureMLP(x.shape[1], n_classes, hidden=config.hidden,
                           features=config.features)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = -(-x.shape[0] // config.batch_size)
    model.train()
    for epoch in range(config.epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for s in range(steps):
            idx = perm[s * config.batch_size:(s + 1) * config.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx].float()), y[idx].long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            if progress is not None:
                progress(epoch * steps + s + 1, config.epochs * steps)
    return model


def load_or_train_classifier(splits: Splits, *, cache_dir: pathlib.Path | str | None = None,
                             config: ClassifierConfig = ClassifierConfig(),
                             progress: Callable[[int, int], None] | None = None) -> Classifier:
    """The dataset's feature classifier: from the cache if present, else trained and cached."""
    if splits.train_labels is None or splits.test_labels is None:
        raise DataError(f"dataset {splits.name!r} has no class labels; the classifier metrics "
                        "(fd, kid, coverage) need a labelled dataset")
    n_classes = int(max(splits.train_labels.max(), splits.test_labels.max())) + 1
    root = pathlib.Path(cache_dir) if cache_dir is not None else cache_root()
    path = root / "classifiers" / f"{_key(splits, config)}.pt"
    if path.exists():
        try:
            # Its random init is replaced by the cached weights; fork_rng keeps that init from
            # advancing the caller's global generator.
            with torch.random.fork_rng(devices=[]):
                make = FeatureMLP(splits.dim, n_classes, hidden=config.hidden,
                                  features=config.features)
            blob = torch.load(path, map_location="cpu", weights_only=True)
            make.load_state_dict(blob["state_dict"])
            log.info("loaded classifier %s", path)
            return Classifier(make, n_classes, float(blob["test_accuracy"]), path)
        except Exception as exc:  # a truncated or foreign file: retrain rather than trust it
            log.warning("classifier cache %s is unusable (%s); retraining", path, exc)
    model = train_classifier(splits.train, splits.train_labels, n_classes=n_classes,
                             config=config, progress=progress)
    clf = Classifier(model, n_classes, 0.0, path)
    clf.test_accuracy = float((predict(clf, splits.test) == splits.test_labels).double().mean())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"state_dict": model.state_dict(), "test_accuracy": clf.test_accuracy}, tmp)
        tmp.replace(path)  # atomic: a crash never leaves a half-written cache entry
    except OSError as exc:
        log.warning("could not cache the classifier at %s (%s)", path, exc)
        clf.path = None
    log.info("trained classifier: test accuracy %.4f", clf.test_accuracy)
    return clf
