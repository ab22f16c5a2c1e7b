"""report.md: one screen of an evaluation report, and the names a report is made of.

:func:`render_markdown` turns the dict that :func:`gmmn.evaluate.report.evaluate_run` writes as
report.json into Markdown: each metric's value beside its real-data reference, the rows each
comparison used, what was too small to trust and what was skipped, and the figures. The metric
names and the size below which an image comparison is flagged live here, below the evaluation
that imports them, so the two never disagree and neither imports the other's caller.
"""

from __future__ import annotations

import math
from typing import Any

from gmmn.evaluate import tabular
from gmmn.evaluate.metrics import PR_K

METRICS: tuple[str, ...] = ("parzen", "nn", "interpolation", "fd", "kid", "coverage",
                            "precision-recall")
# Tables: the default set, and what may be asked for (Parzen only on request: a density
# estimate in D dimensions from a few hundred rows says less than the tests do).
TABULAR_METRICS: tuple[str, ...] = tabular.TABULAR_METRICS
TABULAR_ALLOWED: tuple[str, ...] = ("parzen", *TABULAR_METRICS)
# Image comparisons with fewer test images than this are flagged: FD estimates a 128 x 128
# feature covariance, biased by O(features / rows), and KID's subsets fall below their 1000
# rows, so a model can beat the real-data reference by sampling noise alone.
MIN_TRUSTED_IMAGES = 1000
# Report entries besides the metrics that may be skipped, each with its reason.
SKIPPABLE_FIGURES: tuple[str, ...] = ("training_curves",)


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
    if "conditional_accuracy" in report and "skipped" not in report["conditional_accuracy"]:
        c, f = report["conditional_accuracy"], report["fd_per_class"]
        rows.append(("conditional accuracy (requested class recognised)",
                     f"{c['overall']:.4f}", f"{c['reference']['overall']:.4f} (test images)"))
        rows.append(("per-class Frechet distance, mean over classes", _fmt(f["mean"]),
                     _fmt(f["reference"]["mean"])))
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
    if "conditional_accuracy" in report and "skipped" not in report["conditional_accuracy"]:
        c, f = report["conditional_accuracy"], report["fd_per_class"]["per_class"]
        lines += ["", "| class | conditional accuracy | test-image accuracy | Frechet distance |",
                  "|---|---|---|---|"]
        lines += [f"| {k} | {v:.4f} | {_fmt(c['reference']['per_class'].get(k))} | "
                  f"{_fmt(f.get(k))} |" for k, v in c["per_class"].items()]
    names = dict.fromkeys((*METRICS, *TABULAR_ALLOWED, *SKIPPABLE_FIGURES,
                           "conditional_accuracy", "fd_per_class"))
    skipped = [f"- {k}: {report[k]['skipped']}" for k in names
               if isinstance(report.get(k), dict) and "skipped" in report[k]]
    if skipped:
        lines += ["", "Skipped:", *skipped]
    lines += [""] + [f"![{k}]({v})" for k, v in report["figures"].items()]
    return "\n".join(lines) + "\n"
