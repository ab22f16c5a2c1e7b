"""How closely a GMMN+AE run's generated codes match the codes of real training images.

    python scripts/code_space_match.py --run runs/fmnist-ae [--n 2000] [--seed 0]

Prints, for n generated and n real codes (deterministic encoder, no dropout): the median
distance from a generated code to its nearest real code beside the same for a second, disjoint
set of n real codes, both directions, and the median pairwise distance within each set. A
generator that matches the code distribution gives pairs of numbers that agree.
"""

from __future__ import annotations

import argparse

import torch


def median_nn(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.cdist(a, b).min(dim=1).values.median())


def median_pairwise(a: torch.Tensor) -> float:
    """Median distance over distinct pairs of a: the median heuristic of its two halves pooled."""
    from gmmn.mmd import median_heuristic

    half = len(a) // 2
    return median_heuristic(a[:half], a[half:], max_points=len(a))


def main() -> None:
    from gmmn.api import load_run
    from gmmn.data import load_dataset
    from gmmn.errors import GMMNError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a GMMN+AE run directory")
    ap.add_argument("--n", type=int, default=2000, help="codes per set (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    run = load_run(args.run)
    ae = run.model.autoencoder
    if ae is None:
        raise SystemExit(f"error: {args.run} is not a GMMN+AE run (no autoencoder)")
    if run.data.get("mean") is not None:
        raise SystemExit("error: standardised data is not supported by this script")
    cfg = run.config
    try:
        splits = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed)
    except GMMNError as exc:
        raise SystemExit(f"error: {exc}") from None
    g = torch.Generator().manual_seed(args.seed)
    rows = torch.randperm(splits.train.shape[0], generator=g)[:2 * args.n]
    with torch.no_grad():
        real = ae.encode(splits.train[rows[:args.n]])
        real2 = ae.encode(splits.train[rows[args.n:]])
        fake = run.model.generator(run.model.generator.sample_prior(args.n, generator=g))
    print(f"run {args.run}: {args.n} codes of dimension {real.shape[1]} per set")
    print(f"median distance to the nearest real code: generated {median_nn(fake, real):.3f}, "
          f"other real {median_nn(real2, real):.3f}")
    print(f"median distance from a real code to the nearest generated one "
          f"{median_nn(real, fake):.3f}, to the nearest other real one "
          f"{median_nn(real, real2):.3f}")
    print(f"median pairwise distance: generated {median_pairwise(fake):.3f}, "
          f"real {median_pairwise(real):.3f}")


if __name__ == "__main__":
    main()
