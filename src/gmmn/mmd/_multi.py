r"""Many kernels, one pass: the tiled engine of the aggregated tests (MMDAgg, MMD-FUSE, split).

Private helper of :mod:`gmmn.mmd`; imports nothing from the package but its sibling modules.
A collection holds L kernels, each a family and a bandwidth:

    gaussian  k(a, b) = exp(-||a - b||_2^2 / (2 sigma^2))   (sigma a standard deviation)
    laplace   k(a, b) = exp(-||a - b||_1 / beta)             (an L1 distance, as both papers)

Every statistic the tests need is a quadratic form v^T M_l v of a symmetric matrix built
tile by tile, for a chunk of vectors v at once (one row of ``V`` (c, R) per relabelling):

* permutations: M_l = K~_l, the pooled (N, N) kernel matrix with its diagonal set to 0, and
  v = a u - b (1 - u) for the membership u of a relabelling (a = m / g, b = n / g, g =
  gcd(n, m), whole numbers, so float32 holds them exactly);
* the wild bootstrap (n = m): M_l = H_l with H_ij = k(x_i, x_j) + k(y_i, y_j) - k(x_i, y_j)
  - k(x_j, y_i) for i != j and H_ii = 0, and v = eps, Rademacher signs.

The upper triangle of M is computed once per chunk of vectors, as column strips cut in
pieces: the pooled distances of a piece are shared by all L kernels (one exp per kernel and
entry), and the L kernels' pieces, side by side, cost one float32 GEMM (c, h) @ (h, L b) with
a long inner dimension (:func:`quadratic_forms`). The first pass also keeps the row sums and
sums of squares. Memory is a strip piece and the chunk's vectors, whatever R is (:func:`plan`).
Measured against float64, the statistics agree to about 1e-6 of their null range.

Why the signed vectors: with u alone, u^T K u ~ n^2 E k would be computed in float32 and the
U-statistic recovered from it by cancellation, losing about n times float32's precision. The
signed form a u - b (1 - u) is centred: its quadratic form is n^2 m^2 / g^2 times the
V-statistic without the diagonal, of the size of the signal itself, and the U-statistic
follows from it and float64 row sums with no cancellation (:func:`u_statistics`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

FAMILIES = {"gaussian": "l2", "laplace": "l1"}  # family -> the distance it uses
_F32, _F64 = torch.float32, torch.float64

# Strip width cap: 128 columns keep the diagonal blocks (computed whole) within 3% of the
# triangle at N = 4000 and measured as fast per flop as 256 for the (c, h) @ (h, b) GEMM;
# strip pieces of up to 2048 rows make each GEMM's inner dimension long.
TILE_CAP = 128
PIECE_CAP = 2048
# Bytes per strip-piece entry: 8 float32 distance blocks, scratch, float64 temps; plus 4 per
# kernel for the L kernels' pieces held side by side for one GEMM.
_TILE_BYTES = 96
# Relative tie tolerance of statistics: the float32 GEMMs leave them about 1e-6 of the null
# range from float64 (benchmarks/mmd_agg.py); values closer than 1e-5 count as equal.
TIE = 1e-5


@dataclass(frozen=True)
class KernelChoice:
    """One kernel of a collection and how it fared.

    ``kernel`` "gaussian" (``bandwidth`` = sigma, exp(-||a-b||^2 / (2 sigma^2))) or "laplace"
    (``bandwidth`` = beta, exp(-||a-b||_1 / beta)); ``statistic`` its MMD^2 estimate (for
    "fuse": its normalised statistic lambda MMD^2 / N); ``p_value`` its single-kernel
    permutation p-value where one exists; ``threshold`` the level that p-value was compared
    with ("agg": u_alpha w_l); ``weight`` its share of the fused statistic ("fuse").
    """

    kernel: str
    bandwidth: float
    statistic: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    weight: float | None = None


@dataclass(frozen=True)
class Collection:
    """L kernels: ``families[l]`` with ``bandwidths[l]`` (sigma for gaussian, beta for laplace)."""

    families: tuple[str, ...]
    bandwidths: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.families)

    def norms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(FAMILIES[f] for f in self.families))


# --- distances and kernel tiles ------------------------------------------------------------

def split(stop: int, block: int) -> list[tuple[int, int]]:
    """Even ranges of at most ``block`` rows covering [0, stop)."""
    count = max(1, -(-stop // block))
    edges = [stop * i // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def distances(a: Tensor, b: Tensor, norm: str, sq_a: Tensor | None = None,
              sq_b: Tensor | None = None) -> Tensor:
    """(b1, b2) float32 ||a_i - b_j||_2^2 ("l2") or ||a_i - b_j||_1 ("l1") of float64 rows.

    l2 by the norm expansion |a|^2 + |b|^2 - 2 a.b in float64 (centred rows round less),
    clamped at 0; l1 directly. ``sq_a``, ``sq_b``: the rows' squared norms, if known.
    """
    if norm == "l1":
        return torch.cdist(a, b, p=1).to(_F32)
    sq_a = a.pow(2).sum(1) if sq_a is None else sq_a
    sq_b = b.pow(2).sum(1) if sq_b is None else sq_b
    d2 = torch.addmm(sq_a[:, None] + sq_b[None, :], a, b.T, alpha=-2.0)  # (b1, b2)
    return d2.clamp_(min=0.0).to(_F32)


def kernel_tile(dist: dict[str, Tensor], family: str, bandwidth: float,
                out: Tensor) -> Tensor:
    """k(a_i, b_j) of one kernel from the tile's distances, written into ``out`` (b1, b2)."""
    if family == "gaussian":
        scale = -0.5 / bandwidth**2  # exp(-d2 / (2 sigma^2))
    else:
        scale = -1.0 / bandwidth  # exp(-d1 / beta)
    return torch.mul(dist[FAMILIES[family]], scale, out=out).exp_()


