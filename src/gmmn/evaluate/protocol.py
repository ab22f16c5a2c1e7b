"""The paper's Parzen-window protocol as one call (and the GAN paper's variant).

``variant="gmmn"`` (Li et al. 2015, the paper's table):
  * bandwidth grid 0.10, 0.11, ..., 0.29 (MNIST-like data) or 0.05, ..., 0.24 (TFD);
  * the bandwidth with the best mean validation log-likelihood of ``n_samples`` samples;
  * the test score uses a FRESH set of ``n_samples`` samples;
  * +- = std of per-example log-likelihoods / sqrt(number of test examples);
  * TFD (``splits.validation_folds`` present): one bandwidth for all folds, chosen by the
    validation mean averaged over folds; score = mean of the fold means,
    +- = std of the fold means / sqrt(number of folds).

``variant="gan"`` (Goodfellow et al. 2014, ``parzen_ll.py`` of goodfeli/adversarial):
  * grid logspace(-1, 0, 10);
  * ONE sample set for both bandwidth selection and the test score, as that script does;
  * MNIST validation = the first 1000 of training images 50000-60000. Our MNIST-like splits
    hold out a random 5000 of the training images as ``splits.validation``; those play the
    role of images 50000-60000 (held-out training images), and their first 1000 are used;
  * TFD: fold 0 only (that script's default), its whole validation set, its test set.

Standard deviations are population ones (ddof = 0), as numpy's default in both scripts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch

from gmmn.data import Splits
from gmmn.errors import ConfigError, DataError
from gmmn.parzen import GAN_SIGMAS, Progress, _mean_stderr, parzen_log_densities

MNIST_SIGMAS: tuple[float, ...] = tuple(round(0.10 + 0.01 * i, 2) for i in range(20))
TFD_SIGMAS: tuple[float, ...] = tuple(round(0.05 + 0.01 * i, 2) for i in range(20))
# The GAN script's --limit_size: validation rows used for the bandwidth.
GAN_VALIDATION_ROWS = 1000
# The samples scored on the test set are a second draw (seed + 1; the bandwidth's samples use
# seed): the bandwidth is never chosen on the very samples it then scores.
FRESH_SEED_OFFSET = 1

VARIANTS = ("gmmn", "gan")

# sample_fn(n, seed=...) -> (n, D) tensor, e.g. ``run.sample`` of a trained run.
SampleFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class ParzenResult:
    """A Parzen score in nats with everything needed to reproduce or plot it."""

    mean: float
    stderr: float
    sigma: float
    sigmas: tuple[float, ...]
    validation_curve: tuple[float, ...]  # mean validation log-likelihood per bandwidth
    n_samples: int
    variant: str
    n_test: int  # test examples (summed over folds for TFD)
    fold_means: tuple[float, ...] | None = None  # TFD: per-fold test means

    def to_dict(self) -> dict:
        return asdict(self)


def _draw(sample_fn: SampleFn, n: int, *, seed: int, dim: int) -> torch.Tensor:
    x = torch.as_tensor(sample_fn(n, seed=seed)).detach()
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x
    if x.ndim != 2 or x.shape != (n, dim):
        raise DataError(f"the generator returned samples of shape {tuple(x.shape)} for {n} "
                        f"requested; expected ({n}, {dim}) to match the dataset")
    return x


class _Rows:
    """Turns per-call (done, total) progress into progress over the whole protocol."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.offset = progress, total, 0

    def run(self, samples, data, sigmas, batch_size) -> torch.Tensor:
        cb = None
        if self.progress is not None:
            offset = self.offset

            def cb(done: int, _total: int) -> None:
                self.progress(offset + done, self.total)
        out = parzen_log_densities(samples, data, sigmas=sigmas, batch_size=batch_size,
                                   progress=cb)
        self.offset += data.shape[0]
        return out


def _best(sigmas: Sequence[float], curve: torch.Tensor) -> float:
    return float(sigmas[int(torch.argmax(curve))])  # the first of equal maxima


