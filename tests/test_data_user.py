"""The user's own files (.npz, .npy, .csv, image folders), TFD folds, digits, standardisation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from gmmn.data import load_dataset
from gmmn.errors import DataError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GMMN_DATA", str(tmp_path / "cache"))


def rows_of(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in x.tolist()}


# --- digits ----------------------------------------------------------------------------

def test_digits_shapes_and_disjoint_deterministic_split():
    a, b, c = load_dataset("digits"), load_dataset("digits"), load_dataset("digits", seed=3)
    assert (a.train.shape, a.validation.shape, a.test.shape) == ((1437, 64), (180, 64), (180, 64))
    assert a.image_shape == (8, 8) and a.unit_interval and float(a.train.max()) == 1.0
    assert torch.equal(a.test, b.test) and not torch.equal(a.test, c.test)
    total = len(a.train_labels) + len(a.validation_labels) + len(a.test_labels)
    assert total == 1797


# --- .npz / .npy ------------------------------------------------------------------------

def test_npz_with_named_splits_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    parts = {k: rng.random((n, 5)).astype(np.float32)
             for k, n in (("train", 20), ("validation", 4), ("test", 6))}
    np.savez(tmp_path / "d.npz", **parts, test_labels=np.arange(6))
    s = load_dataset(tmp_path / "d.npz")
    assert torch.equal(s.validation, torch.from_numpy(parts["validation"]))
    assert s.test_labels.tolist() == list(range(6)) and s.train_labels is None
    assert s.unit_interval and s.image_shape is None and s.name == "d"


def test_single_array_is_split_90_5_5_by_seed(tmp_path):
    x = np.arange(400, dtype=np.float64).reshape(100, 4) / 400
    np.save(tmp_path / "x.npy", x)
    s = load_dataset(tmp_path / "x.npy")
    assert (len(s.train), len(s.validation), len(s.test)) == (90, 5, 5)
    together = rows_of(s.train) | rows_of(s.validation) | rows_of(s.test)
    assert together == rows_of(torch.from_numpy(x.astype(np.float32)))
    assert not torch.equal(s.test, load_dataset(tmp_path / "x.npy", seed=1).test)


def test_uint8_image_stack_is_scaled_and_keeps_shape(tmp_path):
    x = np.full((10, 3, 2, 3), 255, dtype=np.uint8)
    np.savez(tmp_path / "img.npz", images=x)
    s = load_dataset(tmp_path / "img.npz")
    assert s.image_shape == (3, 2, 3) and s.dim == 18 and float(s.train.max()) == 1.0


def test_standardize_uses_train_statistics_and_maps_back(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 3.0, (200, 3))
    x[:, 2] = 7.0  # a constant feature must not divide by zero
    np.save(tmp_path / "x.npy", x)
    raw = load_dataset(tmp_path / "x.npy")
    assert not raw.unit_interval and not raw.standardized
    s = load_dataset(tmp_path / "x.npy", standardize=True)
    assert not s.unit_interval and s.standardized
    assert torch.allclose(s.train.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(s.train[:, :2].std(0, unbiased=False), torch.ones(2), atol=1e-5)
    assert s.std[2] == 1.0 and bool((s.train[:, 2] == 0).all())
    assert torch.allclose(s.unstandardize(s.test), raw.test, atol=1e-5)
    assert torch.allclose(s.mean, raw.train.mean(0), atol=1e-5)


@pytest.mark.parametrize(("arrays", "match"), [
    ({"a": np.zeros((5, 2)), "b": np.zeros((5, 2))},
     r"has the arrays \['a', 'b'\]; expected train, validation and test"),
    ({"train": np.zeros((5, 3)), "validation": np.zeros((2, 3)), "test": np.zeros((2, 4))},
     "the test split has 4 features but train has 3"),
    ({"train": np.zeros((5, 3)), "validation": np.zeros((0, 3)), "test": np.zeros((2, 3))},
     "the validation split is empty"),
    ({"train": np.zeros((5, 3)), "validation": np.zeros((2, 3)), "test": np.zeros((2, 3)),
      "train_labels": np.arange(4)}, "the train split has 4 labels for 5 examples"),
    ({"x": np.array([[0.0, np.nan]] * 5)}, r"NaN or inf values \(first in row 0\)"),
    # Single arrays are checked before the split, so the row is the row in the file.
    ({"x": np.array([[0.0, 1.0]] * 4 + [[np.inf, 0.0]])}, r"NaN or inf values \(first in row 4\)"),
    ({"x": np.array(["a", "b", "c"])}, "non-numeric dtype"),
])
def test_bad_npz_files(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_dataset(tmp_path / "bad.npz")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="obj.npy holds Python objects"):
        load_dataset(tmp_path / "obj.npy")


@pytest.mark.parametrize(("name", "data", "match"), [
    ("empty.npy", None, "holds no examples"),
    ("junk.npy", b"not numpy at all", "is not a readable numpy file"),
    ("junk.npz", b"PK\x03\x04broken", "is not a readable numpy file"),
    ("data.txt", b"1,2", r"unsupported file type \.txt"),
])
def test_bad_array_files(tmp_path, name, data, match):
    if data is None:
        np.save(tmp_path / name, np.zeros((0, 3)))
    else:
        (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=match):
        load_dataset(tmp_path / name)


# --- .csv --------------------------------------------------------------------------------

def test_csv_with_header(tmp_path):
    lines = ["a,b,c"] + [f"{i},{i * 2},{-i}" for i in range(40)] + [""]
    (tmp_path / "t.csv").write_text("\n".join(lines))
    s = load_dataset(tmp_path / "t.csv")
    assert s.dim == 3 and len(s.train) + len(s.validation) + len(s.test) == 40
    assert not s.unit_interval


@pytest.mark.parametrize(("text", "match"), [
    ("1,2,3\n4,5,6\n7,8\n", r"t.csv, line 3: 2 columns where earlier rows have 3"),
    ("x,y\n1,2\noops,3\n", r"t.csv, line 3: non-numeric value"),
    ("x,y\n", "holds no data rows"),
    ("1,nan\n2,3\n4,5\n", "NaN or inf"),
])
def test_bad_csv(tmp_path, text, match):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        load_dataset(tmp_path / "t.csv")


# --- image folders ----------------------------------------------------------------------

def test_gray_image_folder(tmp_path):
    for i in range(20):
        Image.fromarray(np.full((5, 4), i * 10, np.uint8), mode="L").save(tmp_path / f"{i}.png")
    s = load_dataset(tmp_path)
    assert s.image_shape == (5, 4) and s.dim == 20 and s.unit_interval
    firsts = sorted(round(r[0] * 255) for r in [*s.train.tolist(), *s.test.tolist(),
                                                 *s.validation.tolist()])
    assert firsts == [i * 10 for i in range(20)]


def test_rgb_folder_is_flattened_height_width_channel(tmp_path):
    for i in range(6):
        pixels = np.zeros((3, 2, 3), np.uint8)
        pixels[0, 0] = (255, 0, 0)  # red top-left corner
        pixels[2, 1] = (0, 0, 255)  # blue bottom-right corner
        Image.fromarray(pixels, mode="RGB").save(tmp_path / f"im{i}.png")
    Image.fromarray(np.zeros((3, 2), np.uint8), mode="L").save(tmp_path / "gray.png")
    s = load_dataset(tmp_path)
    assert s.image_shape == (3, 2, 3)
    rows = torch.cat([s.train, s.validation, s.test])
    colour = rows[rows.sum(1) > 0].reshape(-1, *s.image_shape)
    assert len(colour) == 6 and len(rows) == 7  # the gray image was converted to RGB too
    assert colour[:, 0, 0].tolist() == [[1.0, 0.0, 0.0]] * 6
    assert colour[:, 2, 1].tolist() == [[0.0, 0.0, 1.0]] * 6


def test_image_sizes_must_match_unless_resized(tmp_path):
    for i in range(4):
        Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / f"a{i}.png")
    Image.fromarray(np.zeros((8, 5), np.uint8)).save(tmp_path / "b.jpg")
    with pytest.raises(DataError, match=r"b.jpg is 8x5 but a0.png is 6x6; pass an image size"):
        load_dataset(tmp_path)
    assert load_dataset(tmp_path, image_size=(4, 3)).image_shape == (4, 3)


@pytest.mark.parametrize(("files", "match"), [
    ({}, "holds no .png, .jpg or .jpeg images"),
    ({"x.png": b"\x89PNG not really"}, "x.png is not a readable image"),
])
def test_bad_image_folders(tmp_path, files, match):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=match):
        load_dataset(tmp_path)


# --- TFD ---------------------------------------------------------------------------------

def write_tfd(path, *, n=200, n_labeled=40, drop=()):
    """A TFD_48x48.mat with the real layout; image i carries i in its first two pixels."""
    images = np.zeros((n, 48, 48), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    folds = np.zeros((n, 5), np.int64)
    for k in range(5):
        # Each fold rotates which labelled images are train (1), validation (2), test (3).
        roles = np.roll(np.repeat([1, 1, 1, 2, 3], n_labeled // 5), k * n_labeled // 5)
        folds[:n_labeled, k] = roles
    mat = {"images": images, "folds": folds,
           "labs_ex": np.arange(n).reshape(n, 1) % 7 + 1, "labs_id": np.arange(n).reshape(n, 1)}
    scipy.io.savemat(path, {k: v for k, v in mat.items() if k not in drop})
    return folds


def ids(x: torch.Tensor) -> list[int]:
    pixels = torch.round(x[:, :2] * 255).long()
    return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()


def test_tfd_folds_follow_the_documented_rule(tmp_path):
    folds = write_tfd(tmp_path / "TFD_48x48.mat")
    s = load_dataset("tfd", data_dir=tmp_path)
    assert s.image_shape == (48, 48) and s.dim == 2304 and s.unit_interval
    assert len(s.test_folds) == len(s.validation_folds) == 5
    for k in range(5):
        assert ids(s.test_folds[k]) == np.flatnonzero(folds[:, k] == 3).tolist()
    val = [set(ids(v)) for v in s.validation_folds]
    train = set(ids(s.train))
    assert [len(v) for v in val] == [8] * 5 and len(train) == 160 - 40
    assert len(set().union(*val) | train) == 160  # disjoint, all from the unlabeled pool
    assert min(train | set().union(*val)) >= 40
    assert torch.equal(s.test, s.test_folds[0]) and torch.equal(s.validation,
                                                                 s.validation_folds[0])
    assert s.test_labels.tolist() == [i % 7 + 1 for i in ids(s.test)]
    again = load_dataset(tmp_path / "TFD_48x48.mat", seed=0)
    other = load_dataset(tmp_path / "TFD_48x48.mat", seed=1)
    assert ids(again.validation) == ids(s.validation) != ids(other.validation)


def test_tfd_missing_file_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match=r"TFD_48x48.mat was not found in .*cannot be "
                                        r"downloaded, so place your copy .* in .*cache/tfd"):
        load_dataset("tfd", data_dir=tmp_path)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"drop": ("folds",)}, "lacks the variable"),
    ({"n_labeled": 0}, "some fold has no test images"),
])
def test_bad_tfd_files(tmp_path, kwargs, match):
    write_tfd(tmp_path / "TFD_48x48.mat", **kwargs)
    with pytest.raises(DataError, match=match):
        load_dataset("tfd", data_dir=tmp_path)


def test_tfd_corrupt_mat(tmp_path):
    (tmp_path / "TFD_48x48.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(50))
    with pytest.raises(DataError, match="TFD_48x48.mat is not a readable .mat file"):
        load_dataset("tfd", data_dir=tmp_path)
