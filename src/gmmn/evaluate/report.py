"""Evaluate a trained run: every metric beside its real-data reference, as JSON and Markdown.

Each number comes with the score real data gets under the same procedure (training images
in place of samples, scored against the test set), so a reader sees the ceiling next to the
model. The run is any object with ``sample(n, *, seed)``, and for interpolations
``decode_prior(z)`` and ``prior_dim`` (``gmmn.api.load_run`` returns one). A run whose
checkpoint is not the end of training is marked unfinished in both reports.

Data without an image shape (a table) get the tabular metrics of :mod:`gmmn.evaluate.tabular`
(marginals, correlations, an MMD test, a classifier two-sample test) and its figures instead
of the image ones; Parzen, when asked for, then runs on standardised features with a
bandwidth grid from the data's scale. Every comparison records how many samples, test rows
and training rows it used (``sizes``), and flags those too small to trust.

The report folder changes as a whole: figures and reports are made in a temporary folder
inside it, the old report.json and report.md are removed, the figures moved in, and the new
reports moved in last. A kill at any moment leaves the old report with its figures, or new
figures with no report; never a report beside another evaluation's figures.
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
from gmmn.errors import ConfigError, GMMNError
from gmmn.evaluate import classifier as clf_mod
from gmmn.evaluate import figures, metrics, tabular
from gmmn.evaluate.metrics import PR_K
from gmmn.evaluate.protocol import FRESH_SEED_OFFSET, choose_on_validation, parzen_protocol
from gmmn.files import prepare_folder, write_error

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("parzen", "nn", "interpolation", "fd", "kid", "coverage",
                            "precision-recall")
# Tables: the default set, and what may be asked for (Parzen only on request: a density
# estimate in D dimensions from a few hundred rows says less than the tests do).
TABULAR_METRICS: tuple[str, ...] = tabular.TABULAR_METRICS
TABULAR_ALLOWED: tuple[str, ...] = ("parzen", *TABULAR_METRICS)
_NEEDS_CLASSIFIER = {"fd", "kid", "coverage", "precision-recall"}
# Image comparisons with fewer test images than this are flagged: FD estimates a 128 x 128
# feature covariance, biased by O(features / rows), and KID's subsets fall below their 1000
# rows, so a model can beat the real-data reference by sampling noise alone.
MIN_TRUSTED_IMAGES = 1000
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


def evaluate_run(run: Any, splits: Splits, *, out_dir: pathlib.Path | str,
                 metrics_to_run: Sequence[str] | None = None, n_samples: int = 10000,
                 seed: int = 0,
                 parzen_variant: str = "gmmn", metrics_file: pathlib.Path | str | None = None,
                 cache_dir: pathlib.Path | str | None = None,
                 chain_noise_grid: Sequence[float] | None = None,
                 progress: StageProgress | None = None) -> dict:
    """Compute the chosen metrics and figures; write report.json and report.md in out_dir.

    ``metrics_to_run`` None: :data:`METRICS` for images, :data:`TABULAR_METRICS` for a table
    (``splits.image_shape`` None). For a table ``n_samples`` is also the number of samples
    that marginals, correlation and nn score; the two tests use as many as test rows.
    ``chain_noise_grid`` (stacked CAE runs): choose the chain's noise from these values by
    validation Parzen log-likelihood (:func:`choose_on_validation`) before anything else is
    sampled; the report records every value's score under ``chain.noise_selection``.
    """
    final = pathlib.Path(out_dir)
    prepare_folder(final, what="the report folder")
    for stale in final.glob(_TMP_PREFIX + "*"):  # left by an evaluation that was killed
        shutil.rmtree(stale, ignore_errors=True)
    out = pathlib.Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=final))
    try:
        report = _evaluate(run, splits, out, metrics_to_run=metrics_to_run,
                           n_samples=n_samples, seed=seed, parzen_variant=parzen_variant,
                           metrics_file=metrics_file, cache_dir=cache_dir,
                           chain_noise_grid=chain_noise_grid, progress=progress)
        _commit(out, final)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return report


_TMP_PREFIX = ".evaluating-"
_REPORTS = ("report.json", "report.md")


def _commit(tmp: pathlib.Path, final: pathlib.Path) -> None:
    """Move what ``tmp`` holds into ``final``: old reports out, figures in, reports last."""
    try:
        for name in _REPORTS:
            (final / name).unlink(missing_ok=True)
        for f in sorted(tmp.iterdir(), key=lambda f: f.name in _REPORTS):
            os.replace(f, final / f.name)
    except OSError as exc:
        raise write_error(exc, final / "report.json") from exc


def run_status(run: Any) -> dict | None:
    """``done``, ``stage`` and ``iteration`` of a run loaded from a checkpoint (None when the
    object does not say, e.g. a test's fake run)."""
    inner = getattr(run, "run", run)  # Reconstructions wrap a Run
    done = getattr(inner, "done", None)
    if done is None:
        return None
    return {"done": bool(done), "stage": getattr(inner, "stage", None),
            "iteration": int(getattr(inner, "iteration", 0) or 0)}


def _evaluate(run: Any, splits: Splits, out: pathlib.Path, *, metrics_to_run, n_samples,
              seed, parzen_variant, metrics_file, cache_dir, chain_noise_grid,
              progress) -> dict:
    shape = splits.image_shape
    chosen = parse_metrics(metrics_to_run, tabular=shape is None)
    report: dict[str, Any] = {"dataset": splits.name, "n_samples": n_samples, "seed": seed,
                              "metrics": list(chosen), "figures": {},
                              "data_kind": "image" if shape is not None else "tabular"}
    status = run_status(run)
    if callable(getattr(run, "use_training_rows", None)):
        # Baselines start their chains from training rows (never test rows): these ones.
        run = run.use_training_rows(splits.train)
    selection = None
    if chain_noise_grid:
        run, selection = _choose_chain_noise(run, splits, chain_noise_grid, n_samples=n_samples,
                                             seed=seed, progress=progress)
    chain = getattr(run, "chain_settings", None)
    if isinstance(chain, dict):  # a baseline: its samples depend on how the chain ran
        report["chain"] = {**chain, "starts": "training rows picked by the sampling seed"}
        if selection is not None:
            report["chain"]["noise_selection"] = selection
    if status is not None:
        report["run"] = status
    measure = _image_metrics if shape is not None else _tabular_metrics
    measure(report, run, splits, out, chosen, n_samples=n_samples, seed=seed,
            parzen_variant=parzen_variant, metrics_file=metrics_file, cache_dir=cache_dir,
            progress=progress)
    try:
        (out / "report.md").write_text(render_markdown(report))
        (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    except OSError as exc:
        raise write_error(exc, out / "report.json") from exc
    return report


def _training_curves(report: dict, metrics_file, out: pathlib.Path) -> None:
    if metrics_file is not None and pathlib.Path(metrics_file).exists():
        report["figures"]["training_curves"] = figures.save_training_curves(
            metrics_file, out / "training_curves.png").name


def _draw(run: Any, n: int, seed: int) -> torch.Tensor:
    samples = torch.as_tensor(run.sample(n, seed=seed))
    return samples.detach().reshape(samples.shape[0], -1).float().cpu()


def _image_sizes(samples: int, test: int, train: int, **extra: int) -> dict:
    return {"samples": samples, **extra, "test_rows": test, "training_rows": train,
            "too_small": test < MIN_TRUSTED_IMAGES}


def _image_metrics(report: dict, run: Any, splits: Splits, out: pathlib.Path,
                   chosen: Sequence[str], *, n_samples, seed, parzen_variant, metrics_file,
                   cache_dir, progress) -> None:
    shape = splits.image_shape
    samples = _draw(run, min(n_samples, splits.test.shape[0]), seed + SAMPLES_SEED_OFFSET)
    report["figures"]["samples"] = str(figures.save_sample_grid(
        samples[:GRID_SAMPLES], out / "samples.png", image_shape=shape).name)
    _training_curves(report, metrics_file, out)
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
            samples[:NN_FIGURE_ROWS], splits.train, out / "nearest_neighbours.png",
            image_shape=shape).name
    if "interpolation" in chosen and getattr(run, "prior_dim", 0) is None:
        # A baseline (DBN, CAE, GSN) samples by its Markov chain: no prior to walk across.
        report["interpolation"] = {"skipped": "the model has no prior (it samples by its own "
                                              "Markov chain)"}
    elif "interpolation" in chosen:
        g = torch.Generator().manual_seed(seed + INTERPOLATION_SEED_OFFSET)
        ends = torch.rand(2, INTERPOLATION_LINES, int(run.prior_dim), generator=g)
        ends = ends * 2 - 1  # uniform [-1, 1]
        report["interpolation"] = {"figure": figures.save_interpolations(
            run.decode_prior, ends[0], ends[1], out / "interpolations.png",
            image_shape=shape).name}
        report["figures"]["interpolation"] = report["interpolation"]["figure"]
    if _NEEDS_CLASSIFIER & set(chosen):
        _classifier_metrics(report, chosen, samples, real, train_ref, splits, seed=seed,
                            cache_dir=cache_dir, progress=_stage(progress, "classifier"))


def _validation_rows(splits: Splits, variant: str) -> int:
    """Validation rows the Parzen protocol chose its bandwidth on (summed over TFD's folds)."""
    folds = splits.validation_folds
    if variant == "gan":
        from gmmn.evaluate.protocol import GAN_VALIDATION_ROWS

        return int(folds[0].shape[0]) if folds is not None and splits.test_folds is not None \
            else min(GAN_VALIDATION_ROWS, int(splits.validation.shape[0]))
    return sum(int(v.shape[0]) for v in folds) if folds is not None \
        else int(splits.validation.shape[0])


def _tabular_metrics(report: dict, run: Any, splits: Splits, out: pathlib.Path,
                     chosen: Sequence[str], *, n_samples, seed, parzen_variant, metrics_file,
                     cache_dir, progress) -> None:
    """The tabular metrics and figures: samples and rows in the data's own units."""
    n_tests = tabular.rows_for_tests(splits.test.shape[0])
    samples = _draw(run, max(n_samples, n_tests), seed + SAMPLES_SEED_OFFSET)
    n_fig = min(n_samples, samples.shape[0])
    report["figures"]["pairs"] = figures.save_pair_scatter(
        samples[:n_fig], splits.train, out / "pairs.png", data_label="training rows").name
    report["figures"]["marginals"] = figures.save_marginal_histograms(
        samples[:n_fig], splits.train, out / "marginals.png", data_label="training rows").name
    _training_curves(report, metrics_file, out)
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


def _choose_chain_noise(run: Any, splits: Splits, grid: Sequence[float], *, n_samples: int,
                        seed: int, progress) -> tuple[Any, dict]:
    """``run`` with the chain noise of ``grid`` that validation prefers, and the scores."""
    cfg = getattr(run, "config", None)
    if getattr(cfg, "baseline", None) != "scae":
        raise ConfigError("a grid of chain noise values is only chosen for stacked CAE runs "
                          "(--baseline scae), whose chain has that noise; give one value or "
                          "none")
    values = sorted({float(v) for v in grid})
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"chain noise values must be finite and >= 0; got {list(grid)}")
    choice = choose_on_validation({v: run.with_chain(chain_noise=v).sample for v in values},
                                  splits, n_samples=n_samples, seed=seed,
                                  progress=_stage(progress, "chain noise (validation)"))
    return run.with_chain(chain_noise=choice.best), choice.to_dict()


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


