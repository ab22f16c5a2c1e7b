"""The variance-reduction experiment of Hofert, Prasad & Zhu (JCGS 2021): a GMMN of a t copula
as a quasi-random sampler.

Data: ``n_train`` samples of the t copula with ``df = 4``, ``d = 5`` and equicorrelation
``rho = sin(pi tau / 2)`` for Kendall's tau 0.5 (:mod:`gmmn.copulas`), as pseudo-observations.
Model (the paper's): prior N(0, I_5), one hidden layer of 300 ReLU units, sigmoid output;
loss sqrt(MMD^2) with the Gaussian mixture kernel of the R package ``gnn``, bandwidths ``h`` in
(0.001, 0.01, 0.15, 0.25, 0.5, 0.75) on the squared distance, ``exp(-|x - y|^2 / (2 h))``, i.e.
gmmn kernel standard deviations ``sigma = sqrt(h)``; Adam (lr 1e-3, Keras' default, as
``gnn`` trains); ``--batch`` rows per step (paper 5000) for ``--epochs`` (paper 300).

Then, for n = 2^9 ... 2^max_log2n, ``--reps`` replications of the ES_0.99 estimate of
``S = sum_j Phi^{-1}(U_j)``, ``ES = mean of the ceil(n (1 - 0.99)) largest S``, from four
samplers: the true copula with pseudo-random numbers (scipy), the GMMN with pseudo-random
prior points, the GMMN with randomised Sobol' prior points (``qmc=True``: the code path of
``Run.sample``), and the true copula with randomised Sobol' points through the conditional
distribution method (:func:`gmmn.copulas.t_copula_cdm`). Their standard deviations, fitted
rates ``std ~ n^-a`` (least squares in log-log), a figure and a table go to ``--out``; plus the
Cramer-von Mises statistic of 1000 GMMN samples against the true copula.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/qmc_copula.py            # the paper's sizes
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/qmc_copula.py --batch 1000 --epochs 60
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import ndtri

from gmmn.copulas import (
    cvm_statistic,
    equicorrelation,
    pobs,
    rho_from_tau,
    t_copula,
    t_copula_cdm,
)
from gmmn.families.base import PriorSampler
from gmmn.mmd import mmd_loss
from gmmn.models import GenerativeModel, Generator
from gmmn.qmc import sobol_points

BANDWIDTHS = (0.001, 0.01, 0.15, 0.25, 0.50, 0.75)  # gnn's h: exp(-|x - y|^2 / (2 h))
ALPHA = 0.99
SAMPLERS = ("copula pseudo", "GMMN pseudo", "GMMN RQMC", "copula RQMC (CDM)")


def es(u: np.ndarray, alpha: float = ALPHA) -> float:
    """ES_alpha of S = sum_j Phi^{-1}(U_j): the mean of the ceil(n (1 - alpha)) largest S
    (U clipped to [1e-8, 1 - 1e-8]: a float32 sigmoid can return exactly 0 or 1)."""
    s = ndtri(np.clip(np.asarray(u, dtype=np.float64), 1e-8, 1 - 1e-8)).sum(1)
    k = math.ceil(len(s) * (1 - alpha))
    return float(np.partition(s, len(s) - k)[len(s) - k:].mean())


def train(args, corr: np.ndarray) -> tuple[GenerativeModel, list[float], float]:
    torch.manual_seed(args.seed)
    x = torch.from_numpy(pobs(t_copula(args.n_train, df=args.df, corr=corr,
                                       seed=args.seed)).astype(np.float32))
    g = Generator(args.d, (300,), args.d, sigmoid_output=True, init_std=None,
                  generator=torch.Generator().manual_seed(args.seed), prior="normal")
    model = GenerativeModel(g)
    opt = torch.optim.Adam(g.parameters(), lr=args.lr)
    sigmas = [math.sqrt(h) for h in BANDWIDTHS]
    rng = torch.Generator().manual_seed(args.seed + 1)
    losses, t0 = [], time.time()
    for epoch in range(args.epochs):
        order = torch.randperm(len(x), generator=rng)
        for start in range(0, len(x) - args.batch + 1, args.batch):
            y = x[order[start:start + args.batch]]
            loss = mmd_loss(g(g.sample_prior(args.batch, rng)), y, sigmas=sigmas)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if epoch % 10 == 0 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1}/{args.epochs} loss {np.mean(losses[-20:]):.4f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    return model.eval(), losses, time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/qmc")
    p.add_argument("--df", type=float, default=4.0)
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--tau", type=float, default=0.5)
    p.add_argument("--n-train", type=int, default=60000)
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--reps", type=int, default=25)
    p.add_argument("--min-log2n", type=int, default=9)
    p.add_argument("--max-log2n", type=int, default=18)
    p.add_argument("--seed", type=int, default=271)
    p.add_argument("--model", default=None, help="reuse a saved generator (skip training)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corr = equicorrelation(args.d, rho_from_tau(args.tau))
    t_start = time.time()

    if args.model:
        g = Generator(args.d, (300,), args.d, sigmoid_output=True, init_std=None,
                      prior="normal")
        model = GenerativeModel(g)
        model.load_state_dict(torch.load(args.model))
        model.eval()
        train_s, losses = None, []
    else:
        model, losses, train_s = train(args, corr)
        torch.save(model.state_dict(), out / "gmmn.pt")
    sampler = PriorSampler(model, {"dim": args.d, "mean": None, "std": None},
                           what="the experiment's GMMN")

    def draw(name: str, n: int, seed: int) -> np.ndarray:
        if name == "copula pseudo":
            return t_copula(n, df=args.df, corr=corr, seed=10**6 + seed)
        if name == "GMMN pseudo":
            return sampler.sample(n, seed=seed).double().numpy()
        if name == "GMMN RQMC":
            return sampler.sample(n, seed=seed, qmc=True).double().numpy()
        return t_copula_cdm(sobol_points(n, args.d, seed=2 * 10**6 + seed), df=args.df,
                            corr=corr)

    ns = [2**m for m in range(args.min_log2n, args.max_log2n + 1)]
    t_eval = time.time()
    est = {s: np.zeros((len(ns), args.reps)) for s in SAMPLERS}
    for i, n in enumerate(ns):
        for r in range(args.reps):
            for s in SAMPLERS:
                est[s][i, r] = es(draw(s, n, r))
        print(f"n = 2^{int(math.log2(n))}: " + ", ".join(
            f"{s} {est[s][i].std(ddof=1):.4g}" for s in SAMPLERS), flush=True)
    eval_s = time.time() - t_eval
    std = {s: est[s].std(1, ddof=1) for s in SAMPLERS}
    rates = {s: float(-np.polyfit(np.log(ns), np.log(std[s]), 1)[0]) for s in SAMPLERS}

    ref = t_copula(2**16, df=args.df, corr=corr, seed=3 * 10**6)
    cvm_gmmn = [cvm_statistic(sampler.sample(1000, seed=500 + r).double().numpy(), ref)
                for r in range(5)]
    cvm_true = [cvm_statistic(t_copula(1000, df=args.df, corr=corr, seed=600 + r), ref)
                for r in range(5)]

    i16 = ns.index(2**16) if 2**16 in ns else None
    ratio16 = (float(std["GMMN pseudo"][i16] / std["GMMN RQMC"][i16])
               if i16 is not None else None)
    summary = {
        "settings": {k: v for k, v in vars(args).items()},
        "bandwidths_h": BANDWIDTHS, "train_seconds": train_s, "eval_seconds": eval_s,
        "total_seconds": time.time() - t_start,
        "final_loss": float(np.mean(losses[-20:])) if losses else None,
        "n": ns, "std": {s: std[s].tolist() for s in SAMPLERS},
        "mean": {s: est[s].mean(1).tolist() for s in SAMPLERS}, "rates": rates,
        "std_ratio_gmmn_pseudo_over_rqmc_at_2^16": ratio16,
        "cvm_gmmn_mean": float(np.mean(cvm_gmmn)), "cvm_true_copula_mean": float(
            np.mean(cvm_true)),
        "threads": torch.get_num_threads(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    rows = ["| n | " + " | ".join(SAMPLERS) + " |", "|---|" + "---|" * len(SAMPLERS)]
    for i, n in enumerate(ns):
        rows.append(f"| 2^{int(math.log2(n))} | " + " | ".join(
            f"{std[s][i]:.3e}" for s in SAMPLERS) + " |")
    rows.append("| fitted rate a (std ~ n^-a) | " + " | ".join(
        f"{rates[s]:.2f}" for s in SAMPLERS) + " |")
    (out / "table.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    print(json.dumps({k: summary[k] for k in ("rates", "std_ratio_gmmn_pseudo_over_rqmc_at_2^16",
                                               "cvm_gmmn_mean", "cvm_true_copula_mean",
                                               "train_seconds", "eval_seconds")}, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for s, mark in zip(SAMPLERS, "osD^", strict=True):
        ax.loglog(ns, std[s], marker=mark, label=f"{s} (n^-{rates[s]:.2f})")
    ax.loglog(ns, std["copula pseudo"][0] * (np.array(ns) / ns[0]) ** -0.5, "k:",
              label="n^-0.5")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("n")
    ax.set_ylabel(f"std of the ES_{ALPHA} estimate ({args.reps} replications)")
    ax.set_title(f"t copula, df {args.df:g}, d {args.d}, tau {args.tau:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "es_std.png", dpi=120)


if __name__ == "__main__":
    main()