class PooledSource:
    """Tiles of T_l = K~_l - c_l 1 1^T: the kernels of the pooled rows z (N, d), diagonal set
    to 0, minus a constant c_l (the mean of the first tile, fixed for all tiles and passes).

    The signed vectors sum to 0, so v^T T v = v^T K~ v exactly; but the float32 GEMM now
    sums centred values, not ones near E k that cancel only over the whole matrix (which cost
    10-100x in precision for wide bandwidths). :class:`Sums` undoes the shift in M 1 and
    sum M^2.
    """

    def __init__(self, z: Tensor):
        self.z = z - z.mean(0)  # distances are unchanged; the norm expansion rounds less
        self.sq = self.z.pow(2).sum(1)
        self.rows = z.shape[0]
        self.shift: list[float] | None = None  # c_l

    def tiles(self, a: tuple[int, int], b: tuple[int, int], coll: Collection,
              out: Tensor) -> Iterator[tuple[int, Tensor]]:
        """(kernel index k, float32 tile of rows ``a``, columns ``b``), written into
        ``out[:, k]`` of the (rows, L, columns) buffer ``out``."""
        za, zb = self.z[a[0]:a[1]], self.z[b[0]:b[1]]
        dist = {nm: distances(za, zb, nm, self.sq[a[0]:a[1]], self.sq[b[0]:b[1]])
                for nm in coll.norms()}
        first = self.shift is None
        if first:
            self.shift = []
        for k, (fam, bw) in enumerate(zip(coll.families, coll.bandwidths, strict=True)):
            tile = zero_diagonal(kernel_tile(dist, fam, bw, out[:, k]), a, b)
            if first:
                self.shift.append(float(tile.mean()))
            yield k, tile.sub_(self.shift[k])


class PairedSource:
    """Tiles of H_l (n = m): k(x_i,x_j) + k(y_i,y_j) - k(x_i,y_j) - k(x_j,y_i), H_ii = 0
    (centred already: the four kernels' constants cancel, so no shift)."""

    shift = None

    def __init__(self, x: Tensor, y: Tensor):
        mean = torch.cat([x, y]).mean(0)
        self.x, self.y = x - mean, y - mean
        self.sx, self.sy = self.x.pow(2).sum(1), self.y.pow(2).sum(1)
        self.rows = x.shape[0]

    def tiles(self, a: tuple[int, int], b: tuple[int, int], coll: Collection,
              out: Tensor) -> Iterator[tuple[int, Tensor]]:
        sa, sb = slice(*a), slice(*b)
        pairs = {"xx": (self.x, self.x, self.sx, self.sx), "yy": (self.y, self.y, self.sy, self.sy),
                 "xy": (self.x, self.y, self.sx, self.sy), "yx": (self.y, self.x, self.sy, self.sx)}
        dist = {key: {nm: distances(p[sa], q[sb], nm, sp[sa], sq[sb]) for nm in coll.norms()}
                for key, (p, q, sp, sq) in pairs.items()}
        tmp = torch.empty(a[1] - a[0], b[1] - b[0], dtype=_F32)
        for k, (fam, bw) in enumerate(zip(coll.families, coll.bandwidths, strict=True)):
            tile = kernel_tile(dist["xx"], fam, bw, out[:, k])
            tile.add_(kernel_tile(dist["yy"], fam, bw, tmp))
            tile.sub_(kernel_tile(dist["xy"], fam, bw, tmp))
            tile.sub_(kernel_tile(dist["yx"], fam, bw, tmp))
            yield k, zero_diagonal(tile, a, b)


