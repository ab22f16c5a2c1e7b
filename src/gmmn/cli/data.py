"""``gmmn data``: inspect a dataset's splits, download one into the cache, or import MNIST
from the classic ``mnist.pkl.gz``. ``info`` only reads: files it does not find are an error
that says how to get them, never a download."""

from __future__ import annotations

import argparse
import json
import sys

from gmmn.errors import ConfigError, DataError

# Datasets `gmmn data import` rebuilds from a file (gmmn.data.mnist_pickle).
IMPORTERS = ("mnist",)


def _progress(desc: str, total: int | None):
    # Only the CLI draws bars; the library takes this factory and stays quiet without it.
    from tqdm import tqdm

    return tqdm(desc=desc, total=total, unit="B", unit_scale=True, unit_divisor=1024,
                leave=False, file=sys.stderr)


def _image_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 28 or 32x48 (HxW)")
    return parts[0], parts[1]


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="inspect, download or import datasets",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    info = sub.add_parser("info", help="show the splits of a dataset or data file",
                          description="Show the splits of a dataset or data file: shapes, "
                          "value ranges, labels. It never downloads: for a missing mnist or "
                          "fashion-mnist, run `gmmn data download NAME` first.")
    info.add_argument("dataset", metavar="NAME|PATH",
                      help="digits, mnist, fashion-mnist, tfd, or a .npz/.npy/.csv/.mat/folder")
    info.add_argument("--data-dir", default=None, help="folder searched first for data files")
    info.add_argument("--seed", type=int, default=0, help="seed of the validation/test hold-out")
    info.add_argument("--standardize", action="store_true",
                      help="z-score features with the training split's mean and std")
    info.add_argument("--image-size", type=_image_size, default=None, metavar="HxW",
                      help="resize the images of a folder to this size")
    # Kept so that older scripts still run: info never downloads now.
    info.add_argument("--no-download", action="store_true",
                      help="accepted and ignored: info never downloads")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=_info)

    down = sub.add_parser("download", help="fetch mnist or fashion-mnist into the cache",
                          description="Fetch the four IDX files of mnist or fashion-mnist "
                          "into the cache ($GMMN_DATA/NAME, default ~/.cache/gmmn/NAME), each "
                          "checked against its SHA-256; files already found are kept.")
    down.add_argument("dataset", metavar="NAME", help="mnist or fashion-mnist")
    down.add_argument("--data-dir", default=None, help="folder searched before downloading")
    down.set_defaults(handler=_download)

    imp = sub.add_parser("import", help="write the official MNIST IDX files from mnist.pkl.gz",
                         description="Rebuild the four official MNIST IDX files from the "
                         "classic mnist.pkl.gz (50000/10000/10000 images), check each against "
                         "the published SHA-256, and put them into the cache (or --data-dir). "
                         "The pickle is read by a restricted unpickler that loads numpy "
                         "arrays and nothing else.")
    imp.add_argument("dataset", metavar="NAME", choices=IMPORTERS,
                     help="mnist (the only dataset with a pickle importer)")
    imp.add_argument("path", metavar="PATH", help="mnist.pkl.gz, gzipped or not")
    imp.add_argument("--data-dir", default=None,
                     help="write the IDX files here instead of the cache ($GMMN_DATA/mnist)")
    imp.set_defaults(handler=_import)


def _summary(splits) -> dict:
    def part(x, y):
        return {"shape": list(x.shape), "min": float(x.min()), "max": float(x.max()),
                "labels": None if y is None else sorted({int(v) for v in y.tolist()})}

    out = {
        "name": splits.name,
        "source": splits.source,
        "dim": splits.dim,
        "image_shape": list(splits.image_shape) if splits.image_shape else None,
        "unit_interval": splits.unit_interval,
        "output_layer": "sigmoid" if splits.unit_interval else "linear",
        "standardized": splits.standardized,
        "label_names": list(splits.label_names) if splits.label_names else None,
        "splits": {
            "train": part(splits.train, splits.train_labels),
            "validation": part(splits.validation, splits.validation_labels),
            "test": part(splits.test, splits.test_labels),
        },
    }
    if splits.test_folds is not None:
        out["folds"] = {
            "validation": [list(f.shape) for f in splits.validation_folds],
            "test": [list(f.shape) for f in splits.test_folds],
        }
    return out


