"""``gmmn evaluate --run DIR``: the Parzen protocol, metrics and figures of a trained run.

Writes report.json (``parzen`` with ``mean``, ``stderr``, ``sigma``; one key per metric, each
with its real-data ``reference``), report.md and the PNG figures into one folder.

``--out`` is a folder (an existing one, or a path without an extension), which gets
report.json, or a ``NAME.json`` report, which gets NAME.md and figures named NAME-*.png
beside it, so reports in one folder keep their own files. Nothing is written outside that
folder, and an ``--out`` whose files would overwrite a run's own (its checkpoint, config,
metrics or sample grids) is refused.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from gmmn.errors import CheckpointError, ConfigError, OutputError


def register(sub: argparse._SubParsersAction) -> None:
    from gmmn.evaluate.report import METRICS, TABULAR_ALLOWED, TABULAR_METRICS

    p = sub.add_parser("evaluate", help="Parzen log-likelihood, FD, KID, coverage, figures",
                       description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, type=pathlib.Path, help="a run directory")
    p.add_argument("--metrics", default=None,
                   help=f"comma-separated subset of {','.join(METRICS)} for images (default: "
                        f"all) or of {','.join(TABULAR_ALLOWED)} for tables (default: "
                        f"{','.join(TABULAR_METRICS)})")
    p.add_argument("--out", type=pathlib.Path, default=None,
                   help="a folder for report.json, report.md and the figures, or a NAME.json "
                        "report path, with NAME.md and NAME-*.png figures beside it "
                        "(default: RUN/eval/report.json)")
    p.add_argument("--n-samples", type=int, default=10000,
                   help="samples per Parzen set, as in the paper; for tables also the "
                        "samples that marginals and correlation score (the two-sample tests "
                        "use as many samples as test rows)")
    p.add_argument("--parzen-variant", choices=("gmmn", "gan"), default="gmmn",
                   help="gmmn: this paper's protocol; gan: the GAN paper's")
    p.add_argument("--dataset", default=None,
                   help="dataset name or path (default: the one in the run's config)")
    p.add_argument("--data-dir", type=pathlib.Path, default=None,
                   help="where datasets live (default: the run's --data-dir)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the samples drawn for the metrics (the split is the run's)")
    p.add_argument("--reconstructions", action="store_true",
                   help="score the autoencoder's reconstructions of training images instead "
                        "of samples (GMMN+AE runs): the ceiling a perfect code-space GMMN "
                        "would reach (default report: RUN/eval-reconstructions/report.json)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    from gmmn.cli.sample import add_chain_flags

    add_chain_flags(p, noise_grid=True)
    p.set_defaults(handler=main)


def _load_run(run_dir: pathlib.Path, *, device: Any):
    """The trained run (:class:`gmmn.api.Run`)."""
    from gmmn.api import load_run

    return load_run(run_dir, device=device)


def report_path(out: pathlib.Path | None, run_dir: pathlib.Path, *,
                reconstructions: bool = False) -> pathlib.Path:
    """The report.json (or NAME.json) that ``--out`` names, or one line saying why not."""
    from fnmatch import fnmatch

    from gmmn.evaluate.report import report_files
    from gmmn.training.checkpoint import CHECKPOINT_NAME
    from gmmn.training.rundir import METRICS_NAME, RUN_FILES

    if out is None:
        return run_dir / ("eval-reconstructions" if reconstructions else "eval") / "report.json"
    given = out
    if out.is_dir() or (not out.suffix and not out.exists()):
        out = out / "report.json"
    elif out.suffix.lower() != ".json":
        raise ConfigError(f"--out {out} is neither a .json report nor a folder; name a .json "
                          "file (report.md and the figures go beside it) or a folder")
    out = out.with_suffix(".json")  # the name evaluate_run writes: NAME.json, NAME.md
    files, folder = report_files(out.stem), out.parent
    if folder.resolve() == run_dir.resolve() or (folder / CHECKPOINT_NAME).exists():
        # A run folder: the report's files must not replace the run's own.
        clash = [f for f in files if any(fnmatch(f, pat) for pat in (*RUN_FILES,
                                                                      METRICS_NAME))]
        if clash:
            raise OutputError(f"--out {given} would overwrite the run's {clash[0]} in {folder}; "
                              f"choose another folder (the default is "
                              f"{run_dir / 'eval'}) or another report name")
    return out


class _Bars:
    """One tqdm bar per stage of the evaluation, closed when the stage completes. Off a
    terminal (a log file, CI) one line per stage when it completes instead of tqdm's
    carriage-return redraws, as `gmmn train` does."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}
        self.terminal = sys.stderr.isatty()

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if not self.terminal:
            if done >= total and stage not in self.bars:
                self.bars[stage] = None
                print(f"gmmn: evaluate: {stage} done", file=sys.stderr, flush=True)
            return
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            if bar is not None:
                bar.close()


