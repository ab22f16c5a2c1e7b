"""Reproduce the paper's table: GMMN, GMMN+AE and the GAN baseline, trained and evaluated in
one harness, side by side with the numbers the paper reports.

For dataset D it trains the presets ``D-gmmn``, ``D-gmmn-ae``, ``D-gan`` (and ``D-gmmn-ae-plus``
where that preset exists; the DBN, stacked CAE and deep GSN baselines ``D-dbn``, ``D-scae``,
``D-gsn`` when named in ``models``) into ``out/<preset>/seed-<S>/`` for each training seed S
(resumable: a finished run is kept, an interrupted one continues from its checkpoint),
evaluates each run
with :func:`gmmn.evaluate.evaluate_run` (the paper's Parzen protocol and the classifier
metrics, with the run's seed; report in ``.../eval/``) and writes ``out/table.md`` and
``out/table.json``. A row aggregates its seeds: the mean over seeds, the standard deviation
over seeds, and each run's own numbers. Every path in the table is relative to ``out``, and
each run carries the ``gmmn train`` / ``gmmn evaluate`` commands that recompute it alone when
run from ``out``.

``quick=True`` scales every iteration count of every preset by :data:`QUICK_SCALE` of the
dataset and draws :data:`QUICK_SAMPLES` Parzen samples instead of the paper's 10000: a smoke
run of the whole pipeline, whose numbers are not the paper's.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from gmmn.config import TrainConfig, package_versions
from gmmn.config import flag as config_flag
from gmmn.errors import ConfigError
from gmmn.families import family_of
from gmmn.files import RunLock, atomic_write, prepare_folder
from gmmn.presets import PRESETS, get_preset

log = logging.getLogger(__name__)

DATASETS = ("mnist", "fashion-mnist", "digits")
# (table row, preset suffix, the paper's row of the same model or None)
MODELS = (("GMMN", "gmmn", "GMMN (data space)"), ("GMMN+AE", "gmmn-ae", "GMMN+AE"),
          ("GMMN+AE plus", "gmmn-ae-plus", None), ("GAN", "gan", "Adversarial nets"),
          ("GAN, the GAN paper's recipe", "gan-paper", "Adversarial nets"),
          ("DBN", "dbn", "DBN"), ("Stacked CAE", "scae", "Stacked CAE"),
          ("Deep GSN", "gsn", "Deep GSN"))
# Rows scored by another Parzen variant than the GMMN paper's: the GAN paper's recipe by the
# GAN paper's own (`gmmn evaluate --parzen-variant gan`), so that row is that paper's protocol.
PARZEN_VARIANTS = {"gan-paper": "gan"}
# The quoted rows measured in this harness (gmmn.baselines): trained only when asked for
# with --models (hours each at the source papers' settings), so the default table and the
# runs already made under it stay as they were.
BASELINE_MODELS = ("dbn", "scae", "gsn")
# Rows of the default table's models that are only trained when --models names them: the GAN
# paper's recipe (about 2.7 hours of one CPU core per seed; docs/experiments/gan-paper.md).
OPT_IN_MODELS = (*BASELINE_MODELS, "gan-paper")
# The paper's Parzen table (docs/paper.md): model -> (MNIST mean, +-, TFD mean, +-).
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
    if not 0 < scale < math.inf:
        raise ConfigError(f"--iterations-scale must be positive and finite, got {scale}")
    if scale == 1:
        return cfg

    def s(n: int) -> int:
        if n * scale > 2**63 - 1:
            raise ConfigError(f"--iterations-scale {scale:g} turns {n} iterations into "
                              f"{n * scale:.3g}, more than a run can count; use a smaller "
                              f"scale")
        return 0 if n == 0 else max(1, round(n * scale))

    names = family_of(cfg).quick_fields
    changed = {}
    for name in names:
        value = cfg.get(name)
        changed[name] = tuple(s(t) for t in value) if isinstance(value, tuple) else s(value)
    changed["sample_every"] = s(cfg.sample_every)
    changed["checkpoint_every"] = min(cfg.checkpoint_every, max(1, changed["iterations"] // 4))
    changed["log_every"] = min(cfg.log_every, max(1, changed["iterations"] // 20))
    return cfg.override(**changed)


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
    if cfg.family != base.family:
        parts += ["--family", cfg.family]
    old = base.flat()
    for name, value in cfg.flat().items():
        if name in _NOT_FLAGS or name == "family" or value == old.get(name):
            continue
        flag = config_flag(name)
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        else:
            parts += [flag, _flag_value(value)]
    return " ".join(parts)


# The stacked CAE's chain noise is not given by its sources (docs/baselines.md): its rows
# choose it from these values on validation Parzen log-likelihood, around the released
# code's default of 1. Four decades: on MNIST the full recipe's choice fell on both edges of
# 0.1-10 (10 for one chain, 0.1 for 100 chains), so the grid reaches past both.
CAE_CHAIN_NOISE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def chain_noise_grid(cfg: TrainConfig) -> tuple[float, ...] | None:
    """The chain noise values a row's evaluation chooses from (stacked CAE rows only)."""
    return CAE_CHAIN_NOISE_GRID if family_of(cfg).tunable_noise else None