def _info(args: argparse.Namespace) -> int:
    from gmmn.config import TrainConfig
    from gmmn.data import load_dataset

    # the seed picks the split, as gmmn train --seed does: the same range
    low, high = TrainConfig.__dataclass_fields__["seed"].metadata["bounds"][:2]
    if not low <= args.seed <= high:
        raise ConfigError(f"--seed must be from {low} to {high}, as for gmmn train, got "
                          f"{args.seed}")
    _check_files(args.dataset, args.data_dir)
    splits = load_dataset(args.dataset, data_dir=args.data_dir, seed=args.seed,
                          standardize=args.standardize, image_size=args.image_size,
                          download=False)
    info = _summary(splits)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    shape = "x".join(map(str, splits.image_shape)) if splits.image_shape else "none (table)"
    print(f"dataset      {info['name']}")
    print(f"found in     {info['source']}")
    print(f"dimension    {info['dim']}  (image shape {shape})")
    print(f"values       {'in [0, 1]' if splits.unit_interval else 'outside [0, 1]'}"
          f"{', standardised with train mean/std' if splits.standardized else ''}"
          f" -> generator output layer: {info['output_layer']}")
    for name, p in info["splits"].items():
        labels = ("no labels" if p["labels"] is None
                  else f"labels {p['labels'][0]}..{p['labels'][-1]} ({len(p['labels'])} values)")
        print(f"{name:<12} {p['shape'][0]:>7} x {p['shape'][1]:<6} "
              f"range [{p['min']:.4g}, {p['max']:.4g}]  {labels}")
    if splits.label_names:
        print("classes      " + ", ".join(f"{i} {n}" for i, n in enumerate(splits.label_names)))
    if "folds" in info:
        print("folds        validation " + ", ".join(str(s[0]) for s in info["folds"]["validation"])
              + "; test " + ", ".join(str(s[0]) for s in info["folds"]["test"]))
    return 0


def _check_files(name: str, data_dir: str | None) -> None:
    """A downloadable dataset whose files are missing: one DataError saying where info
    looked and how to get them (the loader's own message would only say where to put them)."""
    from gmmn.data import cache_dir, mnist

    source = mnist.SOURCES.get(name.lower())
    if source is None:
        return
    dirs = mnist.search_dirs(source, data_dir)  # a missing --data-dir is its own error
    try:
        mnist.fetch(source, data_dir=data_dir, download_missing=False)
    except DataError as exc:
        get = f"`gmmn data download {source.name}`"
        if source.name in IMPORTERS:
            get += (f" or `gmmn data import {source.name} FILE` (FILE: the classic "
                    f"{source.name}.pkl.gz)")
        raise DataError(f"the {source.name} files were not found in "
                        f"{', '.join(map(str, dirs))}; get them with {get}, or put the four "
                        f"IDX files into {cache_dir(source.name)}") from exc


def _download(args: argparse.Namespace) -> int:
    from gmmn.data import DATASETS, download_dataset

    if args.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {args.dataset!r}; choose mnist or fashion-mnist")
    for path in download_dataset(args.dataset, data_dir=args.data_dir, progress=_progress):
        print(path)
    return 0


def _import(args: argparse.Namespace) -> int:
    from gmmn.data import cache_dir
    from gmmn.data.mnist_pickle import import_mnist_pickle

    dest = args.data_dir if args.data_dir is not None else cache_dir(args.dataset)
    for path in import_mnist_pickle(args.path, dest):
        print(path)
    return 0
