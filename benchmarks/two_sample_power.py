"""Power of the kernel-selection methods of ``gmmn.mmd.two_sample_test``, against the papers.

    python benchmarks/two_sample_power.py EXPERIMENT [--reps R] [--points ...]
    python benchmarks/two_sample_power.py figure        # redraws the figure from the JSONs

EXPERIMENT is one of

* ``mixture``: the MMD-FUSE paper's mixture of four 2-d Gaussians (means (+-20, +-20), sd 1);
  in y the fourth component's sd is the perturbation (1 is H0); n = m = 500;
* ``uniform-d1`` / ``uniform-d2``: the MMDAgg paper's perturbed uniform densities on [0, 1]^d
  (2 perturbations per dimension, bumps G of Schrab et al. 2023, Eq. 17, random signs per
  repetition), x perturbed with amplitude ``scale`` (0 is H0), y uniform; n = m = 500, as in
  the MMD-FUSE paper's figure;
* ``blobs``: a 3 x 3 grid of 2-d Gaussians 10 apart (Gretton et al. 2012b); x's components
  have covariance I, y's eigenvalues (eps, 1) rotated by 45 degrees (eps = 1 is H0);
  n = m = 500;
* ``calibration``: the type-I error at alpha = 0.05, n = m = 200, d = 5, Gaussian and
  Student-t (3 degrees of freedom) data.

Each repetition draws fresh data and runs the four methods at alpha = 0.05 with their
defaults ("median" with 2000 permutations, as the MMD-FUSE paper's median test). Results go
to results/two-sample-power/EXPERIMENT.json with 95% Clopper-Pearson intervals and, where the
paper reports the point, its rejection rate (200 repetitions in the MMD-FUSE paper's code
notebooks, its printed outputs copied below).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from gmmn.mmd import two_sample_test  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "results" / "two-sample-power"
METHODS = ("median", "agg", "fuse", "split")

# Rejection rates printed by the MMD-FUSE paper's notebooks (antoninschrab/mmdfuse-paper:
# experiment_mixture.ipynb, experiment_perturbations.ipynb), 200 repetitions, alpha = 0.05.
PAPER = {
    "mixture": {"points": (0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.2, 1.4, 1.6, 1.8, 2),
                "fuse": (0.995, 0.945, 0.51, 0.135, 0.065, 0.035, 0.105, 0.235, 0.635, 0.84,
                         0.905),
                "median": (0.055, 0.05, 0.03, 0.035, 0.065, 0.035, 0.04, 0.04, 0.03, 0.035,
                           0.05),
                "split": (0.885, 0.615, 0.26, 0.095, 0.09, 0.05, 0.085, 0.145, 0.315, 0.495,
                          0.555),
                "agg": (0.995, 0.915, 0.46, 0.12, 0.09, 0.05, 0.105, 0.25, 0.675, 0.91,
                        0.945)},
    "uniform-d1": {"points": (0, 0.1, 0.2, 0.3, 0.4, 0.5),
                   "fuse": (0.045, 0.085, 0.18, 0.505, 0.825, 0.975),
                   "median": (0.04, 0.06, 0.105, 0.29, 0.465, 0.675),
                   "split": (0.065, 0.075, 0.125, 0.24, 0.565, 0.825),
                   "agg": (0.035, 0.08, 0.21, 0.605, 0.88, 0.985)},
    "uniform-d2": {"points": (0, 0.2, 0.4, 0.6, 0.8, 1),
                   "fuse": (0.045, 0.055, 0.17, 0.485, 0.885, 0.995),
                   "median": (0.05, 0.065, 0.065, 0.05, 0.06, 0.075),
                   "split": (0.05, 0.055, 0.1, 0.205, 0.415, 0.735),
                   "agg": (0.045, 0.055, 0.145, 0.395, 0.83, 0.99)},
}
POINTS = {"mixture": PAPER["mixture"]["points"], "uniform-d1": PAPER["uniform-d1"]["points"],
          "uniform-d2": PAPER["uniform-d2"]["points"], "blobs": (1, 1.5, 2, 3, 4, 6),
          "calibration": ("gaussian", "student-t")}
LABEL = {"mixture": "sd of y's fourth component", "uniform-d1": "perturbation amplitude",
         "uniform-d2": "perturbation amplitude", "blobs": "eigenvalue ratio eps of y's blobs"}


# --- samplers ----------------------------------------------------------------------------------

def mixture(rng: np.random.Generator, n: int, sd_last: float) -> np.ndarray:
    centres = np.array([[20.0, 20.0], [-20.0, 20.0], [20.0, -20.0], [-20.0, -20.0]])
    lab = rng.integers(0, 4, n)
    sd = np.where(lab == 3, sd_last, 1.0)[:, None]
    return centres[lab] + sd * rng.standard_normal((n, 2))


def bump(t: np.ndarray) -> np.ndarray:
    """G(t) of the MMDAgg paper: exp(-1/(1-(4t+3)^2)) on (-1, -1/2), minus exp(-1/(1-(4t+1)^2))
    on (-1/2, 0), 0 elsewhere: a smooth positive and negative bump, max e^-1."""
    out = np.zeros_like(t)
    a = (t > -1) & (t < -0.5)
    b = (t > -0.5) & (t < 0)
    out[a] = np.exp(-1 / (1 - (4 * t[a] + 3) ** 2))
    out[b] = -np.exp(-1 / (1 - (4 * t[b] + 1) ** 2))
    return out


def perturbed_uniform(rng: np.random.Generator, n: int, d: int, scale: float,
                      bumps: int = 2) -> np.ndarray:
    """n points of f(x) = 1 + scale e^d sum_j theta_j prod_r G(P x_r - j_r) on [0, 1]^d
    (j in {1..P}^d, random signs theta), by rejection from the uniform under 1 + scale."""
    if scale == 0:
        return rng.random((n, d))
    theta = rng.choice([-1.0, 1.0], bumps**d)
    cells = np.array(list(itertools.product(range(1, bumps + 1), repeat=d)))  # (P^d, d)
    out = np.empty((0, d))
    while out.shape[0] < n:
        cand = rng.random((4 * n, d))
        pert = np.einsum("j,kj->k", theta, np.prod(bump(bumps * cand[:, None, :] - cells), 2))
        dens = 1 + scale * np.exp(d) * pert
        keep = rng.random(4 * n) * (1 + scale) <= dens
        out = np.concatenate([out, cand[keep]])
    return out[:n]


def blobs(rng: np.random.Generator, n: int, eps: float) -> np.ndarray:
    centres = 10.0 * np.array(list(itertools.product(range(-1, 2), repeat=2)))
    rot = np.array([[1, -1], [1, 1]]) / np.sqrt(2)
    cov_root = rot @ np.diag([np.sqrt(eps), 1.0])  # covariance R diag(eps, 1) R^T
    return centres[rng.integers(0, 9, n)] + rng.standard_normal((n, 2)) @ cov_root.T


def samples(name: str, point, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if name == "mixture":
        return mixture(rng, 500, 1.0), mixture(rng, 500, point)
    if name in ("uniform-d1", "uniform-d2"):
        d = int(name[-1])
        return perturbed_uniform(rng, 500, d, point), rng.random((500, d))
    if name == "blobs":
        return blobs(rng, 500, 1.0), blobs(rng, 500, point)
    if point == "gaussian":
        return rng.standard_normal((200, 5)), rng.standard_normal((200, 5))
    return rng.standard_t(3, (200, 5)), rng.standard_t(3, (200, 5))


# --- the runs ----------------------------------------------------------------------------------

def interval(k: int, reps: int) -> tuple[float, float]:
    """The 95% Clopper-Pearson interval of a rate k / reps."""
    from scipy.stats import beta

    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, reps - k + 1))
    hi = 1.0 if k == reps else float(beta.ppf(0.975, k + 1, reps - k))
    return lo, hi


def run(name: str, reps: int, points) -> dict:
    torch.set_num_threads(1)
    out = {"experiment": name, "reps": reps, "alpha": 0.05, "points": list(points),
           "methods": {m: [] for m in METHODS}, "seconds": {m: 0.0 for m in METHODS}}
    for i, point in enumerate(points):
        counts = dict.fromkeys(METHODS, 0)
        for r in range(reps):
            rng = np.random.default_rng([zlib.crc32(name.encode()), i, r])
            x, y = (torch.from_numpy(a) for a in samples(name, point, rng))
            for method in METHODS:
                kw = {"permutations": 2000} if method == "median" else {}
                t = time.perf_counter()
                res = two_sample_test(x, y, method=method, alpha=0.05, seed=r, **kw)
                out["seconds"][method] += time.perf_counter() - t
                counts[method] += bool(res.reject)
        for method in METHODS:
            k = counts[method]
            out["methods"][method].append({"point": point, "rejections": k,
                                           "rate": k / reps, "ci95": interval(k, reps)})
        print(name, point, {m: counts[m] / reps for m in METHODS}, flush=True)
    if name in PAPER:
        paper = PAPER[name]
        out["paper"] = {m: {p: paper[m][paper["points"].index(p)] for p in points
                            if p in paper["points"]} for m in METHODS}
    return out


def agg_level(reps: int) -> dict:
    """Why MMDAgg rejects less than alpha under H0: the calibration data, agg alone.

    Per repetition the wild-bootstrap statistics of the 20 kernels twice, gmmn's float32 tiles
    and a dense float64 (n, n) H matrix per kernel (the same collection and signs), and
    Algorithm 1 on each: float64 with exact comparisons (no tie tolerance) and float32 with
    the library's tie rule (what ``two_sample_test`` does). Besides each decision:

    * ``aimed``: the rejection rate of the B2 statistics at u_alpha, the level the correction
      aims at (<= alpha by construction);
    * ``achieved``: the rejection rate the observed statistic actually faces, given the data,
      estimated by letting each B2 statistic play the observed one. Under H0 the observed
      signs are exchangeable with random ones, so this is the conditional type-I error at
      u_alpha, with far less noise than one decision per repetition. A B2 statistic is
      compared with the quantile of the B1 statistics plus itself, the observed one with that
      of the B1 statistics plus the observed: the same rule, and the rank the observed takes
      among the B1 + 1 is why ``achieved`` < ``aimed``.
    """
    from gmmn.mmd import _agg
    from gmmn.mmd._methods import _generator
    from gmmn.mmd._multi import TIE, TILE_CAP, PairedSource, statistics

    torch.set_num_threads(1)
    b1 = b2 = 2000
    out = {"experiment": "agg-level", "reps": reps, "alpha": 0.05, "b1": b1, "b2": b2,
           "points": list(POINTS["calibration"]), "rows": {}, "summary": {}}
    for i, point in enumerate(POINTS["calibration"]):
        rows = []
        for r in range(reps):
            rng = np.random.default_rng([zlib.crc32(b"agg-level"), i, r])
            x, y = (torch.from_numpy(a) for a in samples("calibration", point, rng))
            n = x.shape[0]
            coll = _agg.collection(torch.cat([x, y]), ("laplace", "gaussian"), 10,
                                   _generator(r, 1))
            w = torch.tensor(_agg.weights(10, "uniform") * 2, dtype=torch.float64) / 2
            signs = torch.cat([torch.ones(1, n, dtype=torch.bool),
                               torch.rand(b1 + b2, n, generator=_generator(r, 0)) < 0.5])
            s32, _ = statistics(PairedSource(x, y), coll, [signs], (1.0, 1.0),
                                min(TILE_CAP, n), signs.shape[0],
                                lambda f, s, sm, n=n: f / (n * (n - 1)))
            s64 = dense_wild(x, y, coll, signs)
            row = {}
            for name, stats, exact in (("f64_exact", s64, True), ("f32_tie", s32, False)):
                saved = _agg.TIE
                _agg.TIE = 0.0 if exact else saved
                try:
                    dec = _agg.decide(stats, b1, w, 0.05, 50)
                finally:
                    _agg.TIE = saved
                tol = 0.0 if exact else TIE * _agg.tie_scale(stats)
                null = stats[:, b1 + 1:]  # (L, B2)
                aimed = float((null > (dec.thresholds + tol)[:, None]).any(0).double().mean())
                # Each B2 statistic as the observed: the k-th smallest of the B1 statistics
                # and itself exceeds it iff the k-th smallest of the B1 alone does.
                ordered = torch.sort(stats[:, 1 : b1 + 1], dim=1).values  # (L, B1)
                idx = torch.ceil((b1 + 1) * (1.0 - dec.levels)).long() - 1  # 0-based, of B1+1
                kth = ordered.gather(1, idx.clamp(0, b1 - 1)[:, None])[:, 0]
                kth = torch.where(idx >= b1, torch.inf, kth)  # a level below 1 / (B1 + 1)
                achieved = float((null > (kth + tol)[:, None]).any(0).double().mean())
                row[name] = {"reject": dec.reject, "u": dec.u, "aimed": aimed,
                             "achieved": achieved}
            rows.append(row)
            if (r + 1) % 50 == 0:
                print(point, r + 1, _agg_summary(rows), flush=True)
        out["rows"][point] = rows
        out["summary"][point] = _agg_summary(rows)
        print(point, out["summary"][point], flush=True)
    return out


def _agg_summary(rows: list[dict]) -> dict:
    keys = rows[0].keys()
    return {k: {"rejections": sum(rw[k]["reject"] for rw in rows), "reps": len(rows),
                "aimed": round(float(np.mean([rw[k]["aimed"] for rw in rows])), 5),
                "achieved": round(float(np.mean([rw[k]["achieved"] for rw in rows])), 5)}
            for k in keys} | {"discordant": sum(rw["f64_exact"]["reject"] != rw["f32_tie"]["reject"]
                                                for rw in rows)}


def dense_wild(x: torch.Tensor, y: torch.Tensor, coll, signs: torch.Tensor) -> torch.Tensor:
    """(L, P) float64 e^T H e / (n (n-1)) from dense (n, n) matrices H (diagonal 0)."""
    n = x.shape[0]
    e = torch.where(signs, 1.0, -1.0).to(torch.float64)  # (P, n)
    d2 = {"xx": torch.cdist(x, x) ** 2, "yy": torch.cdist(y, y) ** 2, "xy": torch.cdist(x, y) ** 2}
    d1 = {"xx": torch.cdist(x, x, p=1), "yy": torch.cdist(y, y, p=1), "xy": torch.cdist(x, y, p=1)}
    out = torch.empty(len(coll), e.shape[0], dtype=torch.float64)
    for k, (fam, bw) in enumerate(zip(coll.families, coll.bandwidths, strict=True)):
        kern = {key: torch.exp(-d2[key] / (2 * bw * bw)) if fam == "gaussian" else
                torch.exp(-d1[key] / bw) for key in d2}
        h = kern["xx"] + kern["yy"] - kern["xy"] - kern["xy"].T
        h.fill_diagonal_(0.0)
        out[k] = ((e @ h) * e).sum(1) / (n * (n - 1))
    return out


def figure() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("mixture", "uniform-d1", "uniform-d2", "blobs")
             if (OUT / f"{n}.json").exists()]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    colours = dict(zip(METHODS, ("tab:gray", "tab:blue", "tab:red", "tab:green"), strict=True))
    for ax, name in zip(axes[0], names, strict=True):
        res = json.loads((OUT / f"{name}.json").read_text())
        for method in METHODS:
            rows = res["methods"][method]
            xs = [r["point"] for r in rows]
            ax.plot(xs, [r["rate"] for r in rows], "o-", color=colours[method], label=method,
                    ms=3)
            ax.fill_between(xs, [r["ci95"][0] for r in rows], [r["ci95"][1] for r in rows],
                            color=colours[method], alpha=0.15, lw=0)
            paper = res.get("paper", {}).get(method, {})
            if paper:
                pts = sorted(paper.items(), key=lambda kv: float(kv[0]))
                ax.plot([float(p) for p, _ in pts], [v for _, v in pts], "x--",
                        color=colours[method], lw=0.8, ms=4)
        ax.axhline(0.05, color="k", lw=0.5, ls=":")
        ax.set_title(f"{name} (n = m = 500, {res['reps']} reps)", fontsize=9)
        ax.set_xlabel(LABEL[name], fontsize=8)
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("rejection rate at alpha = 0.05")
    axes[0][0].legend(fontsize=7, title="o ours (95% CI band)\nx paper", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "power.png", dpi=130)


def table(name: str) -> str:
    """A markdown table of one experiment: ours (95% interval) beside the paper's rate."""
    res = json.loads((OUT / f"{name}.json").read_text())
    paper = res.get("paper", {})
    head = "| " + LABEL.get(name, "data") + " | " + " | ".join(METHODS) + " |"
    lines = [head, "|" + "---|" * (len(METHODS) + 1)]
    for i, point in enumerate(res["points"]):
        cells = []
        for method in METHODS:
            row = res["methods"][method][i]
            lo, hi = row["ci95"]
            if name == "calibration":  # rejections, so that no rounding hides a count
                cell = f"{row['rejections']}/{res['reps']} = {row['rate']:.4f} ({lo:.3f}-{hi:.3f})"
            else:
                cell = f"{row['rate']:.3f} ({lo:.2f}-{hi:.2f})"
            ref = paper.get(method, {}).get(str(point))
            cells.append(cell + (f" / {ref:.3f}" if ref is not None else ""))
        lines.append(f"| {point} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", choices=(*POINTS, "figure", "tables", "agg-level"))
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--points", type=float, nargs="+", help="perturbations to run (default: "
                   "the paper's)")
    args = p.parse_args()
    if args.experiment == "figure":
        figure()
        return
    if args.experiment == "tables":
        for name in POINTS:
            if (OUT / f"{name}.json").exists():
                print(f"{name}\n\n{table(name)}\n")
        return
    if args.experiment == "agg-level":
        res = agg_level(args.reps)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "agg-level.json").write_text(json.dumps(res) + "\n")
        return
    points = POINTS[args.experiment] if args.points is None else args.points
    points = [int(v) if isinstance(v, float) and v.is_integer() and
              args.experiment != "calibration" else v for v in points]
    res = run(args.experiment, args.reps, points)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.experiment}.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
