"""Sample grids as PNG files (PIL only: no plotting backend needed)."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from gmmn.files import atomic_write


def tile(images: torch.Tensor, ncol: int, *, pad: int = 1, fill: float = 1.0) -> torch.Tensor:
    """Tile (n, h, w) or colour (n, h, w, c) images into one (rows*(h+pad)+pad,
    ncol*(w+pad)+pad) image, with the trailing c kept for colour.

    The one tiling of the package: training grids, ``gmmn sample`` and the evaluation
    figures all draw through it (``fill`` is the grey level of the padding).
    """
    if images.ndim not in (3, 4):
        raise ValueError(f"tile needs (n, h, w) or (n, h, w, c) images, got shape "
                         f"{tuple(images.shape)}")
    n, h, w = images.shape[:3]
    rows = -(-n // ncol)
    canvas = torch.full((rows * (h + pad) + pad, ncol * (w + pad) + pad, *images.shape[3:]),
                        float(fill))
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        canvas[top:top + h, left:left + w] = images[i]
    return canvas


def image_grid(images: torch.Tensor, image_shape: tuple[int, ...], *, ncol: int | None = None,
               pad: int = 1) -> np.ndarray:
    """Tile (n, H*W) or (n, H*W*C) rows into one uint8 (rows, cols) or (rows, cols, C) array,
    white-padded; ``image_shape`` is (H, W) or (H, W, C) (``Splits.image_shape``).

    Values in [0, 1] map to grey levels directly; anything else is min-max scaled first.
    """
    x = images.detach().float().cpu().reshape(-1, *image_shape)
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        x = (x - lo) / max(hi - lo, 1e-12)
    grid = tile(x, ncol or math.ceil(math.sqrt(len(x))), pad=pad).numpy()
    return (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)


def save_grid(images: torch.Tensor, image_shape: tuple[int, ...], path: str | os.PathLike, *,
              ncol: int | None = None, scale: int | None = None) -> None:
    """Write a PNG grid of ``images`` (grey, or RGB for (H, W, 3) images); small images are
    enlarged (nearest) to stay visible."""
    from PIL import Image

    grid = image_grid(images, image_shape, ncol=ncol)
    if grid.ndim == 3 and grid.shape[2] == 1:
        grid = grid[:, :, 0]  # (H, W, 1) is grey; PIL has no one-channel 3-D mode
    if scale is None:
        scale = max(1, 32 // max(image_shape[:2]))  # 8x8 digits x4; MNIST and TFD as they are
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    atomic_write(path, lambda f: img.save(f, format="PNG"))
