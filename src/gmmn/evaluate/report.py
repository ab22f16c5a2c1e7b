"""Evaluate a trained run: every metric beside its real-data reference, as JSON and Markdown.

Each number comes with the score real data gets under the same procedure (training images
in place of samples, scored against the test set), so a reader sees the ceiling next to the
model. The samples come from a :class:`gmmn.sampling.Sampler` (``load_run(R).sampler()``, or
a ``FunctionSampler`` around samples made elsewhere). A run whose checkpoint is not the end
of training (its ``status``) is marked unfinished in both reports.

Data without an image shape (a table) get the tabular metrics of :mod:`gmmn.evaluate.tabular`
(marginals, correlations, an MMD test, a classifier two-sample test) and its figures instead
of the image ones; Parzen, when asked for, then runs on standardised features with a
bandwidth grid from the data's scale. Every comparison records how many samples, test rows
and training rows it used (``sizes``), and flags those too small to trust.

The report folder changes as a whole: figures and reports are made in a temporary folder
inside it, the old report.json and report.md are removed, the figures moved in, and the new
reports moved in last. A kill at any moment leaves the old report with its figures, or new
figures with no report; never a report beside another evaluation's figures. One evaluation
at a time writes in a report folder: it holds an exclusive lock (``.evaluate.lock``) while it
runs, and only then removes the temporary folders that killed evaluations left; a second one
refuses in one line naming the first's pid (waiting would only replace the report the first
is about to write).

A folder holds several reports side by side: ``report_name="seed2"`` writes seed2.json and
seed2.md, and prefixes its figures (seed2-samples.png), so no report's files overwrite
another's (the default name, ``report``, keeps the plain figure names).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import torch

from gmmn.data import Splits
from gmmn.errors import CheckpointError, ConfigError, GMMNError, OutputError
from gmmn.evaluate import classifier as clf_mod
from gmmn.evaluate import conditional, figures, metrics, tabular
from gmmn.evaluate.markdown import (  # noqa: F401 (noise_choice_text: for gmmn.reproduce)
    METRICS,
    MIN_TRUSTED_IMAGES,
    TABULAR_ALLOWED,
    TABULAR_METRICS,
    noise_choice_text,
    render_markdown,
)
from gmmn.evaluate.metrics import PR_K
from gmmn.evaluate.protocol import FRESH_SEED_OFFSET, choose_on_validation, parzen_protocol
from gmmn.files import RunLock, prepare_folder, write_error
from gmmn.sampling import Sampler

log = logging.getLogger(__name__)

DEFAULT_REPORT = "report"  # report.json and report.md, figures under their plain names
# Every figure an evaluation may write, by its key in the report's "figures".
FIGURES = {"samples": "samples.png", "training_curves": "training_curves.png",
           "nn": "nearest_neighbours.png", "interpolation": "interpolations.png",
           "pairs": "pairs.png", "marginals": "marginals.png",
           "conditional": "conditional_samples.png"}
# Its own name, not a run's .lock: a run may be evaluated while it goes on training.
EVAL_LOCK = ".evaluate.lock"
_TMP_PREFIX = ".evaluating-"
_NEEDS_CLASSIFIER = {"fd", "kid", "coverage", "precision-recall"}
# progress(stage, done, total): the CLI turns each stage into a progress bar.
StageProgress = Callable[[str, int, int], None]

# Each random draw of an evaluation gets its own seed, the evaluation's seed plus an offset, so
# no two draws share a stream; offsets 0 and FRESH_SEED_OFFSET (1) are the Parzen protocol's.
SAMPLES_SEED_OFFSET = FRESH_SEED_OFFSET + 1  # (2) the samples every metric but Parzen scores
TRAIN_REF_SEED_OFFSET = 3  # the training rows that stand in for samples in the references
INTERPOLATION_SEED_OFFSET = 4  # the prior points that the interpolation figure walks between

GRID_SAMPLES = 100  # the sample figure: a 10 x 10 grid, variety at a glance
# Samples (and test rows) measured against the whole training split for the nearest-neighbour
# median: enough for a stable median, while the cost stays 1000 x (training rows) distances.
NN_ROWS = 1000
NN_FIGURE_ROWS = 10  # samples shown beside their nearest training images: one figure row each
INTERPOLATION_LINES = 8  # rows of the interpolation figure, each between two random prior points


def parse_metrics(spec: str | Sequence[str] | None, *,
                  tabular: bool | None = None) -> tuple[str, ...]:
    """Metric names from ``"parzen,fd"`` or a sequence; None means the default set.

    ``tabular``: True for a table, False for images, None when the data are not known yet
    (names are then only checked to exist, and None gives the image set).
    """
    if spec is None:
        return TABULAR_METRICS if tabular else METRICS
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [n for n in names if n not in METRICS and n not in TABULAR_ALLOWED]
    if bad or not names:
        raise ConfigError(f"unknown metric(s) {bad or spec!r}; choose from {','.join(METRICS)} "
                          f"(images) or {','.join(TABULAR_ALLOWED)} (tables)")
    allowed = None if tabular is None else TABULAR_ALLOWED if tabular else METRICS
    wrong = [n for n in names if allowed is not None and n not in allowed]
    if wrong:
        kind, other = ("a table (its rows have no image shape)", "images") if tabular else \
            ("images", "tables")
        raise ConfigError(f"metric(s) {','.join(wrong)} are for {other} but the data are "
                          f"{kind}; choose from {','.join(allowed)}")
    return tuple(dict.fromkeys(names))


def _rows(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n random rows of x (all of them when n >= len(x)), reproducibly."""
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    return x[perm[:n]]


