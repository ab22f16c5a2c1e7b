"""Reproduce the paper's table: GMMN, GMMN+AE and the GAN baseline, trained and evaluated in
one harness, side by side with the numbers the paper reports.

For dataset D it trains the presets ``D-gmmn``, ``D-gmmn-ae`` and ``D-gan`` into
``out/<preset>/`` (resumable: a finished run is kept, an interrupted one continues from its
checkpoint), evaluates each with :func:`gmmn.evaluate.evaluate_run` (the paper's Parzen
protocol and the classifier metrics, report in ``out/<preset>/eval/``) and writes
``out/table.md`` and ``out/table.json``. Each row carries its wall times and the two
``gmmn train`` / ``gmmn evaluate`` commands that recompute it alone.

``quick=True`` scales every iteration count of every preset by :data:`QUICK_SCALE` of the
dataset and draws :data:`QUICK_SAMPLES` Parzen samples instead of the paper's 10000: a smoke
run of the whole pipeline, whose numbers are not the paper's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from gmmn.config import TrainConfig, package_versions
from gmmn.errors import ConfigError
from gmmn.presets import get_preset

log = logging.getLogger(__name__)

DATASETS = ("mnist", "fashion-mnist", "digits")
# (table row, preset suffix, the paper's row of the same model)
MODELS = (("GMMN", "gmmn", "GMMN (data space)"), ("GMMN+AE", "gmmn-ae", "GMMN+AE"),
          ("GAN", "gan", "Adversarial nets"))
# The paper's Parzen table (SPEC.md): model -> (MNIST mean, +-, TFD mean, +-).
PAPER_TABLE = {
    "DBN": (138, 2, 1909, 66),
    "Stacked CAE": (121, 1.6, 2110, 50),
    "Deep GSN": (214, 1.1, 1890, 29),
    "Adversarial nets": (225, 2, 2057, 26),
    "GMMN (data space)": (147, 2, 2085, 25),
    "GMMN+AE": (282, 2, 2204, 20),
}
PAPER_SAMPLES = 10000  # Parzen samples per set in the paper's protocol
# --quick: a fraction of every iteration count (pretraining, fine-tuning, the main stage and
# the schedules' switch points alike) and fewer Parzen samples.
QUICK_SCALE = {"digits": 0.2, "mnist": 0.025, "fashion-mnist": 0.025}
QUICK_SAMPLES = 1000
# Fields that `gmmn train` takes from its own flags, not from the config diff.
_NOT_FLAGS = ("preset",)

Event = Callable[[str], None]


def scale_iterations(cfg: TrainConfig, scale: float) -> TrainConfig:
    """``cfg`` with every iteration count it uses times ``scale`` (at least 1; 0 stays 0):
    the stages' lengths and the schedules' switch points alike, so a short run keeps the
    preset's shape. Fields the model does not use are left alone."""
    if not scale > 0:
        raise ConfigError(f"the iteration scale must be positive, got {scale}")
    if scale == 1:
        return cfg

    def s(n: int) -> int:
        return 0 if n == 0 else max(1, round(n * scale))

    names = ["iterations", "sample_every"]
    names += ["gan_momentum_ramp"] if cfg.gan else ["late_from"]
    if cfg.autoencoder:
        names += ["pretrain_iterations", "finetune_iterations", "ae_eval_every"]
    changed = {name: s(getattr(cfg, name)) for name in names}
    if cfg.autoencoder:
        changed["finetune_momentum_from"] = tuple(s(t) for t in cfg.finetune_momentum_from)
    changed["checkpoint_every"] = min(cfg.checkpoint_every, max(1, changed["iterations"] // 4))
    changed["log_every"] = min(cfg.log_every, max(1, changed["iterations"] // 20))
    return replace(cfg, **changed)


def _flag_value(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def train_command(cfg: TrainConfig, run_dir: Path) -> str:
    """The ``gmmn train`` line that builds ``cfg``: its preset plus a flag per changed field."""
    base = get_preset(cfg.preset)
    parts = ["gmmn", "train", "--preset", cfg.preset, "--out", str(run_dir)]
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if f.name in _NOT_FLAGS or value == getattr(base, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        else:
            parts += [flag, _flag_value(value)]
    return " ".join(parts)


def evaluate_command(run_dir: Path, *, n_samples: int, seed: int, data_dir: str | None,
                     device: str = "cpu") -> str:
    parts = ["gmmn", "evaluate", "--run", str(run_dir), "--n-samples", str(n_samples)]
    if seed:
        parts += ["--seed", str(seed)]
    if data_dir is not None:
        parts += ["--data-dir", str(data_dir)]
    if device != "cpu":
        parts += ["--device", device]
    return " ".join(parts)


@dataclass(frozen=True)
class Plan:
    """What one ``reproduce`` call runs: a config and a run folder per model."""

    dataset: str
    out: Path
    quick: bool
    seed: int
    n_samples: int
    scale: float
    data_dir: str | None
    device: str | None
    configs: tuple[TrainConfig, ...]


def plan(dataset: str, *, out: str | Path, quick: bool = False, seed: int = 0,
         n_samples: int | None = None, scale: float | None = None,
         data_dir: str | None = None, device: str | None = None) -> Plan:
    """The three configs of ``dataset`` (paper settings, or scaled down with ``quick``)."""
    if dataset not in DATASETS:
        raise ConfigError(f"gmmn reproduce covers {', '.join(DATASETS)}, not {dataset!r}"
                          + ("; TFD has no GAN preset yet" if dataset == "tfd" else ""))
    scale = scale if scale is not None else (QUICK_SCALE[dataset] if quick else 1.0)
    n_samples = n_samples if n_samples is not None else (QUICK_SAMPLES if quick else
                                                          PAPER_SAMPLES)
    if n_samples < 1:
        raise ConfigError(f"--n-samples must be positive, got {n_samples}")
    extra = {"seed": seed, "data_dir": data_dir}
    if device is not None:
        extra["device"] = device
    configs = tuple(scale_iterations(replace(get_preset(f"{dataset}-{suffix}"), **extra), scale)
                    for _, suffix, _ in MODELS)
    return Plan(dataset, Path(out), quick, seed, n_samples, scale, data_dir, device, configs)


def reproduce(p: Plan, *, on_event: Event | None = None) -> dict:
    """Train and evaluate every model of ``p`` (skipping finished work); write the table."""
    from gmmn.data import load_dataset

    say = on_event or (lambda msg: log.info("%s", msg))
    splits = load_dataset(p.dataset, data_dir=p.data_dir, seed=p.seed)
    rows = []
    for (label, _, paper_row), cfg in zip(MODELS, p.configs, strict=True):
        run_dir = p.out / cfg.preset
        rows.append(_row(label, paper_row, cfg, run_dir, splits, p, say))
    table = {"dataset": p.dataset, "quick": p.quick, "seed": p.seed, "n_samples": p.n_samples,
             "iterations_scale": p.scale, "rows": rows, "real_data": _real_row(rows),
             "paper": {k: {"mnist": [v[0], v[1]], "tfd": [v[2], v[3]]}
                       for k, v in PAPER_TABLE.items()},
             "versions": package_versions()}
    p.out.mkdir(parents=True, exist_ok=True)
    (p.out / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    (p.out / "table.md").write_text(render_table(table))
    say(f"wrote {p.out / 'table.md'} and {p.out / 'table.json'}")
    return table


def _row(label: str, paper_row: str, cfg: TrainConfig, run_dir: Path, splits, p: Plan,
         say: Event) -> dict:
    from gmmn.api import load_run
    from gmmn.checkpoint import load_checkpoint
    from gmmn.evaluate.report import evaluate_run
    from gmmn.runner import resolve_device, train

    # Resuming a finished run only checks that its settings match; an unfinished one
    # continues from its checkpoint; a missing one starts.
    say(f"{cfg.preset}: training ({cfg.iterations} iterations) in {run_dir}")
    train(cfg, out_dir=run_dir, resume=True, splits=splits)
    train_seconds = float(load_checkpoint(run_dir / "checkpoint.pt")["elapsed"])
    # `gmmn evaluate` runs on the CPU unless told otherwise; so does this, so that the
    # printed command recomputes the same numbers.
    eval_device = str(resolve_device(p.device)) if p.device else "cpu"
    eval_dir = run_dir / "eval"
    timing_path = eval_dir / "timing.json"
    want = {"n_samples": p.n_samples, "seed": p.seed}
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    report_path = eval_dir / "report.json"
    if (report_path.exists() and {k: timing.get(k) for k in want} == want
            and report_path.stat().st_mtime >= (run_dir / "checkpoint.pt").stat().st_mtime):
        say(f"{cfg.preset}: evaluation done before, kept")
        report = json.loads((eval_dir / "report.json").read_text())
    else:
        say(f"{cfg.preset}: evaluating ({p.n_samples} Parzen samples)")
        t0 = time.perf_counter()
        run = load_run(run_dir, device=eval_device)
        report = evaluate_run(run, splits, out_dir=eval_dir, n_samples=p.n_samples,
                              seed=p.seed, metrics_file=run_dir / "metrics.jsonl")
        timing = {**want, "seconds": time.perf_counter() - t0}
        timing_path.write_text(json.dumps(timing) + "\n")
    paper = PAPER_TABLE[paper_row]
    return {
        "model": label, "preset": cfg.preset, "run": str(run_dir), "paper_row": paper_row,
        "paper_mnist": {"mean": paper[0], "stderr": paper[1]},
        "parzen": _pick(report.get("parzen"), "mean", "stderr", "sigma"),
        "fd": _pick(report.get("fd"), "value"),
        "kid": _pick(report.get("kid"), "mean", "std"),
        "classes_present": _pick(report.get("coverage"), "classes_present", "total_variation"),
        "precision_recall": _pick(report.get("precision-recall"), "precision", "recall"),
        "classifier_accuracy": (report.get("classifier") or {}).get("test_accuracy"),
        "train_seconds": train_seconds, "eval_seconds": float(timing["seconds"]),
        "commands": [train_command(cfg, run_dir),
                     evaluate_command(run_dir, n_samples=p.n_samples, seed=p.seed,
                                      data_dir=p.data_dir, device=eval_device)],
        "report": str(eval_dir / "report.json"),
        "_reference": {k: (report.get(k) or {}).get("reference") for k in
                       ("parzen", "fd", "kid", "coverage", "precision-recall")},
    }


def _pick(entry: dict | None, *keys: str) -> dict | None:
    if not entry or "skipped" in entry:
        return None
    return {k: entry.get(k) for k in keys}


def _real_row(rows: list[dict]) -> dict:
    """Real training images through the same procedure (from the first report; every
    report computes the same reference for one dataset, seed and sample count)."""
    ref = rows[0]["_reference"]
    for row in rows:
        del row["_reference"]
    return {
        "model": "real data (training images)",
        "parzen": _pick(ref["parzen"], "mean", "stderr", "sigma"),
        "fd": _pick(ref["fd"], "value"),
        "kid": _pick(ref["kid"], "mean", "std"),
        "classes_present": _pick(ref["coverage"], "classes_present", "total_variation"),
        "precision_recall": _pick(ref["precision-recall"], "precision", "recall"),
    }


def _num(entry: dict | None, key: str, fmt: str = ".4g", err: str | None = None) -> str:
    if entry is None or entry.get(key) is None:
        return "-"
    text = format(entry[key], fmt)
    if err is not None and entry.get(err) is not None:
        text += f" +- {entry[err]:.2g}"
    return text


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def render_table(table: dict) -> str:
    """table.md: our rows beside the paper's numbers, wall times, the commands per row."""
    ds, mnist = table["dataset"], table["dataset"] == "mnist"
    paper_col = "paper, MNIST" if mnist else "paper, MNIST (other data)"
    lines = [f"# Parzen table: {ds}" + (" (--quick: not the paper's settings)"
                                         if table["quick"] else ""), "",
             f"Parzen log-likelihood in nats (higher is better) by the paper's protocol with "
             f"{table['n_samples']} samples per set; iteration counts "
             f"x{table['iterations_scale']:g} of the presets; seed {table['seed']}.", "",
             f"| model | Parzen LL | sigma | {paper_col} | FD | KID | classes | precision / "
             "recall | train time | eval time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in [*table["rows"], table["real_data"]]:
        paper = row.get("paper_mnist")
        pr = row["precision_recall"]
        lines.append(" | ".join([
            f"| {row['model']}" + (f" (`{row['preset']}`)" if "preset" in row else ""),
            _num(row["parzen"], "mean", ".1f", "stderr"), _num(row["parzen"], "sigma", ".2f"),
            f"{paper['mean']} +- {paper['stderr']}" if paper else "-",
            _num(row["fd"], "value"), _num(row["kid"], "mean", ".3g"),
            _num(row["classes_present"], "classes_present", ".2f"),
            f"{pr['precision']:.3f} / {pr['recall']:.3f}" if pr else "-",
            _seconds(row.get("train_seconds")), _seconds(row.get("eval_seconds")) + " |"]))
    lines += ["", "FD, KID, classes (fraction of classes present), precision / recall: on "
              "features of the evaluation classifier (docs/evaluation.md); the real-data row "
              "puts training images through the same procedure."]
    if not mnist:
        lines += ["", f"The paper's numbers are MNIST's; {ds} scores are not comparable to "
                      "them in absolute value, only the order of the rows is."]
    lines += ["", "## Commands for each row", ""]
    for row in table["rows"]:
        lines += [f"{row['model']} (`{row['preset']}`):", "", "```bash", *row["commands"],
                  "```", ""]
    lines += ["## The paper's table (Li et al. 2015, Parzen log-likelihood in nats)", "",
              "| model | MNIST | TFD |", "|---|---|---|"]
    for name, v in table["paper"].items():
        lines.append(f"| {name} | {v['mnist'][0]} +- {v['mnist'][1]} | "
                     f"{v['tfd'][0]} +- {v['tfd'][1]} |")
    lines += ["", "The GMMN data-space row is quoted from secondary sources; the adversarial "
                  "nets row was measured by the GAN paper with its own Parzen variant "
                  "(`gmmn evaluate --parzen-variant gan`)."]
    return "\n".join(lines) + "\n"
