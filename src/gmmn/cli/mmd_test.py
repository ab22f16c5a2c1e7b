"""``gmmn mmd-test A B``: a permutation two-sample test between two sample files.

``--method`` chooses the kernel: the median heuristic (default), MMDAgg, MMD-FUSE or a split
(docs/mmd.md).

Reads .npy, .npz (one array, or the one named by --key-a / --key-b) and .csv (numeric, one
header line allowed); rows are samples, trailing dimensions are flattened. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from gmmn.data.user import check_array_file
from gmmn.errors import ConfigError, DataError
from gmmn.mmd import ESTIMATORS, two_sample_test
from gmmn.mmd._agg import WEIGHTINGS
from gmmn.mmd._methods import METHODS


def _load_csv(path: Path) -> np.ndarray:
    with path.open() as fh:
        first = fh.readline()
    try:
        [float(v) for v in first.split(",")]
        skip = 0
    except ValueError:
        skip = 1  # a header line
    return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)


def _load_npz(path: Path, key: str | None, flag: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as arrays:
        names = list(arrays.files)
        if key is None:
            if len(names) != 1:
                raise DataError(f"{path} holds arrays {names}; choose one with {flag} NAME")
            key = names[0]
        if key not in names:
            raise DataError(f"{path} has no array {key!r}; it holds {names}")
        return arrays[key]


def load_samples(path_text: str, key: str | None = None, flag: str = "--key") -> torch.Tensor:
    """A (n, d) float64 tensor from a .npy / .npz / .csv file, or a DataError naming it."""
    path = Path(path_text)
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".npy", ".npz"):
            check_array_file(path)  # from the headers: damaged, or too big for memory
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            arr = _load_npz(path, key, flag)
        elif suffix == ".csv":
            arr = _load_csv(path)
        else:
            raise DataError(f"{path}: unsupported file type {suffix!r}; use .npy, .npz or .csv")
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
        raise DataError(f"{path} cannot be read as {suffix} numbers ({exc})") from exc
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path} holds {arr.dtype} data; it must be numeric")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise DataError(f"{path} holds no samples (shape {arr.shape})")
    arr = arr.reshape(arr.shape[0], -1) if arr.ndim != 1 else arr[:, None]
    if not np.isfinite(arr).all():
        raise DataError(f"{path} contains NaN or infinite values; clean or drop those rows")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a comma-separated "
                                         "list of numbers") from None


def _run(args: argparse.Namespace) -> int:
    if args.permutations is not None and args.permutations < 1:
        raise ConfigError(f"--permutations {args.permutations} must be >= 1")
    a = load_samples(args.a, args.key_a, "--key-a")
    b = load_samples(args.b, args.key_b, "--key-b")
    if a.shape[1] != b.shape[1]:
        raise DataError(f"{args.a} has {a.shape[1]} features per sample but {args.b} has "
                        f"{b.shape[1]}; both files need the same number of columns")
    sigmas = None if args.sigmas is None else [v for part in args.sigmas for v in part]
    bandwidths = None if args.bandwidths is None else [v for p in args.bandwidths for v in p]
    chosen = {"kernels": args.kernels, "bandwidths": bandwidths,
              "number_bandwidths": args.number_bandwidths,
              "level_permutations": args.level_permutations}
    if args.weighting is not None:
        chosen["weighting"] = args.weighting
    result = two_sample_test(a, b, method=args.method, alpha=args.alpha, sigmas=sigmas,
                             permutations=args.permutations, seed=args.seed,
                             estimator=args.estimator, kernel=args.kernel,
                             standardize=args.standardize, **chosen)
    out = {"statistic": result.statistic, "p_value": result.p_value,
           "permutations": result.permutations, "sigmas": list(result.sigmas),
           "estimator": result.estimator, "kernel": result.kernel, "n": result.n,
           "m": result.m, "seed": args.seed, "standardize": args.standardize,
           "method": result.method, "reject": result.reject, "alpha": result.alpha,
           "decided_by": [{"kernel": c.kernel, "bandwidth": c.bandwidth}
                          for c in result.decided_by]}
    if result.method == "agg":
        out["level_permutations"] = result.level_permutations
        out["level_correction"] = result.level_correction
        out["resampling"] = result.resampling
    print(json.dumps(out, indent=2))
    return 0


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("mmd-test", help="permutation two-sample test by MMD",
                              description=__doc__.splitlines()[0])
    p.add_argument("a", help="first sample file (.npy, .npz or .csv; rows are samples)")
    p.add_argument("b", help="second sample file")
    p.add_argument("--key-a", help="array name inside A when A is an .npz with several")
    p.add_argument("--key-b", help="array name inside B when B is an .npz with several")
    p.add_argument("--method", choices=METHODS, default="median",
                   help="how the kernel is chosen: the median heuristic (or --sigmas), MMDAgg "
                        "(agg), MMD-FUSE (fuse), or chosen on half the data (split); see "
                        "docs/mmd.md")
    p.add_argument("--alpha", type=float, help="level of the decision \"reject\" "
                   "(default: 0.05)")
    # 1000 relabellings resolve p-values down to about 0.001.
    p.add_argument("--permutations", type=int,
                   help="random relabellings; agg, fuse and split take 2000 when not given "
                        "(default: 1000)")
    p.add_argument("--level-permutations", type=int,
                   help="agg: relabellings for the level correction (default: 2000)")
    p.add_argument("--kernels", type=_names,
                   help="agg, fuse, split: kernel families, e.g. laplace,gaussian (default: "
                        "laplace,gaussian; split: gaussian)")
    p.add_argument("--bandwidths", type=_floats, nargs="+",
                   help="agg, fuse, split: the bandwidths for every family, instead of the "
                        "papers' collection from distance quantiles")
    p.add_argument("--number-bandwidths", type=int,
                   help="agg, fuse, split: bandwidths per family (default: 10; split: 100)")
    p.add_argument("--weighting", choices=WEIGHTINGS,
                   help="agg: weights of the bandwidths (default: uniform)")
    p.add_argument("--seed", type=int, default=0, help="seed of the relabellings")
    # Comma- or space-separated, so `--sigmas 1,2` works as it does for `gmmn train`.
    p.add_argument("--sigmas", type=_floats, nargs="+",
                   help="kernel scales as STANDARD DEVIATIONS, e.g. 1,2 or 1 2 "
                        "(default: median heuristic)")
    # Unbiased: the statistic is 0 in expectation under H0, so its value is readable too.
    p.add_argument("--estimator", choices=ESTIMATORS, default="unbiased",
                   help=f"estimate of MMD^2: {', '.join(ESTIMATORS)}")
    p.add_argument("--kernel", default="gaussian", help="gaussian, laplacian or imq")
    p.add_argument("--standardize", action="store_true",
                   help="z-score both files by their pooled per-feature mean and sd first: "
                        "for tables whose columns have different units (docs/mmd.md)")
    p.set_defaults(handler=_run)