# Chain settings `gmmn reproduce` may give the baseline rows' evaluations (their flags
# --chains, --burn-in, --thin); the training of a run never depends on them.
EVAL_CHAIN_FIELDS = ("chains", "burn_in", "thin")


def eval_dir_name(chain: Mapping[str, int] | None) -> str:
    """A run's evaluation folder: ``eval`` with its own chain settings, else one named by
    the settings given (``eval-chains-100-burn-in-1000-thin-10``), so both protocols keep
    their reports side by side."""
    if not chain:
        return "eval"
    return "eval-" + "-".join(f"{config_flag(k)[2:]}-{chain[k]}"
                              for k in EVAL_CHAIN_FIELDS if k in chain)


def evaluate_command(run_dir: Path, *, n_samples: int, seed: int, data_dir: str | None,
                     device: str = "cpu", noise_grid: tuple[float, ...] | None = None,
                     chain: Mapping[str, int] | None = None,
                     parzen_variant: str = "gmmn") -> str:
    parts = ["gmmn", "evaluate", "--run", str(run_dir), "--n-samples", str(n_samples)]
    if parzen_variant != "gmmn":
        parts += ["--parzen-variant", parzen_variant]
    if noise_grid:
        parts += ["--chain-noise", ",".join(f"{v:g}" for v in noise_grid)]
    for key, value in (chain or {}).items():
        parts += [config_flag(key), str(value)]
    if chain:
        parts += ["--out", str(run_dir / eval_dir_name(chain) / "report.json")]
    if seed:
        parts += ["--seed", str(seed)]
    if data_dir is not None:
        parts += ["--data-dir", str(data_dir)]
    if device != "cpu":
        parts += ["--device", device]
    return " ".join(parts)


@dataclass(frozen=True)
class ModelPlan:
    """One row of the table: a model and its config for each training seed."""

    label: str
    suffix: str
    paper_row: str | None
    configs: tuple[TrainConfig, ...]  # one per seed, in the order of ``seeds``

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(c.seed for c in self.configs)


@dataclass(frozen=True)
class Plan:
    """What one ``reproduce`` call runs: a row per model, a run folder per seed."""

    dataset: str
    out: Path
    quick: bool
    n_samples: int
    scale: float
    data_dir: str | None
    device: str | None
    models: tuple[ModelPlan, ...]
    # Chain settings for the baseline rows' evaluations (a subset of EVAL_CHAIN_FIELDS);
    # empty: each run's own (its preset's).
    chain: Mapping[str, int] = field(default_factory=dict)

    @property
    def configs(self) -> tuple[TrainConfig, ...]:
        return tuple(c for m in self.models for c in m.configs)

    def table_path(self, suffix: str) -> Path:
        """``out/table.md`` (``.json``); with chain settings ``out/table-chains-...``, named
        as the evaluation folders, so one output folder keeps both protocols' tables."""
        stem = "table" + eval_dir_name(self.chain).removeprefix("eval")
        return self.out / (stem + suffix)