def zero_diagonal(tile: Tensor, a: tuple[int, int], b: tuple[int, int]) -> Tensor:
    """``tile`` (rows a, columns b of a matrix) with its entries i = j set to 0."""
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    if lo < hi:
        tile[lo - a[0] : hi - a[0], lo - b[0] : hi - b[0]].diagonal().zero_()
    return tile


# --- the pass ------------------------------------------------------------------------------

@dataclass
class Sums:
    """First-pass sums of the tiles T_l per kernel, ``rowsum`` (L, R) = T_l 1 and ``sumsq``
    (L,) = sum T_l^2, turned into those of M_l = T_l + c_l 1 1^T by :meth:`finish`."""

    rowsum: Tensor
    sumsq: Tensor

    def finish(self, shift: list[float] | None) -> Sums:
        """M 1 = T 1 + c R and sum M^2 = sum T^2 + 2 c sum T + c^2 R^2 (all entries; M's
        diagonal is 0)."""
        if shift is None:
            return self
        c, rows = torch.tensor(shift, dtype=_F64), self.rowsum.shape[1]
        return Sums(self.rowsum + (c * rows)[:, None],
                    self.sumsq + 2 * c * self.rowsum.sum(1) + c * c * rows * rows)


def quadratic_forms(source, coll: Collection, signs: Tensor, weights: tuple[float, float],
                    block: int, sums: Sums | None = None, *, squares: bool = False,
                    height: int = 2048) -> Tensor:
    r"""(L, c) float64 v^T M_l v for the rows v of V = where(signs, w+, -w-), (c, R) booleans.

    Walks the upper triangle of M once, by column blocks j (``block`` wide): with v_<j the
    entries above block j,

        v^T M v = sum_j [ 2 v_<j^T M_<j,j + v_j^T M_jj ] v_j = sum_j vecdot(V_<=j W_j, V_j),

    W_j the strip of rows [0, end of j) of column block j with the rows above block j doubled.
    The strip comes in pieces of ``height`` rows; the L kernels' pieces lie side by side in one
    (h, L, b) buffer, so that a piece is one float32 GEMM (c, h) @ (h, L b) accumulated into the
    (c, L, b) products (a long inner dimension, and V's rows packed once for all kernels: 10-15%
    faster than L GEMMs of width b), then one row-wise dot with V_j per kernel and block,
    accumulated in float64. With ``sums`` (an empty :class:`Sums` from :func:`new_sums`) the
    pass also fills the row sums, and with ``squares`` the sums of squares (MMD-FUSE).
    """
    pos, neg = torch.tensor(weights[0], dtype=_F32), torch.tensor(-weights[1], dtype=_F32)
    vecs = torch.where(signs, pos, neg)  # (c, R) float32
    big, count = len(coll), signs.shape[0]
    forms = torch.zeros(big, count, dtype=_F64)
    prods = torch.empty(count * big * block, dtype=_F32)  # (c, L, b) V_<=j W_j per kernel
    pieces = torch.empty(min(height, source.rows) * big * block, dtype=_F32)  # (h, L, b)
    for j0, j1 in split(source.rows, block):
        width = j1 - j0
        acc = prods[: count * big * width].view(count, big, width)
        acc.zero_()
        for r0 in range(0, j1, height):
            r1 = min(j1, r0 + height)
            above = max(0, min(r1, j0) - r0)  # rows of the piece above block j (weight 2)
            stack = pieces[: (r1 - r0) * big * width].view(r1 - r0, big, width)
            for k, tile in source.tiles((r0, r1), (j0, j1), coll, stack):
                if sums is not None:
                    _add_sums(sums, k, tile, r0, r1, j0, j1, above, squares)
            if above:
                stack[:above].mul_(2.0)
            # (c, L b) += (c, h) @ (h, L b): every kernel's piece in one GEMM
            acc.view(count, big * width).addmm_(vecs[:, r0:r1],
                                                stack.view(r1 - r0, big * width))
        for k in range(big):
            forms[k] += torch.linalg.vecdot(acc[:, k], vecs[:, j0:j1]).to(_F64)
    return forms


