r"""Evaluation of samples of a table (rows without an image shape) against held-out rows.

Every statistic is computed on features standardised by the TRAINING split's per-feature
mean and sd (population sd; a constant feature gets sd 1), so an error of 0.1 means a tenth
of that feature's spread whatever its units. For samples S and held-out test rows T:

- marginals: per feature j, mean error mean(S_j) - mean(T_j), sd ratio sd(S_j) / sd(T_j)
  and quantile errors q_p(S_j) - q_p(T_j) for p in ``QUANTILES`` (numpy's linear rule);
  summarised by the median over features of |error| and the worst feature.
- correlation: C(S) and C(T) the Pearson correlation matrices; mean and max over j != k of
  |C(S)_jk - C(T)_jk|. A constant feature correlates 0 with every other one.
- mmd-test: :func:`gmmn.mmd.two_sample_test` (unbiased MMD^2, Gaussian kernel, permutation
  p-value) of S against T, as many samples as test rows.
- c2st: classifier two-sample test (Lopez-Paz & Oquab 2017): classifiers learn to tell S
  (label 1) from T (label 0); their k-fold out-of-fold accuracy is 0.5 when the two cannot
  be told apart. p-value: one-sided binomial P(X >= correct | n, 1/2).
- nn: median distance of samples to their nearest training row, a memorisation check.

Each statistic comes with its real-data reference: the same procedure with training rows in
place of samples (as many as the samples, where the training split has that many), against
the same test rows. Comparisons whose test side has fewer than ``MIN_TRUSTED_ROWS`` rows are
flagged ``too_small``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gmmn import mmd
from gmmn.errors import DataError
from gmmn.evaluate.metrics import nearest_neighbours

TABULAR_METRICS: tuple[str, ...] = ("marginals", "correlation", "mmd-test", "c2st", "nn")
QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
# Below 50 held-out rows the C2ST accuracy's standard error exceeds 0.05 (sqrt(.25 / 100))
# and the 5% and 95% quantiles of the test side rest on two or three rows each: differences
# between model and reference of that size are noise.
MIN_TRUSTED_ROWS = 50
# Test rows (and as many samples) the two tests use at most: 2000 + 2000 rows keep the
# permutation test's pooled kernel matrix (128 MB) in memory and the classifiers at seconds.
TEST_MAX_ROWS = 2000
MMD_PERMUTATIONS = 1000  # p-values resolve to 0.001
C2ST_FOLDS = 5
NN_ROWS = 1000  # samples and test rows measured against the whole training split


@dataclass(frozen=True)
class Standardiser:
    """z = (x - mean) / sd per feature, mean and sd of the training split (float64)."""

    mean: np.ndarray  # (D,)
    sd: np.ndarray  # (D,), 1 where the training split is constant
    constant: tuple[int, ...] = ()  # the constant features

    @classmethod
    def fit(cls, train) -> Standardiser:
        x = as_rows(train, what="the training split")
        sd = x.std(axis=0)
        # A constant feature would divide by zero; sd 1 keeps it at 0 after centring, and
        # any spread the samples give it then shows up in the data's own units.
        flat = sd <= 1e-12 * np.maximum(1.0, np.abs(x.mean(axis=0)))
        return cls(x.mean(axis=0), np.where(flat, 1.0, sd),
                   tuple(int(j) for j in np.flatnonzero(flat)))

    def __call__(self, x, *, what: str = "rows") -> np.ndarray:
        x = as_rows(x, what=what)
        if x.shape[1] != self.mean.shape[0]:
            raise DataError(f"{what} have {x.shape[1]} columns but the training split has "
                            f"{self.mean.shape[0]}; evaluate samples of the model trained on "
                            "this dataset")
        return (x - self.mean) / self.sd


def as_rows(x, *, what: str) -> np.ndarray:
    """x (a torch tensor or array of shape (n, D)) as a float64 numpy matrix, checked."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise DataError(f"{what} must be a non-empty (rows, features) matrix, got shape "
                        f"{x.shape}; pass one row per example")
    if not np.isfinite(x).all():
        raise DataError(f"{what} contain NaN or infinite values; check the generator or data")
    return x