def main(args: argparse.Namespace) -> int:
    from gmmn.data import load_dataset
    from gmmn.evaluate.report import evaluate_run, parse_metrics
    from gmmn.training.run import resolve_device
    from gmmn.training.rundir import METRICS_NAME

    # A bad name fails before the slow loading; the default set waits for the data's kind.
    chosen = parse_metrics(args.metrics) if args.metrics is not None else None
    if args.reconstructions and chosen is not None and "interpolation" in chosen:
        raise ConfigError("--reconstructions has no prior to interpolate in; drop "
                          "interpolation from --metrics")
    if not args.run.is_dir():
        raise CheckpointError(f"run directory {args.run} does not exist; pass the folder "
                              "that `gmmn train --out` wrote")
    device = resolve_device(args.device)
    out = report_path(args.out, args.run, reconstructions=args.reconstructions)
    grid = args.chain_noise if args.chain_noise and len(args.chain_noise) > 1 else None
    args.chain_noise = args.chain_noise[0] if args.chain_noise and not grid else None
    run = _load_run(args.run, device=device)
    from gmmn.cli.sample import chain_flags
    from gmmn.families import family_of

    chain = chain_flags(args)
    run.sampler(**chain)  # a prior run refuses chain flags before the data is loaded
    if grid and not family_of(run.config).tunable_noise:
        raise ConfigError("a grid of chain noise values is only chosen for stacked CAE runs "
                          "(family scae), whose chain has that noise; give one value or "
                          "none")
    name = args.dataset or run.config.dataset
    # The run's seed fixed its split (digits, user data): evaluate on the same held-out rows.
    cfg = run.config
    # ... and on its own validation rows (the GAN paper's split for a run trained on it).
    split = cfg.split if name == cfg.dataset else "paper"
    splits = load_dataset(name, data_dir=args.data_dir or cfg.data_dir, seed=cfg.seed,
                          split=split)
    chosen = parse_metrics(args.metrics, tabular=splits.image_shape is None)
    if args.reconstructions:
        chosen = tuple(m for m in chosen if m != "interpolation")
        sampler = run.reconstructions(splits.train)
    else:
        # A baseline's chains start from these training rows (never test rows).
        sampler = run.sampler(rows=splits.train, **chain)
    bars = _Bars()
    try:
        report = evaluate_run(sampler, splits, out_dir=out.parent, metrics_to_run=chosen,
                              status=run.status,
                              n_samples=args.n_samples, seed=args.seed,
                              parzen_variant=args.parzen_variant,
                              metrics_file=args.run / METRICS_NAME,
                              chain_noise_grid=grid, progress=bars, report_name=out.stem)
    finally:
        bars.close()
    summary = report.get("parzen")
    line = (f"Parzen {summary['mean']:.2f} +- {summary['stderr']:.2f} nats (sigma "
            f"{summary['sigma']:.2f}); " if summary else "")
    print(f"{line}report: {out}, {out.with_suffix('.md')}")
    return 0