def run_dir_name(cfg: TrainConfig) -> Path:
    """Where a run lives inside the output folder: ``<preset>/seed-<S>``."""
    return Path(cfg.preset) / f"seed-{cfg.seed}"


def available_models(dataset: str, *, baselines: bool = False) -> tuple[str, ...]:
    """The preset suffixes ``dataset`` has a preset for, in table order: the default rows,
    and with ``baselines`` also the opt-in ones (:data:`OPT_IN_MODELS`: the DBN, stacked
    CAE, deep GSN and the GAN paper's recipe)."""
    return tuple(suffix for _, suffix, _ in MODELS if f"{dataset}-{suffix}" in PRESETS
                 and (baselines or suffix not in OPT_IN_MODELS))


def plan(dataset: str, *, out: str | Path, quick: bool = False,
         seeds: Sequence[int] = (0,), model_seeds: Mapping[str, Sequence[int]] | None = None,
         models: Sequence[str] | None = None, n_samples: int | None = None,
         scale: float | None = None, data_dir: str | None = None,
         device: str | None = None, chain: Mapping[str, int] | None = None) -> Plan:
    """The configs of ``dataset``'s models (paper settings, or scaled down with ``quick``).

    seeds: the training seeds of every model; model_seeds overrides them per model suffix
    (``{"gan": (0,)}``); models: which suffixes to run (default: every one the dataset has);
    chain: ``chains`` / ``burn_in`` / ``thin`` for the baseline rows' evaluations (their
    training is the same either way; the reports go to :func:`eval_dir_name`).
    """
    if dataset not in DATASETS:
        raise ConfigError(f"gmmn reproduce covers {', '.join(DATASETS)}, not {dataset!r}"
                          + ("; TFD has no GAN preset yet" if dataset == "tfd" else ""))
    have = available_models(dataset, baselines=True)
    models = tuple(models) if models is not None else available_models(dataset)
    if not models:
        raise ConfigError(f"--models names no model; choose from {', '.join(have)}")
    model_seeds = dict(model_seeds or {})
    for name in [*models, *model_seeds]:
        if name not in have:
            raise ConfigError(f"{dataset} has no model {name!r} to reproduce; choose from "
                              f"{', '.join(have)}")
    for name, chosen in [("--seeds", seeds), *model_seeds.items()]:
        if not chosen or len(set(chosen)) != len(chosen) or min(chosen) < 0:
            raise ConfigError(f"the seeds of {name} must be distinct non-negative integers, "
                              f"got {list(chosen)}")
    scale = scale if scale is not None else (QUICK_SCALE[dataset] if quick else 1.0)
    n_samples = n_samples if n_samples is not None else (QUICK_SAMPLES if quick else
                                                          PAPER_SAMPLES)
    if n_samples < 1:
        raise ConfigError(f"--n-samples must be positive, got {n_samples}")
    chain = dict(chain or {})
    for key, value in chain.items():
        if key not in EVAL_CHAIN_FIELDS:
            raise ConfigError(f"unknown chain setting {key!r}; use {EVAL_CHAIN_FIELDS}")
        low = 0 if key == "burn_in" else 1
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"{config_flag(key)} must be an integer >= {low}, got {value!r}")
    if chain and not set(models) & set(BASELINE_MODELS):
        raise ConfigError(f"{', '.join(config_flag(k) for k in chain)} set the Markov chains "
                          f"of the baseline rows ({', '.join(BASELINE_MODELS)}), but --models "
                          f"names none of them; add one or drop the flags")
    extra = {"data_dir": data_dir}
    if device is not None:
        extra["device"] = device
    rows = []
    for label, suffix, paper_row in MODELS:
        if suffix not in models:
            continue
        base = replace(get_preset(f"{dataset}-{suffix}"), **extra)
        configs = tuple(scale_iterations(replace(base, seed=s), scale)
                        for s in model_seeds.get(suffix, seeds))
        rows.append(ModelPlan(label, suffix, paper_row, configs))
    return Plan(dataset, Path(out), quick, n_samples, scale, data_dir, device, tuple(rows),
                chain)


