"""The paper's figures as PNG files: sample grids, nearest training neighbours, prior
interpolations, and training curves from a run's metrics.jsonl.

matplotlib is imported lazily and used through ``matplotlib.figure.Figure`` with the Agg
canvas, never pyplot: no global backend or figure state is touched, and it runs headless.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Callable, Sequence

import torch

from gmmn.errors import CheckpointError, ConfigError
from gmmn.evaluate.metrics import nearest_neighbours
from gmmn.grid import tile


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a declared dependency
        raise ConfigError("figures need matplotlib: pip install matplotlib") from exc
    return Figure(figsize=(width, height), dpi=100)


def _images(x: torch.Tensor, image_shape: Sequence[int] | None) -> torch.Tensor:
    x = torch.as_tensor(x).detach().float().cpu()
    if image_shape is None:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ConfigError(f"rows of width {x.shape[1]} are not square images; "
                              "pass image_shape")
        image_shape = (side, side)
    return x.reshape(x.shape[0], *image_shape)


def _plain_axes(fig):
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    return ax


def _save(fig, path: pathlib.Path | str) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def save_sample_grid(samples: torch.Tensor, path: pathlib.Path | str, *,
                     image_shape: Sequence[int] | None = None, ncols: int = 10) -> pathlib.Path:
    """A grid of sample images (rows of ``samples`` reshaped to ``image_shape``)."""
    imgs = _images(samples, image_shape)
    ncols = min(ncols, imgs.shape[0])
    rows = -(-imgs.shape[0] // ncols)
    fig = _figure(ncols * 0.8, rows * 0.8)
    _plain_axes(fig).imshow(tile(imgs.clamp(0, 1), ncols, fill=0.5).numpy(), cmap="gray", vmin=0.0,
                            vmax=1.0, interpolation="nearest", aspect="auto")
    return _save(fig, path)


def save_nearest_neighbours(samples: torch.Tensor, train: torch.Tensor,
                            path: pathlib.Path | str, *, image_shape: Sequence[int] | None = None,
                            k: int = 5) -> pathlib.Path:
    """Each sample (left column) beside its k nearest training images, distances above them.

    Evidence against memorisation: neighbours that are near copies show up as tiny distances.
    """
    dist, idx = nearest_neighbours(samples, train, k=k)
    s_img, t_img = _images(samples, image_shape), _images(train, image_shape)
    n, h, w = s_img.shape
    pad = max(2, h // 2)  # room for the distance labels above each row
    tiles = torch.cat([s_img.unsqueeze(1), t_img[idx]], dim=1).reshape(n * (k + 1), h, w)
    canvas = tile(tiles.clamp(0, 1), k + 1, pad=pad, fill=0.5)
    fig = _figure((k + 1) * 1.0, n * 1.1)
    ax = _plain_axes(fig)
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest",
              aspect="auto")
    for r in range(n):
        for c in range(k + 1):
            label = "sample" if c == 0 else f"d={float(dist[r, c - 1]):.2f}"
            ax.text(pad + c * (w + pad) + w / 2, pad + r * (h + pad) - 0.5, label,
                    ha="center", va="bottom", fontsize=6, color="black")
    return _save(fig, path)


def save_interpolations(decode: Callable[[torch.Tensor], torch.Tensor], starts: torch.Tensor,
                        ends: torch.Tensor, path: pathlib.Path | str, *,
                        image_shape: Sequence[int] | None = None, steps: int = 10) -> pathlib.Path:
    """Images decoded along straight lines z(t) = (1 - t) a + t b in the prior, one row each.

    ``decode(z)`` maps (k, prior_dim) prior points to (k, D) rows (e.g. ``run.decode_prior``).
    """
    starts, ends = torch.as_tensor(starts), torch.as_tensor(ends)
    if starts.shape != ends.shape or starts.ndim != 2:
        raise ConfigError(f"interpolation end points must be two (k, dim) matrices of one shape, "
                          f"got {tuple(starts.shape)} and {tuple(ends.shape)}")
    t = torch.linspace(0.0, 1.0, steps, dtype=starts.dtype).view(1, steps, 1)
    z = (1 - t) * starts.unsqueeze(1) + t * ends.unsqueeze(1)  # (k, steps, dim)
    with torch.no_grad():
        x = torch.as_tensor(decode(z.reshape(-1, starts.shape[1])))
    return save_sample_grid(x.reshape(starts.shape[0] * steps, -1), path,
                            image_shape=image_shape, ncols=steps)


def read_metrics(path: pathlib.Path | str) -> list[dict]:
    """The JSON lines of a run's metrics.jsonl (blank lines skipped)."""
    path = pathlib.Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise CheckpointError(f"cannot read training metrics {path}: {exc.strerror}") from exc
    out = []
    for no, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{path} line {no} is not JSON ({exc.msg}); the run's "
                                      "metrics file is corrupt") from exc
    return out


def save_training_curves(metrics_path: pathlib.Path | str, path: pathlib.Path | str, *,
                         key: str = "loss") -> pathlib.Path:
    """``key`` against iteration, one panel per training stage (e.g. autoencoder, gmmn).

    A stage with several optimised parts logs ``<key>_<part>`` instead (a GAN's
    ``loss_discriminator`` and ``loss_generator``); each becomes one line of its panel.
    """
    stages: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for rec in read_metrics(metrics_path):
        if "iteration" not in rec:
            continue
        for name, value in rec.items():
            if value is None or not (name == key or name.startswith(key + "_")):
                continue
            lines = stages.setdefault(str(rec.get("stage", "train")), {})
            its, vals = lines.setdefault(name, ([], []))
            its.append(float(rec["iteration"]))
            vals.append(float(value))
    if not stages:
        raise CheckpointError(f"{metrics_path} has no records with 'iteration' and {key!r}")
    fig = _figure(4.5 * len(stages), 3.2)
    for i, (stage, lines) in enumerate(stages.items()):
        ax = fig.add_subplot(1, len(stages), i + 1)
        for name, (its, vals) in lines.items():
            ax.plot(its, vals, lw=1, label=name.removeprefix(key + "_"))
        if all(v > 0 for _, vals in lines.values() for v in vals):
            ax.set_yscale("log")  # MMD losses fall over orders of magnitude
        if len(lines) > 1:
            ax.legend(fontsize=7)
        ax.set_title(stage, fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel(key)
    fig.tight_layout()
    return _save(fig, path)
