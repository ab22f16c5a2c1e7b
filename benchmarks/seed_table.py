"""The MNIST rows over training seeds, from the committed evaluation reports.

Reads ``results/mnist/<preset>/seed-<S>/report.json`` (what ``gmmn evaluate --run R --seed S``
wrote, copied there) and prints, per preset, each seed's numbers and the row: the mean over
seeds +- the standard deviation over seeds (n - 1 in the denominator) of the Parzen
log-likelihood, FD, KID, precision and recall, and the mean of the runs' own standard errors.

    python benchmarks/seed_table.py [--root results/mnist] [--presets mnist-gmmn,mnist-gan]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

PRESETS = ("mnist-gmmn", "mnist-gmmn-ae", "mnist-gmmn-ae-plus", "mnist-gan", "mnist-gan-paper")


def _runs(root: Path, preset: str) -> list[tuple[int, dict]]:
    out = []
    for folder in sorted((root / preset).glob("seed-*")):
        report = folder / "report.json"
        if report.is_file():
            out.append((int(folder.name.split("-")[1]), json.loads(report.read_text())))
    return out


def _numbers(report: dict) -> dict[str, float]:
    pr = report.get("precision-recall") or {}
    return {"parzen": report["parzen"]["mean"], "stderr": report["parzen"]["stderr"],
            "sigma": report["parzen"]["sigma"], "fd": (report.get("fd") or {}).get("value"),
            "kid": (report.get("kid") or {}).get("mean"), "precision": pr.get("precision"),
            "recall": pr.get("recall")}


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("results/mnist"))
    parser.add_argument("--presets", default=",".join(PRESETS))
    args = parser.parse_args()
    for preset in args.presets.split(","):
        runs = _runs(args.root, preset)
        if not runs:
            continue
        rows = [(seed, _numbers(r)) for seed, r in runs]
        print(f"## {preset}: seeds {', '.join(str(s) for s, _ in rows)}")
        for seed, n in rows:
            print(f"  seed {seed}: Parzen {n['parzen']:.2f} +- {n['stderr']:.2f} (sigma "
                  f"{n['sigma']:.2f}), FD {n['fd']:.3f}, KID {n['kid']:.3f}, precision "
                  f"{n['precision']:.3f}, recall {n['recall']:.3f}")
        cols = {k: [n[k] for _, n in rows] for k in ("parzen", "fd", "kid", "precision",
                                                      "recall")}
        print(f"  row: Parzen {_mean_sd(cols['parzen'])}, run s.e. "
              f"{statistics.mean(n['stderr'] for _, n in rows):.2f}, FD {_mean_sd(cols['fd'])}"
              f", KID {_mean_sd(cols['kid'])}, precision {_mean_sd(cols['precision'])}, "
              f"recall {_mean_sd(cols['recall'])}")


if __name__ == "__main__":
    main()