def _add_sums(sums: Sums, k: int, tile: Tensor, r0: int, r1: int, j0: int, j1: int,
              above: int, squares: bool) -> None:
    """Row sums (and squares) of a strip piece: its rows above block j also stand for their
    mirror images (M is symmetric), the rows inside block j are that whole block."""
    up, inside = tile[:above], tile[above:]
    if above:
        sums.rowsum[k, r0 : r0 + above] += up.sum(1).to(_F64)  # centred: float32 will do
        sums.rowsum[k, j0:j1] += up.sum(0).to(_F64)
    if inside.shape[0]:
        sums.rowsum[k, r0 + above : r1] += inside.sum(1).to(_F64)
    if squares:
        sums.sumsq[k] += 2 * float(torch.linalg.vector_norm(up, dtype=_F64)) ** 2 + float(
            torch.linalg.vector_norm(inside, dtype=_F64)) ** 2


def new_sums(coll: Collection, rows: int) -> Sums:
    return Sums(torch.zeros(len(coll), rows, dtype=_F64), torch.zeros(len(coll), dtype=_F64))


def u_statistics(forms: Tensor, members: Tensor, sums: Sums, n: int, m: int) -> Tensor:
    r"""(L, c) complete U-statistics MMD^2_u of relabellings from their signed forms.

    With v = a u - b (1 - u), K~ the zero-diagonal pooled matrix, XX = u^T K~ u,
    XY = u^T K~ (1 - u) = r.u - XX (r = K~ 1) and YY = T - 2 r.u + XX (T = 1^T K~ 1):

        Q = v^T K~ v = a^2 XX + b^2 YY - 2 a b XY  ->  XX = (Q + 2 b (a + b) r.u - b^2 T)/(a+b)^2
        MMD^2_u = XX / (n (n-1)) + YY / (m (m-1)) - 2 XY / (n m)
                = g^2 Q / (n m)^2 + XX / (n^2 (n-1)) + YY / (m^2 (m-1)),

    the second form summing terms of the size of the result, where the first cancels
    (Gretton et al. 2012, Eq. 3; g^2 Q / (n m)^2 is the V-statistic without the diagonal).
    ``members`` (c, N) the memberships u the forms were computed for.
    """
    a, b, g = signed_weights(n, m)
    rowsum = sums.rowsum  # (L, N) K~ 1
    ru = torch.zeros(members.shape[0], forms.shape[0], dtype=_F64)  # (c, L)
    for lo, hi in split(members.shape[1], 4096):
        ru += members[:, lo:hi].to(_F64) @ rowsum[:, lo:hi].T
    ru, total = ru.T, rowsum.sum(1)[:, None]  # (L, c), (L, 1)
    xx = (forms + 2 * b * (a + b) * ru - b * b * total) / (a + b) ** 2
    yy = total - 2 * ru + xx
    return forms * (g * g / (n * n * m * m)) + xx / (n * n * (n - 1)) + yy / (m * m * (m - 1))


def signed_weights(n: int, m: int) -> tuple[int, int, int]:
    """(a, b, g): v = a u - b (1 - u) with a = m / g, b = n / g, g = gcd(n, m)."""
    g = math.gcd(n, m)
    return m // g, n // g, g


# --- relabellings and signs ----------------------------------------------------------------

def sign_chunks(n: int, count: int, gen: torch.Generator, chunk: int,
                draw: int) -> Iterator[Tensor]:
    """(c, n) booleans eps > 0: the all-true observed labelling first, then ``count`` wild
    bootstrap draws, ``draw`` rows of torch.rand at a time (the same signs whatever ``chunk``)."""
    done, first = 0, 1
    while done < count:
        rows = min(chunk - first, count - done)
        out = torch.ones(rows + first, n, dtype=torch.bool)
        for start in range(0, rows, draw):
            k = min(draw, rows - start)
            out[first + start : first + start + k] = torch.rand(k, n, generator=gen) < 0.5
        yield out
        done, first = done + rows, 0