# One reproduction at a time in an output folder: a second refuses in one line naming the pid
# of the first, instead of training, evaluating and writing tables under it.
LOCK_NAME = ".reproduce.lock"


def reproduce(p: Plan, *, on_event: Event | None = None) -> dict:
    """Train and evaluate every run of ``p`` (skipping finished work); write the table
    (:meth:`Plan.table_path`). Holds a lock on ``p.out`` (:data:`LOCK_NAME`) throughout."""
    prepare_folder(p.out)
    with RunLock(p.out, name=LOCK_NAME):
        return _reproduce(p, on_event=on_event)


def _reproduce(p: Plan, *, on_event: Event | None) -> dict:
    from gmmn.data import load_dataset

    say = on_event or (lambda msg: log.info("%s", msg))
    # The paper's data sets keep one split whatever the seed; digits splits by the run's
    # seed (as `gmmn train` does), so each seed loads its own.
    splits_of: dict[tuple[int, str], object] = {}
    rows = []
    for model in p.models:
        runs = []
        for cfg in model.configs:
            key = (cfg.seed, cfg.split)
            if key not in splits_of:
                splits_of[key] = load_dataset(p.dataset, data_dir=p.data_dir, seed=cfg.seed,
                                              split=cfg.split)
                _check_samples_fit(p, splits_of[key].dim)
            runs.append(_run(cfg, splits_of[key], p, say,
                             parzen_variant=PARZEN_VARIANTS.get(model.suffix, "gmmn")))
        rows.append(_row(model, runs))
        if p.chain and family_of(model.configs[0]).samples_by_chain:
            rows[-1]["chain"] = dict(p.chain)
    table = {"dataset": p.dataset, "quick": p.quick, "n_samples": p.n_samples,
             "iterations_scale": p.scale, "rows": rows, "real_data": _real_row(rows),
             "paper": {k: {"mnist": [v[0], v[1]], "tfd": [v[2], v[3]]}
                       for k, v in PAPER_TABLE.items()},
             "versions": package_versions()}
    p.out.mkdir(parents=True, exist_ok=True)
    md, js = p.table_path(".md"), p.table_path(".json")
    _write_text(js, json.dumps(table, indent=2) + "\n")
    _write_text(md, render_table(table))
    say(f"wrote {md} and {js}")
    return table


def _write_text(path: Path, text: str) -> None:
    data = text.encode()
    atomic_write(path, lambda f: f.write(data))


def _check_samples_fit(p: Plan, dim: int) -> None:
    """Refuse --n-samples that cannot fit before training anything: the evaluation holds
    the samples and as many data rows (float32)."""
    from gmmn.memory import check_fits

    check_fits(8.0 * p.n_samples * dim, what=f"--n-samples {p.n_samples} of {dim} dimensions",
               fix="pass a smaller --n-samples")


