"""Figures are written as readable PNGs of the expected layout, and bad inputs are refused."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from gmmn.errors import CheckpointError
from gmmn.evaluate import figures as F


def _size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_sample_grid_and_neighbours(tmp_path):
    x = torch.rand(23, 64)
    w, h = _size(F.save_sample_grid(x, tmp_path / "grid.png", ncols=10))
    assert (w, h) == (800, 240)  # 10 columns x 3 rows at 0.8 inch and 100 dpi
    p = F.save_nearest_neighbours(x[:4], torch.rand(50, 64), tmp_path / "nn.png",
                                  image_shape=(8, 8), k=3)
    assert _size(p) == (400, 440)


def test_interpolation_decodes_straight_lines(tmp_path):
    seen = []

    def decode(z):
        seen.append(z.clone())
        return torch.sigmoid(z @ torch.ones(2, 16))
    a, b = torch.tensor([[0.0, 0.0], [1.0, -1.0]]), torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    F.save_interpolations(decode, a, b, tmp_path / "interp.png", steps=5)
    z = seen[0].reshape(2, 5, 2)
    torch.testing.assert_close(z[:, 0], a)
    torch.testing.assert_close(z[:, -1], b)
    torch.testing.assert_close(z[0, 2], torch.tensor([0.5, 0.5]))


def test_training_curves_per_stage_and_corrupt_metrics(tmp_path):
    m = tmp_path / "metrics.jsonl"
    recs = [{"stage": s, "iteration": i, "loss": 1.0 / (i + 1)} for s in ("ae", "gmmn")
            for i in range(20)]
    m.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    w, h = _size(F.save_training_curves(m, tmp_path / "curves.png"))
    assert (w, h) == (900, 320)  # two stages side by side
    m.write_text('{"stage": "gmmn", "iteration": 1, "loss": 1}\n{broken\n')
    with pytest.raises(CheckpointError, match="line 2"):
        F.save_training_curves(m, tmp_path / "c2.png")
    with pytest.raises(CheckpointError, match="cannot read"):
        F.save_training_curves(tmp_path / "missing.jsonl", tmp_path / "c3.png")
