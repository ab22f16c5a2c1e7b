"""MNIST and Fashion-MNIST: find or download the four IDX files, split as the paper does.

Where files are looked for, in order (the first hit per file wins):
``data_dir``, ``data_dir/<name>``, the cache ``$GMMN_DATA/<name>`` (default
``~/.cache/gmmn/<name>``), then system copies (Debian's ``dataset-fashion-mnist`` puts the
Fashion files in ``/usr/share/datasets/fashion-mnist``). Missing files are downloaded into
the cache. Each file may be gzipped or raw.

Splits (docs/paper.md, "Data"): the official 10000 test images in file order; 5000 of the 60000
training images held out for validation by ``numpy.random.default_rng(seed).permutation``
(seed 0 gives the project's fixed split); the other 55000 train. Both keep file order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gmmn.data.download import ProgressFactory, cache_dir, download
from gmmn.data.idx import parse_idx, read_bytes, sha256_hex
from gmmn.data.splits import Splits, make_splits
from gmmn.errors import DataError

log = logging.getLogger(__name__)

_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_STANDARD_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class IdxSource:
    """Where a four-file IDX dataset comes from and how to recognise its files.

    `sha256` maps a file name to the SHA-256 of its *uncompressed* IDX bytes, so the check
    holds for the served .gz, a raw copy and any recompressed copy alike; a file without an
    entry is checked by its IDX header only.
    """

    name: str
    mirrors: tuple[str, ...]
    sha256: Mapping[str, str]
    files: Mapping[str, str] = field(default_factory=lambda: dict(_STANDARD_FILES))
    n_validation: int = 5000
    system_dirs: tuple[str, ...] = ()
    label_names: tuple[str, ...] | None = None


SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        name="mnist",
        # yann.lecun.com is left out: it has answered with HTTP 403 for years.
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        # Not computed here (no MNIST copy on the build machine): these are the published
        # SHA-256 values of the uncompressed official files, identical across several
        # independent public projects that pin them. A mismatch is reported, not ignored.
        sha256={
            "train-images-idx3-ubyte.gz":
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte.gz":
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte.gz":
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte.gz":
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        label_names=tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": IdxSource(
        name="fashion-mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        # Computed from Debian's dataset-fashion-mnist (uncompressed). Its .gz files are
        # recompressed (their MD5s differ from the ones Zalando publishes), so hashing the
        # .gz bytes would reject either the Debian copy or the official download.
        sha256={
            "train-images-idx3-ubyte.gz":
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte.gz":
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte.gz":
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte.gz":
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        label_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                     "Sneaker", "Bag", "Ankle boot"),
    ),
}


def search_dirs(source: IdxSource, data_dir: str | Path | None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise DataError(f"data directory {data_dir} does not exist; create it or fix the path")
        dirs += [data_dir, data_dir / source.name]
    dirs.append(cache_dir(source.name))
    dirs += [Path(d) for d in source.system_dirs]
    return dirs


def _find(filename: str, dirs: list[Path]) -> Path | None:
    # The raw name too, for users who unpacked the archives.
    names = (filename, filename.removesuffix(".gz"))
    for d in dirs:
        for name in names:
            if (d / name).is_file():
                return d / name
    return None


def _check(path: Path, source: IdxSource, filename: str, *, ndim: int) -> np.ndarray:
    data = read_bytes(path)
    want = source.sha256.get(filename)
    if want is not None and sha256_hex(data) != want:
        raise DataError(f"{path} is not the official {source.name} file {filename} (SHA-256 "
                        f"of its content is {sha256_hex(data)[:12]}..., expected {want[:12]}...);"
                        " delete it so it is downloaded again, or replace it")
    return parse_idx(data, source=str(path), ndim=ndim)


def fetch(source: IdxSource, *, data_dir: str | Path | None = None, download_missing: bool = True,
          progress: ProgressFactory | None = None) -> dict[str, Path]:
    """The path of each of the four files, downloading missing ones into the cache."""
    dirs = search_dirs(source, data_dir)
    cache = cache_dir(source.name)
    paths: dict[str, Path] = {}
    for role in _ROLES:
        filename = source.files[role]
        found = _find(filename, dirs)
        if found is None:
            where = (f"put {', '.join(source.files[r] for r in _ROLES)} (gzipped or not) into "
                     f"{cache}" + (" or the data directory" if data_dir is not None else ""))
            if not download_missing:
                raise DataError(f"{source.name} file {filename} was not found in "
                                f"{', '.join(map(str, dirs))}; {where}")
            ndim = 3 if role.endswith("images") else 1

            def verify(path: Path, filename: str = filename, ndim: int = ndim) -> None:
                _check(path, source, filename, ndim=ndim)

            try:
                download([m + filename for m in source.mirrors], cache / filename,
                         verify=verify, progress=progress)
            except DataError as exc:
                raise DataError(f"{exc}; without network, {where}") from exc
            found = cache / filename
        paths[role] = found
    return paths


# How the training file's images split into training and validation rows: the GMMN paper's
# random hold-out of n_validation images, or the GAN paper's file order (its mnist.yaml
# trains on images 0-49999 and validates on 50000-59999).
SPLITS = ("paper", "gan")
GAN_TRAIN_ROWS = 50000


def load_idx_dataset(source: IdxSource, *, data_dir: str | Path | None = None, seed: int = 0,
                     standardize: bool = False, download_missing: bool = True,
                     progress: ProgressFactory | None = None, split: str = "paper") -> Splits:
    """Load an MNIST-layout dataset as Splits (see the module docstring for the rules).

    ``split="gan"``: the first 50000 training images train, the rest validate (the GAN
    paper's protocol); ``"paper"``: ``source.n_validation`` random images validate."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {SPLITS}")
    paths = fetch(source, data_dir=data_dir, download_missing=download_missing,
                  progress=progress)
    arrays = {role: _check(paths[role], source, source.files[role],
                           ndim=3 if role.endswith("images") else 1) for role in _ROLES}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if len(images) != len(labels):
            raise DataError(f"{paths[f'{part}_images']} holds {len(images)} images but "
                            f"{paths[f'{part}_labels']} holds {len(labels)} labels; the two "
                            "files must come from the same release")
        if images.dtype != np.uint8:
            raise DataError(f"{paths[f'{part}_images']} stores {images.dtype} values; "
                            "MNIST-layout images must be unsigned bytes")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(f"{paths['train_images']} holds {arrays['train_images'].shape[1:]} "
                        f"images but {paths['test_images']} holds "
                        f"{arrays['test_images'].shape[1:]}; both must have one image size")
    n = len(arrays["train_images"])
    if split == "gan":
        if n <= GAN_TRAIN_ROWS:
            raise DataError(f"{paths['train_images']} holds {n} images; the GAN paper's split "
                            f"trains on the first {GAN_TRAIN_ROWS} and validates on the rest, "
                            f"so it needs more; use --split paper")
        train_idx, val_idx = np.arange(GAN_TRAIN_ROWS), np.arange(GAN_TRAIN_ROWS, n)
    else:
        if not 0 < source.n_validation < n:
            raise DataError(f"{paths['train_images']} holds {n} images, too few to hold out "
                            f"{source.n_validation} for validation")
        perm = np.random.default_rng(seed).permutation(n)
        val_idx = np.sort(perm[: source.n_validation])
        train_idx = np.sort(perm[source.n_validation:])
    images = arrays["train_images"].astype(np.float32) / 255.0
    test = arrays["test_images"].astype(np.float32) / 255.0
    labels = arrays["train_labels"]
    where = sorted({str(p.parent) for p in paths.values()})
    return make_splits(
        source.name,
        {"train": images[train_idx], "validation": images[val_idx], "test": test},
        labels={"train": labels[train_idx], "validation": labels[val_idx],
                "test": arrays["test_labels"]},
        image_shape=tuple(arrays["test_images"].shape[1:]),
        source=", ".join(where),
        standardize=standardize,
        label_names=source.label_names,
    )
