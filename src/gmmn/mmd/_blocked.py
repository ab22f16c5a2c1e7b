"""Quadratic-form MMD^2 over tiles of the Gram matrix, with a hand-written gradient.

Private helper of :mod:`gmmn.mmd`; imports nothing from the package. With z = [x; y]
(N = n + m rows) and a block-constant symmetric coefficient matrix C (c_xx on x-x pairs,
c_yy on y-y pairs, c_xy on x-y pairs) the biased and unbiased estimators are

    L = sum_ij C_ij k(D_ij) + const,   D_ij = ||z_i - z_j||^2.

With K'_ij = -dk/dD (the kernel's slope), dD_ij/dz_i = 2 (z_i - z_j) and C, D symmetric:

    dL/dz_i = 4 * [ sum_j C_ij K'_ij z_j - (sum_j C_ij K'_ij) z_i ] = 4 * (H[:, :d] - H[:, d] z_i)

where H = (C o K') @ [z, 1]: ONE GEMM over the tiles, computed in the forward pass (while the
tile is in cache) so the backward pass is a scaling. The forward Gram tile is ONE GEMM of
augmented rows [z_i, 1, |z_i|^2] . [2c z_j, -c |z_j|^2, -c] = -c D_ij, only for tiles on or
above the diagonal (symmetry). Peak extra memory is a few tiles, whatever N is.

That gradient is a number, not a graph. When a backward pass itself must be differentiable
(``create_graph=True``, e.g. a gradient penalty), autograd runs :meth:`QuadFormMMD.backward`
with grad mode on; it then recomputes L by :func:`autograd_quadform` (the same tiles in plain
differentiable ops) and returns its autograd gradient, which carries the graph. That path
holds every tile's intermediates, O(N^2) memory, so it is used only when asked for.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._kernels import KERNELS, KernelSpec, tile_sums

# CPU tile side cap: bigger tiles mean fewer ops per call (each parallel op waits for its
# slowest thread) but leave the cache. On a 2-core VM 512-2000 measured within noise at
# n = m = 1000; 1024 keeps one tile per set there and the buffers at 32 MiB (float32).
CPU_TILE_CAP = 1024


def choose_block(n_rows: int, spec: KernelSpec, dtype: torch.dtype, device: torch.device,
                 budget_bytes: int) -> int:
    """Largest tile side whose buffers fit in ``budget_bytes`` (capped on CPU for cache)."""
    per_tile = spec.n_buffers() * torch.finfo(dtype).bits // 8
    side = int(math.isqrt(max(budget_bytes // per_tile, 1)))
    if device.type == "cpu":
        side = min(side, CPU_TILE_CAP)
    return max(1, min(side, n_rows))


def _split(start: int, stop: int, block: int) -> list[tuple[int, int]]:
    """Even row ranges of at most ``block`` rows covering [start, stop)."""
    count = -(-(stop - start) // block)
    edges = [start + (stop - start) * i // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _blocks(n: int, n_total: int, block: int) -> list[tuple[int, int, int]]:
    """(start, stop, set) row ranges, set 0 for x and 1 for y; no range straddles both."""
    return [(a, b, 0) for a, b in _split(0, n, block)] + [
        (a, b, 1) for a, b in _split(n, n_total, block)]


def autograd_quadform(x: Tensor, y: Tensor, spec: KernelSpec, coefs: tuple[float, float, float],
                      const: float, block: int) -> Tensor:
    """The L of :class:`QuadFormMMD` in plain autograd ops: derivatives of any order.

    Same tiles and centering; the exact kernel functions instead of the power chain. The
    diagonal D_ii is set to 0 by a mask, so its (zero) gradient never meets the kernel's
    slope at 0 (infinite for the laplacian). Memory: autograd keeps each tile's values.
    """
    n = x.shape[0]
    z = torch.cat([x, y])
    z = z - z.mean(0)  # (N, d)
    sq = z.pow(2).sum(1)  # (N,)
    kern = KERNELS[spec.name]
    coef = ((coefs[0], coefs[2]), (coefs[2], coefs[1]))
    blocks = _blocks(n, z.shape[0], block)
    total = z.new_zeros((), dtype=torch.float64)
    for i, (a0, a1, ga) in enumerate(blocks):
        for b0, b1, gb in blocks[i:]:
            d2 = sq[a0:a1, None] + sq[None, b0:b1] - 2 * z[a0:a1] @ z[b0:b1].T  # (b1, b2)
            if a0 == b0:
                d2 = d2.masked_fill(torch.eye(a1 - a0, dtype=torch.bool, device=z.device), 0.0)
            if spec.name != "gaussian":
                d2 = d2.clamp(min=0.0)
            k = sum(w * kern.value(d2, s) for w, s in zip(spec.weights, spec.sigmas, strict=True))
            cf = coef[ga][gb] if a0 == b0 else 2 * coef[ga][gb]
            total = total + cf * k.sum(dtype=torch.float64)
    return (total + const).to(x.dtype)


class QuadFormMMD(torch.autograd.Function):
    """L = c_xx S_xx + c_yy S_yy + 2 c_xy S_xy + const, S_ab = sum of k over block a x b."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, spec: KernelSpec, coefs: tuple[float, float, float],
                const: float, block: int) -> Tensor:
        n, d = x.shape
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        z = torch.cat([x, y])  # (N, d)
        # Centering changes no distance and shrinks |z|^2, hence the norm-expansion rounding.
        z -= z.mean(0)
        c = spec.exponent_scale
        sq = z.pow(2).sum(1, keepdim=True)  # (N, 1)
        ones = torch.ones_like(sq)
        left = torch.cat([z, ones, sq], 1)  # (N, d + 2)
        right = torch.cat([z * (2 * c), sq * -c, ones * -c], 1)  # (N, d + 2)
        del sq
        rhs = left[:, : d + 1]  # (N, d + 1) = [z, 1], a view: no copy
        h = z.new_zeros(rhs.shape) if any(need) else None  # (N, d + 1)

        blocks = _blocks(n, z.shape[0], block)
        side = max(b - a for a, b, _ in blocks)
        work = z.new_empty(spec.n_buffers(), side * side)  # the only O(tile) memory
        coef = ((coefs[0], coefs[2]), (coefs[2], coefs[1]))
        total = z.new_zeros((), dtype=torch.float64)
        for i, (a0, a1, ga) in enumerate(blocks):
            for b0, b1, gb in blocks[i:]:
                shape = (a1 - a0, b1 - b0)
                tiles = work[:, : shape[0] * shape[1]].view(-1, *shape)  # (buffers, b1, b2)
                tile, slope = tiles[0], tiles[-1]
                torch.mm(left[a0:a1], right[b0:b1].T, out=tile)
                if a0 == b0:
                    tile.diagonal().zero_()  # D_ii = 0 exactly, so k(z_i, z_i) = sum(w)
                grad_a, grad_b = need[ga], need[gb] and a0 != b0
                s = tile_sums(tiles, spec, grad_a or grad_b)
                cf = coef[ga][gb]
                total += s * (cf if a0 == b0 else 2 * cf)
                if a0 == b0 and grad_a:  # grad_b is False on diagonal tiles
                    # K'_ii multiplies z_i - z_i = 0; left in, it would enter as the
                    # difference of two rounded products K'_ii z_i, which for a tiny sigma
                    # (K'_ii ~ 1 / sigma^2) is a huge number, not 0.
                    slope.diagonal().zero_()
                if grad_a:
                    h[a0:a1].addmm_(slope, rhs[b0:b1], alpha=cf)
                if grad_b:
                    h[b0:b1].addmm_(slope.T, rhs[a0:a1], alpha=cf)
        if any(need):
            grad = (h[:, :d] - h[:, d:] * z).mul_(4)  # (N, d)
            # For a double backward: the inputs that need a gradient (their graph matters),
            # the values of the others (not saved: in-place changes to data stay allowed).
            pairs = list(zip((x, y), need, strict=True))
            ctx.save_for_backward(grad, *(t if k else None for t, k in pairs))
            ctx.fixed = tuple(None if k else t.detach() for t, k in pairs)
        ctx.n = n
        ctx.args = (spec, coefs, const, block)
        return (total + const).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        need = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():  # create_graph=True: the gradient must carry a graph
            _, x, y = (s if s is not None else f
                       for s, f in zip(ctx.saved_tensors, (None, *ctx.fixed), strict=True))
            wrt = [t for t, k in zip((x, y), need, strict=True) if k]
            loss = autograd_quadform(x, y, *ctx.args)
            grads = iter(torch.autograd.grad(loss, wrt, create_graph=True))
            return (*(next(grads) * grad_out if k else None for k in need),
                    None, None, None, None)
        return (*QuadFormMMD._first_order(ctx, grad_out), None, None, None, None)

    @staticmethod
    def _first_order(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None]:
        grad = ctx.saved_tensors[0]
        gx = grad[: ctx.n] * grad_out if ctx.needs_input_grad[0] else None
        gy = grad[ctx.n :] * grad_out if ctx.needs_input_grad[1] else None
        return gx, gy


class FirstOrderQuadFormMMD(QuadFormMMD):
    """:class:`QuadFormMMD` without the double-backward switch: a backward that must build a
    graph (``create_graph=True``) raises instead of returning a gradient with no graph."""

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if torch.is_grad_enabled():
            raise RuntimeError("mmd2(..., double_backward=False) has a first-order gradient "
                               "only, but this backward asks for a graph (create_graph=True); "
                               "pass double_backward=None (automatic) or True")
        return (*QuadFormMMD._first_order(ctx, grad_out), None, None, None, None)