def _fmt(v: Any, err: Any = None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return str(v)
    s = f"{v:.4g}" if isinstance(v, float) else str(v)
    return f"{s} +- {err:.2g}" if err is not None else s


def noise_choice_text(selection: dict) -> str:
    """"<chosen>, chosen on validation ... from <value>: <nats>, ..." for a report's
    ``chain.noise_selection`` (the report.md line and gmmn reproduce's table notes)."""
    scores = ", ".join(f"{float(v):g}: {r['validation_ll']:.1f}"  # JSON keys are strings
                       for v, r in selection["validation"].items())
    return (f"{selection['chosen']:g}, chosen on validation Parzen log-likelihood "
            f"(noise: nats) from {scores}")


def _image_rows(report: dict) -> list[tuple[str, str, str]]:
    rows = []
    if "nn" in report:
        rows.append(("median distance to nearest training image",
                     _fmt(report["nn"]["median_distance_to_train"]),
                     _fmt(report["nn"]["reference"]["median"]) + " (test images)"))
    if "fd" in report and "skipped" not in report["fd"]:
        rows.append(("Frechet distance on classifier features (lower better)",
                     _fmt(report["fd"]["value"]), _fmt(report["fd"]["reference"]["value"])))
    if "kid" in report and "skipped" not in report["kid"]:
        k = report["kid"]
        rows.append(("KID (lower better, ~0 is ideal)", _fmt(k["mean"], k["std"]),
                     _fmt(k["reference"]["mean"], k["reference"]["std"])))
    if "coverage" in report and "skipped" not in report["coverage"]:
        c, r = report["coverage"], report["coverage"]["reference"]
        k = len(c["histogram"])
        rows.append((f"classes present (of {k})", f"{round(c['classes_present'] * k)}",
                     f"{round(r['classes_present'] * k)}"))
        rows.append(("total variation to test labels", _fmt(c["total_variation"]),
                     _fmt(r["total_variation"])))
    if "precision-recall" in report and "skipped" not in report["precision-recall"]:
        pr, r = report["precision-recall"], report["precision-recall"]["reference"]
        rows.append((f"precision / recall (k={PR_K})",
                     f"{pr['precision']:.3f} / {pr['recall']:.3f}",
                     f"{r['precision']:.3f} / {r['recall']:.3f}"))
    return rows


def _size_lines(report: dict, *, noun: str, threshold: int) -> list[str]:
    """report.md lines: the rows each comparison used (comparisons of equal sizes on one
    line) and a warning naming the comparisons with fewer than ``threshold`` test rows."""
    groups: dict[tuple, list[str]] = {}
    for name in dict.fromkeys((*METRICS, *TABULAR_ALLOWED)):
        sizes = (report.get(name) or {}).get("sizes")
        if sizes:
            # nn's training rows are the set it searches, not a reference: its own line.
            key = (*sizes.items(), ("nn", True)) if name == "nn" else tuple(sizes.items())
            groups.setdefault(key, []).append(name)
    lines, small = [], {}
    for key, names in groups.items():
        z = dict(key)
        if z.get("nn"):
            lines.append(f"- nn: {z['samples']} samples and {z['test_rows']} test {noun} "
                         f"(the reference), each against all {z['training_rows']} training "
                         f"{noun}")
        else:
            valid = (f", bandwidth chosen on {z['validation_rows']} validation {noun}"
                     if "validation_rows" in z else "")
            fewer = (" (fewer than the samples: the reference has more sampling noise)"
                     if z["training_rows"] < z["samples"] else "")
            lines.append(f"- {', '.join(names)}: {z['samples']} samples against "
                         f"{z['test_rows']} test {noun}{valid}; reference {z['training_rows']} "
                         f"training {noun}{fewer}")
        if z["too_small"]:
            small.setdefault(z["test_rows"], []).extend(names)
    if not lines:
        return []
    lines = ["", "Sample sizes:", *lines]
    for n, names in small.items():
        lines += ["", f"**Too small to trust** ({', '.join(names)}): only {n} test {noun}, "
                      f"fewer than {threshold}. At this size sampling noise is as large as the "
                      "differences these numbers are meant to show: a model can score better "
                      "than the real-data reference by chance alone."]
    return lines


def render_markdown(report: dict) -> str:
    """A one-screen summary: each metric, the model's value, the real-data reference."""
    table = report.get("data_kind") == "tabular"
    noun = "rows" if table else "images"
    rows = []
    if "parzen" in report:
        p = report["parzen"]
        units = "nats of standardised features" if table else "nats"
        rows.append((f"Parzen log-likelihood ({units}, higher better)",
                     _fmt(p["mean"], p["stderr"]) + f" at sigma {p['sigma']:.3g}",
                     _fmt(p["reference"]["mean"], p["reference"]["stderr"])))
    rows += tabular.markdown_rows(report) if table else _image_rows(report)
    lines = [f"# Evaluation: {report['dataset']}", ""]
    status = report.get("run")
    if status is not None and not status["done"]:
        lines += [f"**Unfinished run**: its checkpoint stops in stage {status['stage']} at "
                  f"iteration {status['iteration']}; these numbers describe a half-trained "
                  f"model.", ""]
    chain = report.get("chain") or {}
    if "noise_selection" in chain:
        lines += [f"Chain noise {noise_choice_text(chain['noise_selection'])}.", ""]
    if table:
        lines += ["Features standardised by the training split's mean and sd; errors are in "
                  "units of that sd.", ""]
    lines += [f"Reference = the same procedure with real training {noun} in place of samples.",
              "", "| metric | model | real-data reference |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    if "classifier" in report:
        lines += ["", f"Feature classifier test accuracy: "
                      f"{report['classifier']['test_accuracy']:.4f}."]
    p = report.get("parzen") or {}
    if p.get("at_grid_edge"):
        lines += ["", f"**Parzen bandwidth at the edge of its grid** (sigma {p['sigma']:.3g} of "
                      f"{p['sigmas'][0]:.3g}-{p['sigmas'][-1]:.3g}): the best bandwidth may lie "
                      "outside the grid, and the score is not the estimator's best."]
    lines += _size_lines(report, noun=noun, threshold=tabular.MIN_TRUSTED_ROWS if table
                         else MIN_TRUSTED_IMAGES)
    skipped = [f"- {k}: {report[k]['skipped']}" for k in dict.fromkeys((*METRICS,
                                                                          *TABULAR_ALLOWED))
               if isinstance(report.get(k), dict) and "skipped" in report[k]]
    if skipped:
        lines += ["", "Skipped:", *skipped]
    lines += [""] + [f"![{k}]({v})" for k, v in report["figures"].items()]
    return "\n".join(lines) + "\n"
