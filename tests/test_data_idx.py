"""IDX parsing and the MNIST-layout loader, on the real Fashion-MNIST files and hand-made ones."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gmmn.data import load_dataset
from gmmn.data.idx import parse_idx, read_bytes, write_idx
from gmmn.data.mnist import IdxSource, load_idx_dataset
from gmmn.errors import DataError

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    # Never read or write the user's real cache from a test.
    monkeypatch.setenv("GMMN_DATA", str(tmp_path / "cache"))


def tiny_arrays(n_train: int = 12, n_test: int = 5, seed: int = 1):
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 4, 3), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 4, 3), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_tiny(folder: Path, arrays=None) -> dict[str, np.ndarray]:
    arrays = arrays or tiny_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        write_idx(folder / name, a)
    return arrays


TINY = IdxSource(name="tiny", mirrors=(), sha256={}, n_validation=3)


# --- the real Fashion-MNIST files -------------------------------------------------------

needs_fashion = pytest.mark.skipif(not FASHION.is_dir(),
                                   reason="Debian's dataset-fashion-mnist is not installed")


def _raw_idx(name: str, header: int) -> np.ndarray:
    # An independent reader: plain gzip + numpy, skipping the fixed-size header.
    return np.frombuffer(gzip.decompress((FASHION / name).read_bytes()), np.uint8, offset=header)


@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion-mnist", download=False)


@pytest.mark.integration
@needs_fashion
def test_fashion_shapes_range_and_source(fashion):
    assert fashion.train.shape == (55000, 784)
    assert fashion.validation.shape == (5000, 784)
    assert fashion.test.shape == (10000, 784)
    assert fashion.train.dtype == torch.float32 and fashion.test_labels.dtype == torch.int64
    assert fashion.image_shape == (28, 28) and fashion.unit_interval
    assert fashion.train.min() == 0.0 and fashion.train.max() == 1.0
    assert fashion.source == str(FASHION)
    assert fashion.label_names[9] == "Ankle boot"


@pytest.mark.integration
@needs_fashion
def test_fashion_test_set_keeps_official_order(fashion):
    raw_labels = _raw_idx("t10k-labels-idx1-ubyte.gz", 8)
    assert fashion.test_labels[:5].tolist() == [9, 2, 1, 1, 6] == raw_labels[:5].tolist()
    assert np.array_equal(fashion.test_labels.numpy(), raw_labels)
    raw_images = _raw_idx("t10k-images-idx3-ubyte.gz", 16).reshape(10000, 784)
    assert torch.equal(fashion.test[123], torch.from_numpy(raw_images[123] / np.float32(255)))


@pytest.mark.integration
@needs_fashion
def test_fashion_label_counts_and_validation_rule(fashion):
    assert torch.bincount(fashion.test_labels).tolist() == [1000] * 10
    both = torch.cat([fashion.train_labels, fashion.validation_labels])
    assert torch.bincount(both).tolist() == [6000] * 10
    # Validation = training images at default_rng(0).permutation(60000)[:5000], file order.
    raw_labels = _raw_idx("train-labels-idx1-ubyte.gz", 8)
    held_out = np.sort(np.random.default_rng(0).permutation(60000)[:5000])
    assert np.array_equal(fashion.validation_labels.numpy(), raw_labels[held_out])


@pytest.mark.integration
@needs_fashion
def test_fashion_split_is_the_papers_whatever_the_run_seed(fashion):
    # A run with --seed 3 must be scored on the same validation images as one with seed 0.
    other = load_dataset("fashion-mnist", download=False, seed=3)
    assert torch.equal(other.validation_labels, fashion.validation_labels)
    assert torch.equal(other.validation[:50], fashion.validation[:50])


@needs_fashion
def test_debian_gzip_is_recompressed_but_content_is_official():
    # Zalando's published MD5 of the served .gz differs from Debian's file, while the
    # content hash in our table matches: the reason checksums cover uncompressed bytes.
    gz = (FASHION / "t10k-labels-idx1-ubyte.gz").read_bytes()
    assert hashlib.md5(gz).hexdigest() != "bb300cfdad3c16e7a12a480ee83cd310"
    assert hashlib.sha256(gzip.decompress(gz)).hexdigest().startswith("0402a96d")


# --- hand-made IDX files ----------------------------------------------------------------

def test_parse_round_trip_raw_and_gzip(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "a", a)
    assert read_bytes(tmp_path / "a.gz") == read_bytes(tmp_path / "a")
    got = parse_idx(read_bytes(tmp_path / "a.gz"), source="a", ndim=3)
    assert np.array_equal(got, a)
    f = np.array([1.5, -2.0], dtype=np.float32)
    write_idx(tmp_path / "f", f)
    assert np.array_equal(parse_idx(read_bytes(tmp_path / "f"), source="f"), f)


def test_tiny_dataset_splits_and_scaling(tmp_path):
    arrays = write_tiny(tmp_path)
    s = load_idx_dataset(TINY, data_dir=tmp_path)
    assert (s.train.shape, s.validation.shape, s.test.shape) == ((9, 12), (3, 12), (5, 12))
    held = np.sort(np.random.default_rng(0).permutation(12)[:3])
    images = arrays["train-images-idx3-ubyte.gz"].reshape(12, 12)
    assert torch.equal(s.validation, torch.from_numpy(images[held] / np.float32(255)))
    assert s.test_labels.tolist() == arrays["t10k-labels-idx1-ubyte.gz"].tolist()
    assert s.image_shape == (4, 3) and s.source == str(tmp_path)


def test_split_is_deterministic_by_seed(tmp_path):
    write_tiny(tmp_path)
    a, b = (load_idx_dataset(TINY, data_dir=tmp_path, seed=0) for _ in range(2))
    c = load_idx_dataset(TINY, data_dir=tmp_path, seed=5)
    assert torch.equal(a.validation, b.validation) and torch.equal(a.train, b.train)
    assert not torch.equal(a.validation, c.validation)


def test_raw_files_in_dataset_subfolder_are_found(tmp_path):
    arrays = tiny_arrays()
    (tmp_path / "tiny").mkdir()
    for name, a in arrays.items():
        write_idx(tmp_path / "tiny" / name.removesuffix(".gz"), a)
    assert load_idx_dataset(TINY, data_dir=tmp_path).test.shape == (5, 12)


def _damage(tmp_path: Path, name: str, data: bytes) -> Path:
    write_tiny(tmp_path)
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


IMAGES = "train-images-idx3-ubyte.gz"
GOOD = gzip.compress(bytes([0, 0, 8, 3, 0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 3]) + bytes(144))


@pytest.mark.parametrize(("data", "match"), [
    (GOOD[: len(GOOD) // 2], "is a truncated or corrupt gzip file"),
    (GOOD[:10] + bytes(20) + GOOD[30:], "is a truncated or corrupt gzip file"),
    (gzip.compress(b"\x01\x02\x08\x03" + bytes(200)), r"not an IDX file \(magic number 01020803"),
    (gzip.compress(bytes([0, 0, 7, 3]) + bytes(200)), "is not an IDX file"),
    (gzip.compress(bytes([0, 0, 8, 3, 0, 0, 0, 12]) + bytes(4)), "truncated inside its IDX header"),
    (gzip.compress(bytes([0, 0, 8, 3, 0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 3]) + bytes(100)),
     r"is truncated: its header promises shape \(12, 4, 3\)"),
    (gzip.compress(bytes([0, 0, 8, 3, 0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 3]) + bytes(150)),
     "has 6 bytes beyond the shape"),
    (gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 12]) + bytes(12)), "has 1 dimensions where 3"),
    (b"", "too short to be an IDX file"),
])
def test_bad_idx_files_raise_one_clear_error(tmp_path, data, match):
    _damage(tmp_path, IMAGES, data)
    with pytest.raises(DataError, match=match):
        load_idx_dataset(TINY, data_dir=tmp_path)


def test_image_label_count_mismatch(tmp_path):
    arrays = tiny_arrays()
    arrays["train-labels-idx1-ubyte.gz"] = arrays["train-labels-idx1-ubyte.gz"][:11]
    write_tiny(tmp_path, arrays)
    with pytest.raises(DataError, match="holds 12 images but .* holds 11 labels"):
        load_idx_dataset(TINY, data_dir=tmp_path)


def test_train_and_test_image_sizes_must_agree(tmp_path):
    arrays = tiny_arrays()
    arrays["t10k-images-idx3-ubyte.gz"] = np.zeros((5, 4, 4), np.uint8)
    write_tiny(tmp_path, arrays)
    with pytest.raises(DataError, match=r"both must have one image size"):
        load_idx_dataset(TINY, data_dir=tmp_path)


def test_missing_file_without_download_names_files_and_folder(tmp_path):
    write_tiny(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz was not found in .*put "
                                        r"train-images-idx3-ubyte.gz, .* into .*cache/tiny"):
        load_idx_dataset(TINY, data_dir=tmp_path, download_missing=False)


def test_missing_data_dir_is_reported(tmp_path):
    with pytest.raises(DataError, match="data directory .*nope does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "nope")


def test_local_file_with_wrong_checksum_is_rejected(tmp_path):
    # Hand-made files placed as "mnist" fail the official SHA-256 table.
    write_tiny(tmp_path)
    with pytest.raises(DataError, match="is not the official mnist file train-images"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_matching_checksum_is_accepted(tmp_path):
    arrays = write_tiny(tmp_path)
    sums = {n: hashlib.sha256(gzip.decompress((tmp_path / n).read_bytes())).hexdigest()
            for n in arrays}
    s = load_idx_dataset(replace(TINY, sha256=sums), data_dir=tmp_path)
    assert s.train.shape[0] == 9


def test_unknown_name_is_reported():
    with pytest.raises(DataError, match="'mnsit' is neither a dataset name"):
        load_dataset("mnsit")


def test_the_gan_split_trains_on_the_first_50000_images_in_file_order(tmp_path):
    arrays = tiny_arrays(n_train=50004)
    write_tiny(tmp_path, arrays)
    s = load_idx_dataset(TINY, data_dir=tmp_path, split="gan")
    images = arrays["train-images-idx3-ubyte.gz"].astype(np.float32) / 255
    assert s.train.shape[0] == 50000 and s.validation.shape[0] == 4
    assert np.array_equal(s.train.numpy().reshape(images[:50000].shape), images[:50000])
    assert np.array_equal(s.validation.numpy().reshape(images[50000:].shape), images[50000:])
    write_tiny(tmp_path / "small")  # 12 training images
    with pytest.raises(DataError, match="needs more; use --split paper"):
        load_idx_dataset(TINY, data_dir=tmp_path / "small", split="gan")
    with pytest.raises(DataError, match="--split gan is the GAN paper's MNIST split"):
        load_dataset("digits", split="gan")
