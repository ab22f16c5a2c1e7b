"""The paper's figures as PNG files: sample grids, nearest training neighbours, prior
interpolations, and training curves from a run's metrics.jsonl; for tables (rows without an
image shape) pairwise scatter plots and marginal histograms of samples against data.

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
from gmmn.files import atomic_write, write_error
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
    """Write ``fig`` as a PNG at ``path`` whole or not at all (a full disk is one
    :class:`gmmn.errors.OutputError`, never a traceback or half a file)."""
    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, path) from exc
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
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
    n, h, w = s_img.shape[:3]  # (n, h, w) grey or (n, h, w, c) colour
    pad = max(2, h // 2)  # room for the distance labels above each row
    tiles = torch.cat([s_img.unsqueeze(1), t_img[idx]], dim=1)
    tiles = tiles.reshape(n * (k + 1), *s_img.shape[1:])
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
    """The JSON objects of a run's metrics.jsonl, one a line (blank lines skipped); a line
    that is not one is a :class:`CheckpointError` naming it."""
    path = pathlib.Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise CheckpointError(f"cannot read training metrics {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path} is not text; the run's metrics file is corrupt") from exc
    out = []
    for no, line in enumerate(lines, 1):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{path} line {no} is not JSON ({exc.msg}); the run's "
                                      "metrics file is corrupt") from exc
            if not isinstance(rec, dict):
                raise CheckpointError(f"{path} line {no} is not a JSON object; the run's "
                                      "metrics file is corrupt")
            out.append(rec)
    return out


def _number(value, path, name: str, iteration) -> float:
    # bool is an int to Python, but a logged flag is not a curve.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckpointError(f"{path}: {name} at iteration {iteration} is {value!r}, not a "
                              "number; the run's metrics file is corrupt")
    return float(value)


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
            its.append(_number(rec["iteration"], metrics_path, "iteration", rec["iteration"]))
            vals.append(_number(value, metrics_path, name, rec["iteration"]))
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


# The two sets of the tabular figures: samples in orange over data in blue.
_SAMPLE_COLOUR, _DATA_COLOUR = "tab:orange", "tab:blue"


def _two_tables(samples, data) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(samples).detach().double().cpu()
    d = torch.as_tensor(data).detach().double().cpu()
    if s.ndim != 2 or d.ndim != 2 or s.shape[1] != d.shape[1] or not len(s) or not len(d):
        raise ConfigError(f"samples {tuple(s.shape)} and data {tuple(d.shape)} must be "
                          "non-empty (rows, features) matrices of the same width")
    return s, d


def save_pair_scatter(samples, data, path: pathlib.Path | str, *, features: int = 4,
                      max_points: int = 1000, data_label: str = "data") -> pathlib.Path:
    """Pairwise scatter plots of the first ``features`` columns: samples over data.

    Off the diagonal, feature j against feature i; on it, both sets' histograms of feature i.
    At most ``max_points`` rows of each set, so thousands of samples do not hide the data.
    """
    s, d = _two_tables(samples, data)
    s, d = s[:max_points], d[:max_points]
    k = min(features, s.shape[1])
    fig = _figure(2.2 * k + 0.4, 2.2 * k + 0.4)
    for i in range(k):
        for j in range(k):
            ax = fig.add_subplot(k, k, i * k + j + 1)
            if i == j:
                _histograms(ax, s[:, i], d[:, i])
            else:
                # Samples below, faint; the (often fewer) data rows on top, so they stay seen.
                ax.scatter(s[:, j], s[:, i], s=3, c=_SAMPLE_COLOUR, alpha=0.35, lw=0,
                           label=f"samples (n={len(s)})")
                ax.scatter(d[:, j], d[:, i], s=7, c=_DATA_COLOUR, alpha=0.8, lw=0,
                           label=f"{data_label} (n={len(d)})")
            ax.tick_params(labelsize=6)
            if i == k - 1:
                ax.set_xlabel(f"feature {j}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"feature {i}", fontsize=7)
    if k > 1:
        handles, labels = fig.axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=7, markerscale=3)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return _save(fig, path)


def _histograms(ax, s: torch.Tensor, d: torch.Tensor) -> None:
    lo, hi = float(min(s.min(), d.min())), float(max(s.max(), d.max()))
    bins = torch.linspace(lo, hi if hi > lo else lo + 1.0, 26).numpy()  # shared bins
    ax.hist(d.numpy(), bins=bins, density=True, color=_DATA_COLOUR, alpha=0.5)
    ax.hist(s.numpy(), bins=bins, density=True, color=_SAMPLE_COLOUR, alpha=0.5,
            histtype="step", lw=1.2)


def save_marginal_histograms(samples, data, path: pathlib.Path | str, *,
                             max_features: int = 16, data_label: str = "data") -> pathlib.Path:
    """One panel per feature (the first ``max_features``): histograms of samples and data on
    shared bins, as densities so sets of different sizes compare."""
    s, d = _two_tables(samples, data)
    k = min(max_features, s.shape[1])
    cols = min(4, k)
    rows = -(-k // cols)
    fig = _figure(2.4 * cols, 2.0 * rows + 0.4)
    for i in range(k):
        ax = fig.add_subplot(rows, cols, i + 1)
        _histograms(ax, s[:, i], d[:, i])
        ax.set_title(f"feature {i}", fontsize=8)
        ax.tick_params(labelsize=6)
    from matplotlib.patches import Patch

    fig.legend([Patch(color=_DATA_COLOUR, alpha=0.5), Patch(fill=False, ec=_SAMPLE_COLOUR)],
               [f"{data_label} (n={len(d)})", f"samples (n={len(s)})"], loc="upper center",
               ncol=2, fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (2.0 * rows + 0.4)))
    return _save(fig, path)