def parzen_protocol(sample_fn: SampleFn, splits: Splits, *, n_samples: int = 10000,
                    sigmas: Sequence[float] | None = None, seed: int = 0,
                    variant: str = "gmmn", batch_size: int | None = None,
                    progress: Progress | None = None) -> ParzenResult:
    """Run the Parzen protocol (see the module docstring) and return its score in nats.

    ``sample_fn(n, seed=k)`` must return ``n`` samples as an (n, D) tensor; the validation set
    uses seed ``seed``, the fresh test set ``seed + 1``. ``progress(done, total)`` counts
    data rows over the whole protocol.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown Parzen variant {variant!r}; choose one of {VARIANTS}")
    if n_samples < 1:
        raise ConfigError(f"n_samples must be at least 1, got {n_samples}")
    tfd = splits.validation_folds is not None and splits.test_folds is not None
    if sigmas is None:
        sigmas = GAN_SIGMAS if variant == "gan" else TFD_SIGMAS if tfd else MNIST_SIGMAS
    sigmas = tuple(float(s) for s in sigmas)
    dim = splits.dim
    if variant == "gan":
        valid = splits.validation_folds[0] if tfd else splits.validation[:GAN_VALIDATION_ROWS]
        test = splits.test_folds[0] if tfd else splits.test
        rows = _Rows(progress, valid.shape[0] + test.shape[0])
        samples = _draw(sample_fn, n_samples, seed=seed, dim=dim)
        curve = rows.run(samples, valid, sigmas, batch_size).mean(0)
        sigma = _best(sigmas, curve)
        mean, stderr = _mean_stderr(rows.run(samples, test, [sigma], batch_size)[:, 0])
        return ParzenResult(mean, stderr, sigma, sigmas, tuple(curve.tolist()), n_samples,
                            variant, int(test.shape[0]))
    valids = list(splits.validation_folds) if tfd else [splits.validation]
    tests = list(splits.test_folds) if tfd else [splits.test]
    if len(valids) != len(tests):
        raise DataError(f"dataset {splits.name!r} has {len(valids)} validation folds but "
                        f"{len(tests)} test folds; its files are inconsistent")
    rows = _Rows(progress, sum(v.shape[0] for v in valids) + sum(t.shape[0] for t in tests))
    samples = _draw(sample_fn, n_samples, seed=seed, dim=dim)
    # One bandwidth for all folds: the best validation mean averaged over the folds.
    curve = torch.stack([rows.run(samples, v, sigmas, batch_size).mean(0) for v in valids])
    curve = curve.mean(0)
    sigma = _best(sigmas, curve)
    del samples
    fresh = _draw(sample_fn, n_samples, seed=seed + FRESH_SEED_OFFSET, dim=dim)
    per_fold = [rows.run(fresh, t, [sigma], batch_size)[:, 0] for t in tests]
    n_test = sum(int(t.shape[0]) for t in tests)
    if not tfd:
        mean, stderr = _mean_stderr(per_fold[0])
        return ParzenResult(mean, stderr, sigma, sigmas, tuple(curve.tolist()), n_samples,
                            variant, n_test)
    fold_means = torch.stack([f.mean() for f in per_fold])
    stderr = float(fold_means.std(correction=0) / math.sqrt(len(per_fold)))
    return ParzenResult(float(fold_means.mean()), stderr, sigma, sigmas, tuple(curve.tolist()),
                        n_samples, variant, n_test, tuple(fold_means.tolist()))


@dataclass(frozen=True)
class ValidationChoice:
    """Which of several samplers the validation data prefer, and by how much.

    ``scores`` maps each candidate's label to its best mean validation log-likelihood over
    the bandwidth grid and that bandwidth; the test set plays no part in the choice.
    """

    best: float | str
    scores: dict

    def to_dict(self) -> dict:
        return {"chosen": self.best, "validation": self.scores}


def choose_on_validation(candidates: Mapping[float | str, SampleFn], splits: Splits, *,
                         n_samples: int = 10000, sigmas: Sequence[float] | None = None,
                         seed: int = 0, batch_size: int | None = None,
                         progress: Progress | None = None) -> ValidationChoice:
    """Pick the sampler whose ``n_samples`` samples (drawn with ``seed``) give the best
    validation Parzen log-likelihood at their own best bandwidth of the ``gmmn`` grid.

    This is how a sampling setting the source papers leave open (the stacked CAE's chain
    noise) is set without looking at test data: the same rule the protocol applies to the
    Parzen bandwidth, over one more dimension. TFD averages the curve over its folds.
    """
    if not candidates:
        raise ConfigError("choose_on_validation needs at least one candidate sampler")
    tfd = splits.validation_folds is not None
    if sigmas is None:
        sigmas = TFD_SIGMAS if tfd else MNIST_SIGMAS
    sigmas = tuple(float(s) for s in sigmas)
    valids = list(splits.validation_folds) if tfd else [splits.validation]
    rows = _Rows(progress, len(candidates) * sum(v.shape[0] for v in valids))
    scores: dict = {}
    for label, sample_fn in candidates.items():
        samples = _draw(sample_fn, n_samples, seed=seed, dim=splits.dim)
        curve = torch.stack([rows.run(samples, v, sigmas, batch_size).mean(0)
                             for v in valids]).mean(0)
        scores[label] = {"validation_ll": float(curve.max()), "sigma": _best(sigmas, curve)}
    best = max(scores, key=lambda k: scores[k]["validation_ll"])  # first of equal maxima
    return ValidationChoice(best, scores)
