"""``gmmn sample``: draw samples from a trained run.

The output format follows the file extension: ``.png`` a grid (image data only), ``.npy`` or
``.csv`` an (N, D) array. The model is rebuilt from the checkpoint alone; a DBN, stacked CAE
or deep GSN run draws by its own Markov chain, started at rows of its training split picked by
``--seed``, with the run's chain settings or the ``--chains`` / ``--burn-in`` / ``--thin`` /
``--chain-noise`` / ``--chain-noise-space`` given here (docs/baselines.md). The file is written
to a temporary name and renamed, so a full disk or a kill never leaves a truncated one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gmmn.errors import ConfigError
from gmmn.files import atomic_write, prepare_folder
from gmmn.memory import check_fits

FORMATS = (".png", ".npy", ".csv")


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="draw samples from a trained run",
                              description=__doc__)
    p.add_argument("--run", required=True, help="run directory (or checkpoint file)")
    p.add_argument("--n", type=int, default=100, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="same seed, same samples")
    p.add_argument("--out", required=True, help="output file: .png, .npy or .csv")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--data-dir", default=None,
                   help="where the run's dataset lives now (baseline runs only: their chains "
                        "start at its training rows) (default: the run's --data-dir)")
    p.add_argument("--qmc", action="store_true",
                   help="randomised quasi-Monte Carlo: feed the prior scrambled Sobol' points "
                        "(randomised by --seed) instead of pseudo-random ones, for estimates of "
                        "smaller variance; --n should be a power of two (GMMN, GMMN+AE, GAN "
                        "runs)")
    p.add_argument("--label", type=int, default=None,
                   help="conditional runs (cgmmn, cgmmn-ae): samples of this class (default: "
                        "classes as often as in training; a .png then shows one row per class)")
    add_chain_flags(p)
    p.set_defaults(handler=run)


def add_chain_flags(p: argparse.ArgumentParser, *, noise_grid: bool = False) -> None:
    """The chain settings of a baseline run (default: the ones stored in its config).

    ``noise_grid``: ``--chain-noise`` also takes a comma-separated list, read as a tuple."""
    from gmmn.config import flag
    from gmmn.sampling import SamplingConfig

    group = p.add_argument_group("baseline chains (DBN, stacked CAE, deep GSN runs; default: "
                                 "the run's config)")
    for name, kind in (("chains", int), ("burn_in", int), ("thin", int),
                       ("chain_noise", _noise_values if noise_grid else float),
                       ("chain_noise_space", str)):
        extra = ("; several values, comma-separated (e.g. 0.1,0.3,1): the one with the best "
                 "validation Parzen log-likelihood is used" if name == "chain_noise"
                 and noise_grid else "")
        group.add_argument(flag(name), dest=name, type=kind, default=None,
                           help=SamplingConfig.help_of(name) + extra)


def _noise_values(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or comma-separated numbers, got {text!r}") from None
    return values


def chain_flags(args: argparse.Namespace) -> dict:
    """The chain settings given on the command line (a prior sampler refuses any)."""
    from gmmn.sampling import CHAIN_FIELDS

    return {k: getattr(args, k, None) for k in CHAIN_FIELDS}


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from gmmn.api import load_run
    from gmmn.sampling import SAMPLE_SEEDS
    from gmmn.training.run import resolve_device

    out = Path(args.out)
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out {out} has an unknown extension; use one of "
                          f"{', '.join(FORMATS)}")
    if args.n <= 0:
        raise ConfigError(f"--n must be positive, got {args.n}")
    if not 0 <= args.seed < SAMPLE_SEEDS:
        raise ConfigError(f"--seed must be from 0 to 2**64 - 1, got {args.seed}")
    device = resolve_device(args.device)
    model = load_run(args.run, device=device)
    sampler = model.sampler(data_dir=args.data_dir, **chain_flags(args))
    if out.suffix.lower() == ".png" and model.image_shape is None:
        raise ConfigError(f"the run in {args.run} is not image data; write .npy or .csv")
    # The samples, their CPU copy and the widest layer's activations, before allocating.
    widest = max((model.dim, *(max(p.shape) for p in model.model.parameters() if p.ndim == 2)))
    check_fits(4.0 * args.n * (2 * model.dim + widest), device=device,
               what=f"--n {args.n} samples of {model.dim} dimensions",
               fix="draw fewer samples per call")
    classes, ncol = getattr(sampler, "classes", None), None
    if args.label is not None:
        x = model.sample(args.n, seed=args.seed, qmc=args.qmc, label=args.label).cpu()
    elif classes is not None and out.suffix.lower() == ".png":
        ncol = -(-args.n // classes)  # one row per class
        x = sampler.sample(args.n, seed=args.seed, qmc=args.qmc,
                           label=torch.arange(args.n) // ncol).cpu()
    else:
        x = (sampler.sample(args.n, seed=args.seed, qmc=True) if args.qmc
             else sampler.sample(args.n, seed=args.seed)).cpu()
    prepare_folder(out.parent, what="the folder of --out")
    if out.suffix.lower() == ".png":
        from gmmn.grid import save_grid

        save_grid(x, model.image_shape, out, ncol=ncol)
    elif out.suffix.lower() == ".npy":
        atomic_write(out, lambda f: np.save(f, x.numpy()))
    else:
        atomic_write(out, lambda f: np.savetxt(f, x.numpy(), delimiter=",", fmt="%.7g"))
    print(f"wrote {args.n} samples of {model.splits_name} to {out}")
    return 0