@dataclass(frozen=True)
class Plan:
    """Columns per strip (``block``), rows per strip piece (``height``), vectors per pass
    (``chunk``) and per draw of relabellings (``draw``)."""

    block: int
    chunk: int
    draw: int
    height: int


def min_budget(rows: int, kernels: int, vectors: int) -> int:
    """Bytes of the smallest plan: an 8-row piece of an 8-column strip, one vector, one draw."""
    side = min(rows, 8)
    return (_fixed(rows, kernels, vectors) + _entry_bytes(kernels) * side * side
            + _per_vector(rows, side, kernels) + 16 * rows)


def plan(rows: int, kernels: int, vectors: int, budget: int) -> Plan:
    """Sizes within ``budget`` bytes (see :func:`min_budget` for the least it must be).

    Held at once: the statistics (L, P) and the row sums (L, R) in float64 (fixed); a quarter
    of the rest for one strip piece ((96 + 4 L) h b bytes: distances, scratch and the L
    kernels' pieces); half for the chunk (c R booleans, the c R float32 vectors, the L (c, b)
    float32 products and c L float64 forms); an eighth for one draw of relabellings (16 g R
    bytes: torch.rand keys and argsort indices).
    """
    avail = budget - _fixed(rows, kernels, vectors)
    quarter = max(avail // 4 // _entry_bytes(kernels), 1)
    block = max(1, min(TILE_CAP, rows, math.isqrt(quarter)))
    height = max(1, min(PIECE_CAP, rows, quarter // block))
    chunk = max(1, min(vectors, avail // 2 // _per_vector(rows, block, kernels)))
    draw = max(1, min(chunk, avail // 8 // (16 * rows)))
    return Plan(block, chunk, draw, height)


def _entry_bytes(kernels: int) -> int:
    return _TILE_BYTES + 4 * kernels


def _fixed(rows: int, kernels: int, vectors: int) -> int:
    return 8 * kernels * (vectors + 2 * rows)


def _per_vector(rows: int, block: int, kernels: int) -> int:
    return 5 * rows + 4 * block * kernels + 8 * kernels  # booleans, vector, products, forms


def statistics(source, coll: Collection, chunks: Iterable[Tensor], weights: tuple[float, float],
               block: int, total: int, convert, check_time=None, *, squares: bool = False,
               height: int = PIECE_CAP) -> tuple[Tensor, Sums]:
    """(L, total) statistics of every vector, chunk after chunk, and the first pass's sums.

    ``convert(forms, signs, sums)`` turns a chunk's (L, c) forms into its statistics;
    ``check_time(seconds, done, total)`` may refuse a count from the first chunk's time.
    """
    started, done, sums, out = time.perf_counter(), 0, None, []
    for signs in chunks:
        first = sums is None
        if first:
            sums = new_sums(coll, source.rows)
        forms = quadratic_forms(source, coll, signs, weights, block, sums if first else None,
                                squares=squares, height=height)
        if first:
            sums = sums.finish(source.shift)
        out.append(convert(forms, signs, sums))
        done += signs.shape[0]
        if first and done < total and check_time is not None:
            check_time(time.perf_counter() - started, done, total)
    return torch.cat(out, 1), sums


def pair_distances(z: Tensor, norm: str, max_points: int, gen: torch.Generator) -> Tensor:
    """(k,) float64 distances ||z_i - z_j|| (l2) or ||z_i - z_j||_1 (l1) over distinct pairs
    of at most ``max_points`` pooled rows: a seeded random subset, drawn without looking at
    which rows are x, so the bandwidths stay a function of the pooled sample (the permutation
    test stays exact under H0)."""
    if z.shape[0] > max_points:
        z = z[torch.randperm(z.shape[0], generator=gen)[:max_points]]
    return torch.pdist(z, p=1.0 if norm == "l1" else 2.0)


def replace_zeros(dist: Tensor) -> Tensor:
    """Distances with exact zeros (repeated points) replaced by the median, as both papers'
    code does before taking quantiles."""
    return torch.where(dist > 0, dist, dist.median()) if dist.numel() else dist


def permutation_p_value(values: Tensor, tol: float) -> float:
    """(1 + #{b : T_b >= T - tol}) / (1 + B) of (1 + B,) statistics, T = values[0]: never 0,
    a multiple of 1 / (1 + B); ``tol`` absorbs the rounding of equal relabellings."""
    count = int((values[1:] >= values[0] - tol).sum())
    return (1 + count) / values.numel()
