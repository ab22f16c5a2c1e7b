"""``gmmn reproduce --dataset D``: the paper's Parzen table, with a GAN baseline, in one go.

Trains D-gmmn, D-gmmn-ae, D-gan (and D-gmmn-ae-plus where it exists; D-dbn, D-scae, D-gsn
and mnist-gan-paper when named in --models) into
OUT/<preset>/seed-<S>/ for each training seed, evaluates each run with the paper's Parzen
protocol and the classifier metrics (.../eval/), and writes OUT/table.md and OUT/table.json
beside the paper's numbers, each row the mean and standard deviation over its seeds
(OUT/table-chains-...md with --chains / --burn-in / --thin).
Rerunning it skips finished work and continues interrupted runs. ``--quick`` is a
minutes-long smoke run (docs/reproduce.md).
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    from gmmn.reproduce import DATASETS, QUICK_SAMPLES

    p = subparsers.add_parser("reproduce", help="train and evaluate GMMN, GMMN+AE and a GAN; "
                                                "write the paper's table",
                              description=__doc__)
    p.add_argument("--dataset", required=True, choices=DATASETS,
                   help="mnist is the paper's own table")
    p.add_argument("--quick", action="store_true",
                   help=f"a fraction of every iteration count and {QUICK_SAMPLES} Parzen "
                        "samples: checks the pipeline in minutes, not the paper's numbers")
    p.add_argument("--out", default=None,
                   help="folder for the runs and the table (default: runs/reproduce-DATASET, "
                        "with -quick appended for --quick)")
    p.add_argument("--seeds", type=_seeds, default=(0,), metavar="S[,S...]",
                   help="training seeds of every model; each run is evaluated with its own "
                        "seed")
    p.add_argument("--model-seeds", action="append", type=_model_seeds, default=[],
                   metavar="MODEL=S[,S...]",
                   help="other seeds for one model, e.g. gan=0 (repeatable; MODEL is a preset "
                        "suffix: gmmn, gmmn-ae, gmmn-ae-plus, gan, gan-paper, dbn, scae, gsn)")
    p.add_argument("--models", type=lambda t: tuple(m for m in t.split(",") if m),
                   default=None, metavar="MODEL[,MODEL...]",
                   help="only these rows (default: gmmn, gmmn-ae, gmmn-ae-plus where it "
                        "exists, gan; gan-paper (MNIST, the GAN paper's recipe, scored by its "
                        "Parzen variant) and the baselines dbn, scae, gsn only when named "
                        "here)")
    p.add_argument("--data-dir", default=None,
                   help="where dataset files are looked for (default: the cache, docs/data.md)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N "
                                                  "(default: the presets' auto)")
    p.add_argument("--n-samples", type=int, default=None,
                   help=f"Parzen samples per set (default: 10000, {QUICK_SAMPLES} with --quick)")
    chain = p.add_argument_group(
        "baseline chains (dbn, scae, gsn rows; evaluation only: the same trained runs, "
        "reports in eval-chains-C-burn-in-B-thin-T/)")
    chain.add_argument("--chains", type=int, default=None,
                       help="chains run side by side, each from a training row (default: the "
                            "presets' 1)")
    chain.add_argument("--burn-in", type=int, default=None,
                       help="chain steps dropped before the first kept state (default: the "
                            "presets' 0)")
    chain.add_argument("--thin", type=int, default=None,
                       help="keep every THIN-th state (default: the presets' 1, consecutive "
                            "states)")
    p.add_argument("--iterations-scale", type=float, default=None,
                   help="multiply every iteration count of the presets by this "
                        "(default: 1, or the dataset's --quick fraction)")
    p.set_defaults(handler=run)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        seeds = ()
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of seeds like 0 or 0,1,2")
    return seeds


def _model_seeds(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL=SEEDS, e.g. gan=0 or "
                                         "gmmn-ae=0,1,2")
    return name, _seeds(rest)


def run(args: argparse.Namespace) -> int:
    from gmmn.reproduce import plan, reproduce

    out = args.out or f"runs/reproduce-{args.dataset}" + ("-quick" if args.quick else "")
    p = plan(args.dataset, out=out, quick=args.quick, seeds=args.seeds,
             model_seeds=dict(args.model_seeds), models=args.models,
             n_samples=args.n_samples, scale=args.iterations_scale, data_dir=args.data_dir,
             device=args.device,
             chain={k: getattr(args, k) for k in ("chains", "burn_in", "thin")
                    if getattr(args, k) is not None})
    reproduce(p, on_event=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(p.table_path(".md").read_text(), end="")
    return 0
