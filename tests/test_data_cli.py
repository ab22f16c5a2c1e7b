"""``gmmn data info`` through ``python -m gmmn`` (each call is a subprocess, so few of them)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_info_on_digits_human_and_json(cli, tmp_path):
    out = cli("data", "info", "digits")
    assert out.returncode == 0, out.stderr
    assert "found in     scikit-learn" in out.stdout
    assert "image shape 8x8" in out.stdout and "generator output layer: sigmoid" in out.stdout
    assert "train           1437 x 64" in out.stdout
    assert "test             180 x 64" in out.stdout and "labels 0..9 (10 values)" in out.stdout

    out = cli("data", "info", "digits", "--json", "--standardize", "--seed", "2")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["splits"]["validation"]["shape"] == [180, 64]
    assert info["standardized"] and info["output_layer"] == "linear"
    assert info["image_shape"] == [8, 8]


def test_info_on_bad_file_prints_one_line(cli, tmp_path):
    np.savez(tmp_path / "bad.npz", a=np.zeros((3, 2)), b=np.ones((3, 2)))
    out = cli("data", "info", str(tmp_path / "bad.npz"))
    assert out.returncode == 2
    assert out.stdout == "" and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("gmmn data: error: ") and "bad.npz has the arrays" in lines[0]