def _summary(err: np.ndarray) -> dict:
    a = np.abs(err)
    return {"median_abs": float(np.median(a)), "max_abs": float(a.max()),
            "worst_feature": int(np.unravel_index(a.argmax(), a.shape)[-1])}


def marginal_errors(samples: np.ndarray, data: np.ndarray, *,
                    quantiles: Sequence[float] = QUANTILES) -> dict:
    """Per-feature mean error, sd ratio and quantile errors of ``samples`` against ``data``.

    Both (n, D) in standardised units. ``sd_ratio`` is None where ``data`` is constant.
    """
    mean_err = samples.mean(0) - data.mean(0)  # (D,)
    sd_s, sd_d = samples.std(0), data.std(0)
    ratio = np.divide(sd_s, sd_d, out=np.full_like(sd_s, np.nan), where=sd_d > 0)
    q = np.asarray(quantiles, dtype=np.float64)
    q_err = np.quantile(samples, q, axis=0) - np.quantile(data, q, axis=0)  # (Q, D)
    finite = ratio[np.isfinite(ratio)]
    log_r = np.abs(np.log(np.where(finite > 0, finite, np.nan)))
    sd_summary = {"median": float(np.median(finite)) if finite.size else None,
                  "min": float(finite.min()) if finite.size else None,
                  "max": float(finite.max()) if finite.size else None,
                  # the feature whose sd ratio is farthest from 1 (in log terms)
                  "worst_feature": (int(np.flatnonzero(np.isfinite(ratio))[np.nanargmax(log_r)])
                                    if finite.size and np.isfinite(log_r).any() else None)}
    return {
        "mean_error": mean_err.tolist(),
        "sd_ratio": [None if not np.isfinite(r) else float(r) for r in ratio],
        "quantile_error": {f"{100 * p:g}%": row.tolist() for p, row in zip(q, q_err, strict=True)},
        "summary": {"mean_error": _summary(mean_err), "sd_ratio": sd_summary,
                    "quantile_error": _summary(q_err)},
    }