def _stage(progress: StageProgress | None, name: str):
    return None if progress is None else (lambda done, total: progress(name, done, total))


def report_files(report_name: str = DEFAULT_REPORT) -> tuple[str, ...]:
    """The names of every file an evaluation under ``report_name`` may write in its folder."""
    _check_report_name(report_name)
    prefix = "" if report_name == DEFAULT_REPORT else report_name + "-"
    return (f"{report_name}.json", f"{report_name}.md", *(prefix + f for f in FIGURES.values()))


def _check_report_name(name: str) -> None:
    if not name or name != pathlib.Path(name).name or name == ".." or \
            name.startswith(_TMP_PREFIX):
        raise ConfigError(f"report name {name!r} must be a plain file name (no folder) not "
                          f"starting with {_TMP_PREFIX}")


def evaluate_run(sampler: Sampler, splits: Splits, *, out_dir: pathlib.Path | str,
                 metrics_to_run: Sequence[str] | None = None, n_samples: int = 10000,
                 seed: int = 0, status: dict | None = None,
                 parzen_variant: str = "gmmn", metrics_file: pathlib.Path | str | None = None,
                 cache_dir: pathlib.Path | str | None = None,
                 chain_noise_grid: Sequence[float] | None = None,
                 progress: StageProgress | None = None,
                 report_name: str = DEFAULT_REPORT) -> dict:
    """Compute the chosen metrics and figures of ``sampler``'s samples against ``splits``;
    write ``<report_name>.json`` and ``.md`` (by default report.json and report.md) and the
    figures in out_dir. ``status`` (:attr:`gmmn.api.Run.status`): whether the run finished,
    recorded in the report.

    ``metrics_to_run`` None: :data:`METRICS` for images, :data:`TABULAR_METRICS` for a table
    (``splits.image_shape`` None). For a table ``n_samples`` is also the number of samples
    that marginals, correlation and nn score; the two tests use as many as test rows.
    ``chain_noise_grid`` (stacked CAE runs): choose the chain's noise from these values by
    validation Parzen log-likelihood (:func:`choose_on_validation`) before anything else is
    sampled; the report records every value's score under ``chain.noise_selection``.
    ``report_name`` other than ``report`` prefixes the figures (``<report_name>-samples.png``)
    so that reports in one folder keep their own. A second evaluation in out_dir while one
    runs raises :class:`CheckpointError` (the folder is locked).
    """
    _check_report_name(report_name)
    # (the methods, looked up on the class: a run's properties would load its data)
    if not all(callable(getattr(type(sampler), m, None))
               for m in ("sample", "decode_prior", "with_settings")):
        raise ConfigError(f"evaluate_run takes a sampler, not a {type(sampler).__name__}: pass "
                          f"run.sampler() (and status=run.status) for a loaded run, or wrap "
                          f"a sample function in gmmn.sampling.FunctionSampler")
    final = pathlib.Path(out_dir)
    prepare_folder(final, what="the report folder")
    with _lock(final):
        for stale in final.glob(_TMP_PREFIX + "*"):  # left by an evaluation that was killed
            shutil.rmtree(stale, ignore_errors=True)
        try:
            out = pathlib.Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=final))
        except OSError as exc:
            raise write_error(exc, final / f"{report_name}.json") from exc
        try:
            report = _evaluate(sampler, splits, out, status=status, report_name=report_name,
                               metrics_to_run=metrics_to_run, n_samples=n_samples, seed=seed,
                               parzen_variant=parzen_variant, metrics_file=metrics_file,
                               cache_dir=cache_dir, chain_noise_grid=chain_noise_grid,
                               progress=progress)
            _commit(out, final, report_name)
        except OutputError as exc:
            # Name the report folder, not the temporary one the file was being made in.
            raise OutputError(str(exc).replace(str(out), str(final))) from exc.__cause__
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return report