def _run(cfg: TrainConfig, splits, p: Plan, say: Event, *,
         parzen_variant: str = "gmmn") -> dict:
    """Train (or resume, or keep) one run and evaluate it with its own seed (and the row's
    Parzen variant)."""
    from gmmn.api import load_run
    from gmmn.evaluate.report import evaluate_run
    from gmmn.training.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from gmmn.training.run import resolve_device, run_training
    from gmmn.training.rundir import METRICS_NAME

    rel = run_dir_name(cfg)
    run_dir = p.out / rel
    # Resuming a finished run only checks that its settings match; an unfinished one
    # continues from its checkpoint; a missing one starts.
    say(f"{cfg.preset} seed {cfg.seed}: training ({cfg.model.iterations} iterations) in "
        f"{run_dir}")
    fit = run_training(cfg, out_dir=run_dir, resume=True, splits=splits).fit_check
    if fit is not None and fit.failed:  # still scored: the table shows what it is worth
        say(f"{cfg.preset} seed {cfg.seed}: warning: {fit.message()}")
    train_seconds = float(load_checkpoint(run_dir / CHECKPOINT_NAME)["elapsed"])
    # `gmmn evaluate` runs on the CPU unless told otherwise; so does this, so that the
    # printed command recomputes the same numbers.
    eval_device = str(resolve_device(p.device)) if p.device else "cpu"
    chain = dict(p.chain) if family_of(cfg).samples_by_chain else {}
    eval_dir = run_dir / eval_dir_name(chain)
    timing_path = eval_dir / "timing.json"
    grid = chain_noise_grid(cfg)
    want = {"n_samples": p.n_samples, "seed": cfg.seed,
            **({"parzen_variant": parzen_variant} if parzen_variant != "gmmn" else {}),
            **({"chain_noise_grid": list(grid)} if grid else {}),
            **({"chain": chain} if chain else {})}
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    report_path = eval_dir / "report.json"
    if (report_path.exists() and {k: timing.get(k) for k in want} == want
            and report_path.stat().st_mtime >= (run_dir / CHECKPOINT_NAME).stat().st_mtime):
        say(f"{cfg.preset} seed {cfg.seed}: evaluation done before, kept")
        report = json.loads(report_path.read_text())
    else:
        say(f"{cfg.preset} seed {cfg.seed}: evaluating ({p.n_samples} Parzen samples)")
        t0 = time.perf_counter()
        run = load_run(run_dir, device=eval_device)
        # A baseline's chains start from these training rows (never test rows).
        sampler = run.sampler(rows=splits.train, **chain)
        report = evaluate_run(sampler, splits, out_dir=eval_dir, n_samples=p.n_samples,
                              seed=cfg.seed, metrics_file=run_dir / METRICS_NAME,
                              chain_noise_grid=grid, status=run.status,
                              parzen_variant=parzen_variant)
        timing = {**want, "seconds": time.perf_counter() - t0}
        _write_text(timing_path, json.dumps(timing) + "\n")
    return {
        "seed": cfg.seed, "run": str(rel),
        "parzen": _pick(report.get("parzen"), "mean", "stderr", "sigma"),
        "fd": _pick(report.get("fd"), "value"),
        "kid": _pick(report.get("kid"), "mean", "std"),
        "classes_present": _pick(report.get("coverage"), "classes_present", "total_variation"),
        "precision_recall": _pick(report.get("precision-recall"), "precision", "recall"),
        "classifier_accuracy": (report.get("classifier") or {}).get("test_accuracy"),
        # a conditional run's (docs/conditional.md); None for the others
        "conditional_accuracy": _pick(report.get("conditional_accuracy"), "overall",
                                      "per_class"),
        "train_seconds": train_seconds, "eval_seconds": float(timing["seconds"]),
        "commands": [train_command(cfg, rel),
                     evaluate_command(rel, n_samples=p.n_samples, seed=cfg.seed,
                                      data_dir=p.data_dir, device=eval_device,
                                      noise_grid=grid, chain=chain,
                                      parzen_variant=parzen_variant)],
        "report": str(rel / eval_dir.name / "report.json"),
        "chain_noise_selection": (report.get("chain") or {}).get("noise_selection"),
        "_reference": {k: (report.get(k) or {}).get("reference") for k in
                       ("parzen", "fd", "kid", "coverage", "precision-recall")},
    }


# (row key, the key averaged over seeds) of each aggregated score.
_SCORES = (("parzen", "mean"), ("fd", "value"), ("kid", "mean"),
           ("classes_present", "classes_present"), ("precision_recall", "precision"),
           ("precision_recall", "recall"))