def _correlation(x: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix; a constant column correlates 0 with the others."""
    c = x - x.mean(0)
    sd = np.sqrt((c * c).mean(0))
    z = np.divide(c, sd, out=np.zeros_like(c), where=sd > 0)
    r = z.T @ z / x.shape[0]
    np.fill_diagonal(r, 1.0)
    return np.clip(r, -1.0, 1.0)


def correlation_error(samples: np.ndarray, data: np.ndarray) -> dict:
    """Mean and max |C(samples) - C(data)| over the off-diagonal entries."""
    d = samples.shape[1]
    if d < 2:
        return {"mean_abs": None, "max_abs": None, "worst_pair": None,
                "note": "one feature: there are no correlations to compare"}
    diff = np.abs(_correlation(samples) - _correlation(data))  # (D, D)
    iu = np.triu_indices(d, k=1)
    off = diff[iu]
    worst = int(off.argmax())
    return {"mean_abs": float(off.mean()), "max_abs": float(off.max()),
            "worst_pair": [int(iu[0][worst]), int(iu[1][worst])]}


def mmd_test(samples: np.ndarray, data: np.ndarray, *, sigma: float,
             permutations: int = MMD_PERMUTATIONS, seed: int = 0) -> dict:
    """Permutation MMD two-sample test of ``samples`` against ``data`` at bandwidth ``sigma``."""
    res = mmd.two_sample_test(torch.from_numpy(samples), torch.from_numpy(data),
                              sigmas=[sigma], permutations=permutations, seed=seed)
    return {"statistic": res.statistic, "p_value": res.p_value, "sigma": float(sigma),
            "permutations": res.permutations, "estimator": res.estimator}


def _logistic(seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=2000)


def _boosted_trees(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=100, random_state=seed)


# Two classifiers, each reported on its own: logistic regression sees differences of the
# means (and of linear combinations of features) with few rows and no tuning; gradient-boosted
# trees also see differences of spread, correlation and shape. Trees rather than a small MLP:
# they also tell a bimodal feature from a unimodal one of equal mean and sd, which the MLP
# did not, in a fraction of its time (the comparison is in docs/evaluation.md).
C2ST_CLASSIFIERS: dict[str, Callable[[int], object]] = {"logistic": _logistic,
                                                         "boosted_trees": _boosted_trees}


def classifier_test(samples: np.ndarray, data: np.ndarray, *, seed: int = 0,
                    folds: int = C2ST_FOLDS) -> dict:
    """Out-of-fold accuracy of each classifier in ``C2ST_CLASSIFIERS`` telling the two apart.

    Stratified ``folds``-fold cross-validation: every row is predicted once, by a classifier
    that did not see it. ``stderr`` = sqrt(acc (1 - acc) / n); ``p_value`` = P(X >= correct)
    for X ~ Binomial(n, 1/2), the chance of that accuracy if the sets were alike.
    """
    from scipy.stats import binomtest
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    k = min(folds, samples.shape[0], data.shape[0])
    if k < 2:
        return {"skipped": f"{min(samples.shape[0], data.shape[0])} row(s) on one side; the "
                           "classifier test needs at least 2 of each"}
    x = np.concatenate([samples, data])
    y = np.r_[np.ones(samples.shape[0], dtype=int), np.zeros(data.shape[0], dtype=int)]
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    out = {}
    for name, make in C2ST_CLASSIFIERS.items():
        with warnings.catch_warnings():
            # A logistic fit stopped at max_iter still classifies; the accuracy is what counts.
            warnings.simplefilter("ignore", ConvergenceWarning)
            pred = cross_val_predict(make(seed), x, y, cv=cv)
        correct = int((pred == y).sum())
        acc = correct / y.shape[0]
        out[name] = {"accuracy": acc, "stderr": math.sqrt(acc * (1 - acc) / y.shape[0]),
                     "p_value": float(binomtest(correct, y.shape[0], 0.5,
                                                alternative="greater").pvalue),
                     "folds": k}
    return out


def parzen_sigmas(train_std: np.ndarray, *, seed: int = 0) -> tuple[float, ...]:
    """The Parzen bandwidth grid in standardised units: the median pairwise distance of the
    (standardised) training rows times 21 factors from 0.01 to 1, evenly spaced in log."""
    x = torch.from_numpy(np.ascontiguousarray(train_std))
    half = x.shape[0] // 2
    med = (mmd.median_heuristic(x[:half], x[half:], seed=seed) if half >= 1 else 1.0)
    return tuple(float(med * f) for f in np.geomspace(0.01, 1.0, 21))


def _sizes(samples: int, test: int, train: int) -> dict:
    return {"samples": samples, "test_rows": test, "training_rows": train,
            "too_small": test < MIN_TRUSTED_ROWS}


def _pick(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random rows of x (all of them, shuffled, when n >= len(x))."""
    return x[rng.permutation(x.shape[0])[:n]]


def rows_for_tests(n_test: int) -> int:
    """Samples the two tests use: as many as test rows, at most ``TEST_MAX_ROWS``."""
    return min(n_test, TEST_MAX_ROWS)


def evaluate_tabular(samples, *, train, test, metrics: Sequence[str] = TABULAR_METRICS,
                     n_samples: int, seed: int = 0) -> dict:
    """Report entries for ``metrics`` (names of ``TABULAR_METRICS``), each with its reference.

    ``samples`` in the data's own units, at least ``max(n_samples, rows_for_tests(len(test)))``
    rows: the first ``n_samples`` are scored by marginals, correlation and nn, the first
    ``rows_for_tests`` by the two tests. Returns ``{name: {..., "reference": {...},
    "sizes": {...}}}`` plus ``"tabular"``: how the features were standardised.
    """
    std = Standardiser.fit(train)
    tr, te = std(train, what="the training split"), std(test, what="the test split")
    s = std(samples, what="the samples")
    rng = np.random.default_rng(seed)
    out: dict = {"tabular": {"standardised_by": "training split mean and sd",
                             "constant_features": list(std.constant), "n_features": tr.shape[1],
                             "min_trusted_rows": MIN_TRUSTED_ROWS, "quantiles": list(QUANTILES)}}
    n_m = min(n_samples, s.shape[0])
    ref_m = _pick(tr, n_m, rng)
    what = f"{ref_m.shape[0]} training rows in place of samples"
    if "marginals" in metrics:
        out["marginals"] = {**marginal_errors(s[:n_m], te), "reference": {
            "what": what, **marginal_errors(ref_m, te)},
            "sizes": _sizes(n_m, te.shape[0], ref_m.shape[0])}
    if "correlation" in metrics:
        out["correlation"] = {**correlation_error(s[:n_m], te), "reference": {
            "what": what, **correlation_error(ref_m, te)},
            "sizes": _sizes(n_m, te.shape[0], ref_m.shape[0])}
    n_t = rows_for_tests(te.shape[0])
    te_t = _pick(te, n_t, rng) if n_t < te.shape[0] else te
    ref_t = _pick(tr, n_t, rng)
    what_t = f"{ref_t.shape[0]} training rows in place of samples"
    sizes_t = _sizes(min(n_t, s.shape[0]), n_t, ref_t.shape[0])
    if "mmd-test" in metrics and n_t < 2:
        out["mmd-test"] = {"skipped": f"{n_t} test row(s); the MMD test needs at least 2",
                           "sizes": sizes_t}
    elif "mmd-test" in metrics:
        # One bandwidth for model and reference, from real rows only: the two statistics are
        # on one scale, and samples far from the data cannot widen the kernel to hide.
        sigma = mmd.median_heuristic(torch.from_numpy(tr), torch.from_numpy(te), seed=seed)
        out["mmd-test"] = {**mmd_test(s[:n_t], te_t, sigma=sigma, seed=seed), "reference": {
            "what": what_t, **mmd_test(ref_t, te_t, sigma=sigma, seed=seed)},
            "sizes": sizes_t}
    if "c2st" in metrics:
        out["c2st"] = {**classifier_test(s[:n_t], te_t, seed=seed), "reference": {
            "what": what_t, **classifier_test(ref_t, te_t, seed=seed)}, "sizes": sizes_t}
    if "nn" in metrics:
        n_nn = min(NN_ROWS, n_m)
        d_s = nearest_neighbours(torch.from_numpy(s[:n_nn]), torch.from_numpy(tr))[0][:, 0]
        d_t = nearest_neighbours(torch.from_numpy(te[:NN_ROWS]), torch.from_numpy(tr))[0][:, 0]
        out["nn"] = {"median_distance_to_train": float(d_s.median()),
                     "reference": {"what": "test rows", "median": float(d_t.median())},
                     "sizes": _sizes(n_nn, min(NN_ROWS, te.shape[0]), tr.shape[0])}
    return out


def tabular_parzen(sample_fn: Callable[..., object], splits, *, n_samples: int, seed: int,
                   variant: str, validation_rows: int, progress=None,
                   reference_progress=None) -> dict:
    """The Parzen protocol on standardised features, its bandwidths from the data's scale.

    The pixel grid (0.10-0.29) means nothing in a table's units, so the grid is
    :func:`parzen_sigmas` of the standardised training rows. Log-likelihoods are those of the
    standardised features; adding ``log_jacobian`` = -sum_j log sd_j gives nats in the
    data's own units. The reference scores ``n_samples`` random training rows (or all).
    """
    from gmmn.evaluate.protocol import parzen_protocol

    std = Standardiser.fit(splits.train)

    def z(x) -> torch.Tensor:
        return torch.from_numpy(std(x)).float()

    zs = dataclasses.replace(splits, train=z(splits.train), validation=z(splits.validation),
                             test=z(splits.test), mean=None, std=None,
                             validation_folds=None, test_folds=None)
    sigmas = parzen_sigmas(std(splits.train), seed=seed)  # float64, not the float32 copy
    res = parzen_protocol(lambda n, *, seed: z(sample_fn(n, seed=seed)), zs,
                          n_samples=n_samples, sigmas=sigmas, seed=seed, variant=variant,
                          progress=progress)
    n_ref = min(n_samples, zs.train.shape[0])

    def train_rows(n: int, *, seed: int) -> torch.Tensor:
        return zs.train[torch.randperm(zs.train.shape[0],
                                       generator=torch.Generator().manual_seed(seed))[:n]]

    ref = parzen_protocol(train_rows, zs, n_samples=n_ref, sigmas=sigmas, seed=seed,
                          variant=variant, progress=reference_progress)
    return {**res.to_dict(), "reference": {
        "what": f"{n_ref} training rows as samples", "mean": ref.mean, "stderr": ref.stderr,
        "sigma": ref.sigma}, "units": "standardised features (training mean and sd)",
        "log_jacobian": float(-np.log(std.sd).sum()),
        "at_grid_edge": res.sigma in (sigmas[0], sigmas[-1]),
        "sizes": {"samples": n_samples, "validation_rows": validation_rows,
                  "test_rows": res.n_test, "training_rows": n_ref,
                  "too_small": res.n_test < MIN_TRUSTED_ROWS}}


def _f(v, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def _marginal_cells(m: dict) -> list[str]:
    s = m["summary"]
    me, sd, qe = s["mean_error"], s["sd_ratio"], s["quantile_error"]
    return [f"{me['median_abs']:.3f} / {me['max_abs']:.3f} (feature {me['worst_feature']})",
            f"{_f(sd['median'])} [{_f(sd['min'])}, {_f(sd['max'])}]",
            f"{qe['median_abs']:.3f} / {qe['max_abs']:.3f} (feature {qe['worst_feature']})"]


def markdown_rows(report: dict) -> list[tuple[str, str, str]]:
    """(metric, model, reference) rows of report.md for the tabular entries of ``report``."""
    rows = []
    if "marginals" in report:
        m, r = _marginal_cells(report["marginals"]), _marginal_cells(
            report["marginals"]["reference"])
        names = ("mean error, median / max over features (sd units, 0 ideal)",
                 "sd ratio, median [min, max] (1 ideal)",
                 "quantile error 5-95%, median / max (sd units, 0 ideal)")
        rows += list(zip(names, m, r, strict=True))
    if "correlation" in report and report["correlation"]["mean_abs"] is not None:
        c, r = report["correlation"], report["correlation"]["reference"]
        rows.append(("correlation error, mean / max off-diagonal (0 ideal)",
                     f"{c['mean_abs']:.3f} / {c['max_abs']:.3f} (features {c['worst_pair']})",
                     f"{r['mean_abs']:.3f} / {r['max_abs']:.3f}"))
    if "mmd-test" in report and "skipped" not in report["mmd-test"]:
        t, r = report["mmd-test"], report["mmd-test"]["reference"]
        rows.append((f"MMD test: MMD^2 (p-value), sigma {t['sigma']:.3g}",
                     f"{t['statistic']:.4g} (p = {t['p_value']:.3g})",
                     f"{r['statistic']:.4g} (p = {r['p_value']:.3g})"))
    if "c2st" in report and "skipped" not in report["c2st"]:
        c, r = report["c2st"], report["c2st"]["reference"]
        for name in C2ST_CLASSIFIERS:
            if name in c:
                rows.append((f"C2ST accuracy, {name.replace('_', ' ')} (0.5 ideal)",
                             f"{c[name]['accuracy']:.3f} +- {c[name]['stderr']:.3f} "
                             f"(p = {c[name]['p_value']:.3g})",
                             f"{r[name]['accuracy']:.3f} +- {r[name]['stderr']:.3f} "
                             f"(p = {r[name]['p_value']:.3g})"))
    if "nn" in report:
        rows.append(("median distance to nearest training row (sd units)",
                     f"{report['nn']['median_distance_to_train']:.4g}",
                     f"{report['nn']['reference']['median']:.4g} (test rows)"))
    return rows