def _lock(folder: pathlib.Path) -> RunLock:
    try:
        return RunLock(folder, name=EVAL_LOCK)
    except OSError as exc:  # e.g. no room left for the pid in the lock file
        raise write_error(exc, folder / EVAL_LOCK) from exc


def _commit(tmp: pathlib.Path, final: pathlib.Path, report_name: str) -> None:
    """Move what ``tmp`` holds into ``final``: old reports out, figures in, reports last."""
    reports = (f"{report_name}.json", f"{report_name}.md")
    try:
        for name in reports:
            (final / name).unlink(missing_ok=True)
        for f in sorted(tmp.iterdir(), key=lambda f: f.name in reports):
            os.replace(f, final / f.name)
    except OSError as exc:
        raise write_error(exc, final / reports[0]) from exc


def _evaluate(run: Sampler, splits: Splits, out: pathlib.Path, *, status, report_name,
              metrics_to_run, n_samples, seed, parzen_variant, metrics_file, cache_dir,
              chain_noise_grid, progress) -> dict:
    prefix = "" if report_name == DEFAULT_REPORT else report_name + "-"

    def figure(key: str) -> pathlib.Path:  # where the figure of that key is made
        return out / (prefix + FIGURES[key])

    shape = splits.image_shape
    chosen = parse_metrics(metrics_to_run, tabular=shape is None)
    report: dict[str, Any] = {"dataset": splits.name, "n_samples": n_samples, "seed": seed,
                              "metrics": list(chosen), "figures": {},
                              "data_kind": "image" if shape is not None else "tabular"}
    selection = None
    if chain_noise_grid:
        run, selection = _choose_chain_noise(run, splits, chain_noise_grid, n_samples=n_samples,
                                             seed=seed, progress=progress)
    if run.settings is not None:  # a baseline: its samples depend on how the chain ran
        report["chain"] = {**run.settings.to_dict(),
                           "starts": "training rows picked by the sampling seed"}
        if selection is not None:
            report["chain"]["noise_selection"] = selection
    if status is not None:
        report["run"] = status
    measure = _image_metrics if shape is not None else _tabular_metrics
    measure(report, run, splits, figure, chosen, n_samples=n_samples, seed=seed,
            parzen_variant=parzen_variant, metrics_file=metrics_file, cache_dir=cache_dir,
            progress=progress)
    md, js = out / f"{report_name}.md", out / f"{report_name}.json"
    try:
        md.write_text(render_markdown(report))
        js.write_text(json.dumps(report, indent=2, default=float) + "\n")
    except OSError as exc:
        raise write_error(exc, js) from exc
    return report


def _training_curves(report: dict, metrics_file, path: pathlib.Path) -> None:
    """The training-curve figure; a damaged metrics.jsonl skips it (a warning, and a line in
    the report) instead of the whole evaluation."""
    if metrics_file is None or not pathlib.Path(metrics_file).exists():
        return
    try:
        report["figures"]["training_curves"] = figures.save_training_curves(
            metrics_file, path).name
    except CheckpointError as exc:
        log.warning("no training-curve figure: %s", exc)
        report["training_curves"] = {"skipped": str(exc)}


def _draw(run: Sampler, n: int, seed: int) -> torch.Tensor:
    samples = torch.as_tensor(run.sample(n, seed=seed))
    return samples.detach().reshape(samples.shape[0], -1).float().cpu()


def _image_sizes(samples: int, test: int, train: int, **extra: int) -> dict:
    return {"samples": samples, **extra, "test_rows": test, "training_rows": train,
            "too_small": test < MIN_TRUSTED_IMAGES}


