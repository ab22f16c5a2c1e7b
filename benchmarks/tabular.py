"""Own tables with no flags: scikit-learn's wine, breast cancer and diabetes, trained by
``gmmn train --dataset FILE`` (no preset, no other flag) and by ``GMMN().fit(X)``.

Each set is split 60 / 20 / 20 (train / validation / test, one seeded permutation) and saved
as an .npz with those three arrays. Both runs train on the training rows only; their samples
(in the data's units) are compared on features z-scored by the training split:

* mean error: |mean(samples) - mean(train)| per feature, in data sd; the median over features;
* sd ratio: sd(samples) / sd(train) per feature; the median;
* correlation error: mean |corr(samples) - corr(train)| over the off-diagonal entries;
* MMD test against the held-out test rows: over R draws, the fraction of permutation tests
  (median bandwidth, z-scored features, 200 permutations) at level 0.05 that reject between
  n_test samples and the test rows, beside the same fraction for n_test training rows
  against the test rows (the real-data reference: the test's own rate on data it should
  not reject).

Targets (issue 23): mean error <= 0.1, sd ratio in 0.8-1.25, correlation error <= 0.1, and
the samples' rejection rate no higher than the training rows' (within two binomial standard
errors of the rates over the R draws: a rate of 2 % against 1 % over 100 tests is noise). Run
from the repository root:

    OMP_NUM_THREADS=1 python benchmarks/tabular.py [--out DIR] [--draws R]

It prints a Markdown table and writes it, with the JSON behind it, to DIR (default
runs/bench-tabular).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from gmmn import GMMN, load_run, two_sample_test

SETS = {"wine": load_wine, "breast-cancer": load_breast_cancer, "diabetes": load_diabetes}
FRACTIONS = (0.6, 0.2, 0.2)
ALPHA = 0.05
N_SAMPLES = 5000
TARGETS = {"mean_err": 0.1, "sd_ratio": (0.8, 1.25), "corr_err": 0.1}


def split(x: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(len(x))
    a = int(FRACTIONS[0] * len(x))
    b = a + int(FRACTIONS[1] * len(x))
    return {"train": x[perm[:a]], "validation": x[perm[a:b]], "test": x[perm[b:]]}


def scores(samples: np.ndarray, parts: dict[str, np.ndarray], *, draws: int) -> dict:
    train, test = parts["train"], parts["test"]
    mu, sd = train.mean(0), train.std(0)
    s, tr, te = ((a - mu) / sd for a in (samples, train, test))
    iu = np.triu_indices(s.shape[1], 1)
    corr = np.abs(np.corrcoef(s.T)[iu] - np.corrcoef(tr.T)[iu])
    rng = np.random.default_rng(1)
    n = len(te)
    reject = {"samples": 0, "train": 0}
    for r in range(draws):
        for name, pool in (("samples", s), ("train", tr)):
            rows = pool[rng.choice(len(pool), size=n, replace=False)]
            p = two_sample_test(torch.from_numpy(rows), torch.from_numpy(te), permutations=200,
                                seed=r).p_value
            reject[name] += p <= ALPHA
    return {"mean_err": float(np.median(np.abs(s.mean(0)))),
            "sd_ratio": float(np.median(s.std(0))),
            "corr_err": float(corr.mean()),
            "reject_samples": reject["samples"] / draws,
            "reject_train": reject["train"] / draws,
            "n_train": len(tr), "n_test": n}


def reject_margin(row: dict, draws: int) -> float:
    """Two binomial standard errors of a rejection rate over ``draws`` tests, at the pooled
    rate of samples and training rows: rates closer than this are the same within noise."""
    p = (row["reject_samples"] + row["reject_train"]) / 2
    return 2 * math.sqrt(max(p * (1 - p), 1 / draws) / draws)


def meets(row: dict, draws: int) -> bool:
    lo, hi = TARGETS["sd_ratio"]
    return (row["mean_err"] <= TARGETS["mean_err"] and lo <= row["sd_ratio"] <= hi
            and row["corr_err"] <= TARGETS["corr_err"]
            and row["reject_samples"] <= row["reject_train"] + reject_margin(row, draws))


def train_cli(npz: Path, out: Path) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gmmn", "train", "--dataset", str(npz),
                           "--out", str(out), "--no-progress"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"gmmn train failed on {npz.name}:\n{done.stderr}")
    return load_run(out).sample(N_SAMPLES, seed=0).cpu().numpy(), seconds


def train_api(x: np.ndarray) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    model = GMMN().fit(x, progress=False)
    return model.sample(N_SAMPLES, seed=0), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-tabular"))
    ap.add_argument("--draws", type=int, default=100, help="MMD tests per rejection rate")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, load in SETS.items():
        x = load().data.astype(np.float64)
        parts = split(x)
        npz = args.out / f"{name}.npz"
        np.savez(npz, **parts)
        run_dir = args.out / f"{name}-cli"
        if run_dir.exists():
            raise SystemExit(f"{run_dir} exists from an earlier run; delete {args.out} first")
        for how, (samples, seconds) in (("CLI", train_cli(npz, run_dir)),
                                        ("API", train_api(parts["train"]))):
            row = {"data": name, "how": how, "shape": list(x.shape),
                   "train_seconds": round(seconds, 1),
                   **scores(samples, parts, draws=args.draws)}
            row["reject_margin"] = reject_margin(row, args.draws)
            row["meets_targets"] = meets(row, args.draws)
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = ["| data | rows x features | trained by | mean error (sd) | sd ratio | corr error "
             "| MMD rejects: samples / training rows (+- margin) | train time (s) | targets met |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['shape'][0]} x {r['shape'][1]} | {r['how']} | "
                     f"{r['mean_err']:.3f} | {r['sd_ratio']:.3f} | {r['corr_err']:.3f} | "
                     f"{r['reject_samples']:.2f} / {r['reject_train']:.2f} "
                     f"(+- {r['reject_margin']:.2f}) | "
                     f"{r['train_seconds']:.0f} | {'yes' if r['meets_targets'] else 'no'} |")
    table = "\n".join(lines)
    print(table)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "draws": args.draws,
            "alpha": ALPHA, "n_samples": N_SAMPLES}
    (args.out / "tabular.md").write_text(table + "\n")
    (args.out / "tabular.json").write_text(json.dumps({"rows": rows, **meta}, indent=2) + "\n")


if __name__ == "__main__":
    main()