def seed_summary(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation over seeds (None for one seed)."""
    return {"mean": statistics.fmean(values),
            "seed_std": statistics.stdev(values) if len(values) > 1 else None,
            "n_seeds": len(values)}


def _row(model: ModelPlan, runs: list[dict]) -> dict:
    """A model's row: each score's mean and standard deviation over its seeds."""
    row = {"model": model.label, "preset": model.configs[0].preset,
           "paper_row": model.paper_row, "seeds": list(model.seeds)}
    if model.paper_row is not None:
        paper = PAPER_TABLE[model.paper_row]
        row["paper_mnist"] = {"mean": paper[0], "stderr": paper[1]}
    for key, inner in _SCORES:
        values = [r[key][inner] for r in runs if r[key] is not None]
        if len(values) == len(runs):
            row.setdefault(key, {})[inner] = seed_summary(values)
        else:
            row.setdefault(key, None)
    if row["parzen"] is not None:
        # Each run's own standard error over test images, averaged: the within-run noise.
        row["parzen"]["run_stderr"] = statistics.fmean(r["parzen"]["stderr"] for r in runs)
        row["parzen"]["sigmas"] = [r["parzen"]["sigma"] for r in runs]
    if all(r.get("conditional_accuracy") for r in runs):  # a conditional model's row
        row["conditional_accuracy"] = {"overall": seed_summary(
            [r["conditional_accuracy"]["overall"] for r in runs])}
    row["train_seconds"] = statistics.fmean(r["train_seconds"] for r in runs)
    row["eval_seconds"] = statistics.fmean(r["eval_seconds"] for r in runs)
    row["runs"] = runs
    return row


def _pick(entry: dict | None, *keys: str) -> dict | None:
    if not entry or "skipped" in entry:
        return None
    return {k: entry.get(k) for k in keys}


def _real_row(rows: list[dict]) -> dict:
    """Real training images through the same procedure, from the first run's report (every
    report computes the same reference for one dataset, evaluation seed and sample count)."""
    ref = rows[0]["runs"][0]["_reference"]
    for row in rows:
        for run in row["runs"]:
            del run["_reference"]
    return {
        "model": "real data (training images)",
        "seed": rows[0]["runs"][0]["seed"],
        "parzen": _pick(ref["parzen"], "mean", "stderr", "sigma"),
        "fd": _pick(ref["fd"], "value"),
        "kid": _pick(ref["kid"], "mean", "std"),
        "classes_present": _pick(ref["coverage"], "classes_present", "total_variation"),
        "precision_recall": _pick(ref["precision-recall"], "precision", "recall"),
    }


def _agg(entry: dict | None, key: str, fmt: str) -> str:
    """A score over seeds as ``mean +- sd`` (the sd left out for one seed)."""
    if entry is None or entry.get(key) is None:
        return "-"
    value = entry[key]
    if not isinstance(value, dict):  # the real-data row: one number
        return format(value, fmt)
    text = format(value["mean"], fmt)
    if value["seed_std"] is not None:
        text += f" +- {value['seed_std']:{fmt}}"
    return text


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def chain_text(chain: Mapping[str, int]) -> str:
    """``100 chains, burn-in 1000, thin 10`` for the settings given."""
    words = {"chains": "{} chains", "burn_in": "burn-in {}", "thin": "thin {}"}
    return ", ".join(words[k].format(chain[k]) for k in EVAL_CHAIN_FIELDS if k in chain)


def render_table(table: dict) -> str:
    """table.md: our rows beside the paper's numbers, the runs of each seed, the commands."""
    from gmmn.evaluate.report import noise_choice_text

    ds, mnist = table["dataset"], table["dataset"] == "mnist"
    paper_col = "paper, MNIST" if mnist else "paper, MNIST (other data)"
    lines = [f"# Parzen table: {ds}" + (" (--quick: not the paper's settings)"
                                         if table["quick"] else ""), "",
             f"Parzen log-likelihood in nats (higher is better) by the paper's protocol with "
             f"{table['n_samples']} samples per set; iteration counts "
             f"x{table['iterations_scale']:g} of the presets. Each score is the mean over the "
             "row's training seeds +- the standard deviation over those seeds (no +- for one "
             "seed); 'run s.e.' is each run's own standard error of the Parzen mean over test "
             "images, averaged.", "",
             f"| model | seeds | Parzen LL | run s.e. | {paper_col} | FD | KID | classes | "
             "precision | recall | train time (per run) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in [*table["rows"], table["real_data"]]:
        paper = row.get("paper_mnist")
        parzen = row["parzen"]
        stderr = (parzen.get("run_stderr") if "run_stderr" in (parzen or {})
                  else (parzen or {}).get("stderr"))
        seeds = row.get("seeds", [row.get("seed")])
        lines.append(" | ".join([
            f"| {row['model']}" + (f" (`{row['preset']}`" + (
                f"; {chain_text(row['chain'])})" if row.get("chain") else ")")
                if "preset" in row else ""),
            ",".join(map(str, seeds)) if "seeds" in row else "-",
            _agg(parzen, "mean", ".1f"),
            "-" if stderr is None else f"{stderr:.2g}",
            f"{paper['mean']} +- {paper['stderr']}" if paper else "-",
            _agg(row["fd"], "value", ".3g"), _agg(row["kid"], "mean", ".3g"),
            _agg(row["classes_present"], "classes_present", ".2f"),
            _agg(row["precision_recall"], "precision", ".3f"),
            _agg(row["precision_recall"], "recall", ".3f"),
            _seconds(row.get("train_seconds")) + " |"]))
    lines += ["", "FD, KID, classes (fraction of classes present), precision / recall: on "
              "features of the evaluation classifier (docs/evaluation.md); the real-data row "
              "puts training images through the same procedure (evaluation seed "
              f"{table['real_data']['seed']})."]
    if any(row.get("chain") for row in table["rows"]):
        lines += ["", "Baseline rows with chain settings in their name sampled with them "
                      "(`gmmn reproduce --chains / --burn-in / --thin`) instead of their "
                      "presets' own (docs/baselines.md)."]
    if not mnist:
        lines += ["", f"The paper's numbers are MNIST's; {ds} scores are not comparable to "
                      "them in absolute value, only the order of the rows is."]
    lines += ["", "## Each run", "",
              "| model | seed | Parzen LL | sigma | FD | KID | precision / recall | train time "
              "| eval time |", "|---|---|---|---|---|---|---|---|---|"]
    for row in table["rows"]:
        for run in row["runs"]:
            pr, pz = run["precision_recall"], run["parzen"]
            lines.append(" | ".join([
                f"| {row['model']}", str(run["seed"]),
                "-" if pz is None else f"{pz['mean']:.1f} +- {pz['stderr']:.2g}",
                "-" if pz is None else f"{pz['sigma']:.2f}",
                "-" if run["fd"] is None else f"{run['fd']['value']:.3g}",
                "-" if run["kid"] is None else f"{run['kid']['mean']:.3g}",
                f"{pr['precision']:.3f} / {pr['recall']:.3f}" if pr else "-",
                _seconds(run["train_seconds"]), _seconds(run["eval_seconds"]) + " |"]))
    for row in table["rows"]:
        for run in row["runs"]:
            sel = run.get("chain_noise_selection")
            if sel:
                lines += ["", f"{row['model']} seed {run['seed']}: chain noise "
                              f"{noise_choice_text(sel)}."]
    lines += ["", "## Commands for each run", "",
              "Run from the output folder (the paths are relative to it):", ""]
    for row in table["rows"]:
        for run in row["runs"]:
            lines += [f"{row['model']} (`{row['preset']}`), seed {run['seed']}:", "",
                      "```bash", *run["commands"], "```", ""]
    lines += ["## The paper's table (Li et al. 2015, Parzen log-likelihood in nats)", "",
              "| model | MNIST | TFD |", "|---|---|---|"]
    for name, v in table["paper"].items():
        lines.append(f"| {name} | {v['mnist'][0]} +- {v['mnist'][1]} | "
                     f"{v['tfd'][0]} +- {v['tfd'][1]} |")
    lines += ["", "The GMMN data-space row is quoted from secondary sources; the adversarial "
                  "nets row was measured by the GAN paper with its own Parzen variant "
                  "(`gmmn evaluate --parzen-variant gan`); the DBN, stacked CAE and deep GSN "
                  "rows come from the papers the GAN paper cites (docs/RESULTS.md)."]
    return "\n".join(lines) + "\n"