def _image_metrics(report: dict, run: Sampler, splits: Splits, figure: Callable,
                   chosen: Sequence[str], *, n_samples, seed, parzen_variant, metrics_file,
                   cache_dir, progress) -> None:
    shape = splits.image_shape
    samples = _draw(run, min(n_samples, splits.test.shape[0]), seed + SAMPLES_SEED_OFFSET)
    report["figures"]["samples"] = str(figures.save_sample_grid(
        samples[:GRID_SAMPLES], figure("samples"), image_shape=shape).name)
    _training_curves(report, metrics_file, figure("training_curves"))
    if "parzen" in chosen:
        res = parzen_protocol(run.sample, splits, n_samples=n_samples, seed=seed,
                              variant=parzen_variant, progress=_stage(progress, "parzen"))
        n_ref = min(n_samples, splits.train.shape[0])
        ref = parzen_protocol(lambda n, *, seed: _rows(splits.train, n, seed), splits,
                              n_samples=n_ref, seed=seed, variant=parzen_variant,
                              progress=_stage(progress, "parzen (training data)"))
        report["parzen"] = {**res.to_dict(), "reference": {
            "what": f"{n_ref} training images as samples", "mean": ref.mean,
            "stderr": ref.stderr, "sigma": ref.sigma},
            "at_grid_edge": res.sigma in (res.sigmas[0], res.sigmas[-1]),
            "sizes": _image_sizes(n_samples, res.n_test, n_ref,
                                  validation_rows=_validation_rows(splits, parzen_variant))}
    n = samples.shape[0]
    real = splits.test[:n]
    train_ref = _rows(splits.train, n, seed + TRAIN_REF_SEED_OFFSET)
    if "nn" in chosen:
        nn_s = metrics.nearest_neighbours(samples[:NN_ROWS], splits.train)[0][:, 0]
        nn_t = metrics.nearest_neighbours(real[:NN_ROWS], splits.train)[0][:, 0]
        report["nn"] = {"median_distance_to_train": float(nn_s.median()),
                        "reference": {"what": "test images", "median": float(nn_t.median())},
                        "sizes": _image_sizes(nn_s.shape[0], nn_t.shape[0],
                                              splits.train.shape[0])}
        report["nn"]["figure"] = report["figures"]["nn"] = figures.save_nearest_neighbours(
            samples[:NN_FIGURE_ROWS], splits.train, figure("nn"),
            image_shape=shape).name
    if "interpolation" in chosen and run.prior_dim is None:
        # A Markov chain, reconstructions or samples made elsewhere: no prior to walk across.
        report["interpolation"] = {"skipped": "the sampler has no prior to walk across (a "
                                              "Markov chain, reconstructions or samples "
                                              "made elsewhere)"}
    elif "interpolation" in chosen:
        g = torch.Generator().manual_seed(seed + INTERPOLATION_SEED_OFFSET)
        ends = torch.rand(2, INTERPOLATION_LINES, int(run.prior_dim), generator=g)
        ends = ends * 2 - 1  # uniform [-1, 1]
        report["interpolation"] = {"figure": figures.save_interpolations(
            run.decode_prior, ends[0], ends[1], figure("interpolation"),
            image_shape=shape).name}
        report["figures"]["interpolation"] = report["interpolation"]["figure"]
    if _NEEDS_CLASSIFIER & set(chosen):
        _classifier_metrics(report, chosen, samples, real, train_ref, splits, seed=seed,
                            cache_dir=cache_dir, progress=_stage(progress, "classifier"))
    if getattr(run, "classes", None) is not None:  # a conditional run: samples on request
        conditional.evaluate_conditional(report, run, splits, figure("conditional"),
                                         n_samples=n_samples, seed=seed + SAMPLES_SEED_OFFSET,
                                         cache_dir=cache_dir,
                                         progress=_stage(progress, "classifier"))


def _validation_rows(splits: Splits, variant: str) -> int:
    """Validation rows the Parzen protocol chose its bandwidth on (summed over TFD's folds)."""
    folds = splits.validation_folds
    if variant == "gan":
        from gmmn.evaluate.protocol import GAN_VALIDATION_ROWS

        return int(folds[0].shape[0]) if folds is not None and splits.test_folds is not None \
            else min(GAN_VALIDATION_ROWS, int(splits.validation.shape[0]))
    return sum(int(v.shape[0]) for v in folds) if folds is not None \
        else int(splits.validation.shape[0])


def _tabular_metrics(report: dict, run: Sampler, splits: Splits, figure: Callable,
                     chosen: Sequence[str], *, n_samples, seed, parzen_variant, metrics_file,
                     cache_dir, progress) -> None:
    """The tabular metrics and figures: samples and rows in the data's own units."""
    n_tests = tabular.rows_for_tests(splits.test.shape[0])
    samples = _draw(run, max(n_samples, n_tests), seed + SAMPLES_SEED_OFFSET)
    n_fig = min(n_samples, samples.shape[0])
    report["figures"]["pairs"] = figures.save_pair_scatter(
        samples[:n_fig], splits.train, figure("pairs"), data_label="training rows").name
    report["figures"]["marginals"] = figures.save_marginal_histograms(
        samples[:n_fig], splits.train, figure("marginals"), data_label="training rows").name
    _training_curves(report, metrics_file, figure("training_curves"))
    if "parzen" in chosen:
        report["parzen"] = tabular.tabular_parzen(
            run.sample, splits, n_samples=n_samples, seed=seed, variant=parzen_variant,
            validation_rows=_validation_rows(splits, parzen_variant),
            progress=_stage(progress, "parzen"),
            reference_progress=_stage(progress, "parzen (training data)"))
    # The reference rows, permutations and folds draw from the training-reference seed.
    report.update(tabular.evaluate_tabular(samples, train=splits.train, test=splits.test,
                                           metrics=chosen, n_samples=n_samples,
                                           seed=seed + TRAIN_REF_SEED_OFFSET))


def _choose_chain_noise(run: Sampler, splits: Splits, grid: Sequence[float], *,
                        n_samples: int, seed: int, progress) -> tuple[Sampler, dict]:
    """``run`` with the chain noise of ``grid`` that validation prefers, and the scores."""
    if not run.tunable_noise:
        raise ConfigError("a grid of chain noise values is only chosen for stacked CAE runs "
                          "(family scae), whose chain has that noise; give one value or "
                          "none")
    values = sorted({float(v) for v in grid})
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"chain noise values must be finite and >= 0; got {list(grid)}")
    choice = choose_on_validation({v: run.with_settings(chain_noise=v).sample for v in values},
                                  splits, n_samples=n_samples, seed=seed,
                                  progress=_stage(progress, "chain noise (validation)"))
    return run.with_settings(chain_noise=choice.best), choice.to_dict()


def _classifier_metrics(report: dict, chosen: Sequence[str], samples, real, train_ref,
                        splits: Splits, *, seed: int, cache_dir, progress) -> None:
    try:
        clf = clf_mod.load_or_train_classifier(splits, cache_dir=cache_dir, progress=progress)
    except GMMNError as exc:  # e.g. unlabelled data: the other metrics still stand
        for name in _NEEDS_CLASSIFIER & set(chosen):
            report[name] = {"skipped": str(exc)}
        return
    report["classifier"] = {"test_accuracy": clf.test_accuracy,
                            # The file's name only: a report is shared, the cache folder is not.
                            "cache_file": clf.path.name if clf.path else None}
    f_s, f_r, f_t = (clf_mod.features(clf, x) for x in (samples, real, train_ref))
    what = f"{train_ref.shape[0]} training images in place of samples"
    sizes = _image_sizes(samples.shape[0], real.shape[0], train_ref.shape[0])
    if "fd" in chosen:
        report["fd"] = {"value": metrics.frechet_distance(f_s, f_r),
                        "reference": {"what": what, "value": metrics.frechet_distance(f_t, f_r)},
                        "sizes": sizes}
    if "kid" in chosen:
        km, ks = metrics.kernel_inception_distance(f_s, f_r, seed=seed)
        rm, rs = metrics.kernel_inception_distance(f_t, f_r, seed=seed)
        report["kid"] = {"mean": km, "std": ks, "reference": {"what": what, "mean": rm, "std": rs},
                         "sizes": sizes}
    if "coverage" in chosen:
        ref_labels = splits.test_labels
        cov = metrics.class_coverage(clf_mod.predict(clf, samples), n_classes=clf.n_classes,
                                     reference=ref_labels)
        cov_ref = metrics.class_coverage(clf_mod.predict(clf, train_ref),
                                         n_classes=clf.n_classes, reference=ref_labels)
        report["coverage"] = {**cov, "against": "test label distribution",
                              "reference": {"what": what, **cov_ref}, "sizes": sizes}
    if "precision-recall" in chosen:
        p, r = metrics.precision_recall(f_r, f_s)
        rp, rr = metrics.precision_recall(f_r, f_t)
        report["precision-recall"] = {"precision": p, "recall": r, "k": PR_K, "reference": {
            "what": what, "precision": rp, "recall": rr}, "sizes": sizes}
