"""Settings chosen from the data, and the check that a finished GMMN fits its data.

A config field set to None here means "choose from the data" (the ``tabular-gmmn`` preset
sets them so; docs/data.md, "Your own tables"). :func:`resolve` replaces each one before
anything is built, and the run stores the chosen values, so a resumed run, ``gmmn sample`` and
``gmmn evaluate`` see the same numbers as the run did:

* ``standardize``: z-score every feature (training split's mean and std) when any value lies
  outside [0, 1]; data in [0, 1] stays as it is, with a sigmoid output.
* ``sigmas``: the median pairwise distance m of up to 1000 (standardised) training rows
  times (1/6, 1/4, 1/3, 1/2, 2/3, 1), the ratios of the digits preset's scales to its median.
* ``lr``: 2 (the paper's) for a sigmoid output; 0.1 for a linear one, where 2 overshoots far
  beyond the kernels' reach (measured on scikit-learn's wine: sample means 200 sd off).
* ``data_batch_size``: every training row, at most 1000 (the paper's batch).
* ``prior_dim``: twice the data's dimension D, at least 10 (the paper's) and at most 100. A
  prior of fewer dimensions than the data puts every sample on a lower-dimensional surface,
  which a two-sample test sees: on breast cancer (D = 30) the MMD test told samples from
  held-out rows 8 % of the time with a 10-dimensional prior, 2 % with 60.

The iteration count stays the preset's (3000 for ``tabular-gmmn``): a step's cost is bounded
by the batches, not by the number of rows, so 3000 steps take about the same time on 100 or
100000 rows, and on the tables tried the loss had flattened by then.

:func:`check_fit` runs after a GMMN's last iteration (docs/training.md, "Diverged or
collapsed runs"): samples far outside the data's range, a spread far from the data's, or a
loss that rose at the end make a :class:`FitCheck` whose message names the fix.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from gmmn.config import AUTO_FIELDS, TrainConfig
from gmmn.data.splits import Splits, standardized
from gmmn.errors import FitCheckFailed
from gmmn.models import sigmoid_output
from gmmn.training.blocks import median_distance

log = logging.getLogger(__name__)

# The widths, as fractions of the median pairwise distance, that the digits preset uses.
MEDIAN_RATIOS = (1 / 6, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 1.0)
SIGMOID_LR = 2.0  # the paper's
LINEAR_LR = 0.1  # converged on standardised wine, breast cancer and diabetes
MAX_AUTO_BATCH = 1000  # the paper's data batch
MIN_AUTO_PRIOR, MAX_AUTO_PRIOR = 10, 100  # the paper's prior; a bound on the first layer


def median_sigmas(x: torch.Tensor, *, seed: int = 0, n: int = 1000) -> tuple[float, ...]:
    """Kernel widths from the median pairwise distance m: m * (1/6, 1/4, 1/3, 1/2, 2/3, 1).

    m is :func:`gmmn.mmd.median_heuristic`'s of up to ``n`` rows, with its fallbacks: the mean
    distance when the median is 0, and 1 when all rows are equal.
    """
    return tuple(median_distance(x, seed=seed, n=n) * r for r in MEDIAN_RATIOS)


def resolve(cfg: TrainConfig, splits: Splits, *, data_space: bool
            ) -> tuple[TrainConfig, Splits, dict]:
    """``cfg`` with every setting that is None in :data:`gmmn.config.AUTO_FIELDS` chosen from
    ``splits`` (rules in the module docstring); the splits the run trains on (standardised
    when ``cfg.standardize`` is, or becomes, True); and the chosen values, by field.
    ``data_space``: the family's generator writes data rows itself (a GMMN or GAN, not an
    autoencoder or a Markov chain), so raw values outside [0, 1] deserve a warning."""
    chosen: dict = {}
    given = cfg.flat()
    if cfg.standardize is None:
        chosen["standardize"] = not splits.unit_interval
    if cfg.standardize or chosen.get("standardize"):
        splits = standardized(splits)  # a no-op for splits the loader standardised
    elif not splits.unit_interval and data_space:
        log.warning("%s: values lie outside [0, 1] and --no-standardize keeps them as they "
                    "are: the generator's output is linear and the kernel scales must fit the "
                    "raw units (--standardize, or no --preset, is recommended)", splits.source)
    if "data_batch_size" in given and given["data_batch_size"] is None:
        chosen["data_batch_size"] = min(len(splits.train), MAX_AUTO_BATCH)
    if "sigmas" in given and given["sigmas"] is None:
        chosen["sigmas"] = median_sigmas(splits.train, seed=cfg.seed)
    if "prior_dim" in given and given["prior_dim"] is None:
        chosen["prior_dim"] = min(max(MIN_AUTO_PRIOR, 2 * splits.dim), MAX_AUTO_PRIOR)
    if "lr" in given and given["lr"] is None:
        sigmoid = sigmoid_output(given["output"], unit_interval=splits.unit_interval)
        chosen["lr"] = SIGMOID_LR if sigmoid else LINEAR_LR
    if chosen:
        shown = ", ".join(f"{k} {show_value(v)}" for k, v in chosen.items())
        log.info("chosen from the data (%d rows, %d features): %s", len(splits.train),
                 splits.dim, shown)
    out = cfg.override(**chosen)
    assert all(out.get(k, 0) is not None for k in AUTO_FIELDS)
    return out, splits, chosen


def show_value(v) -> str:
    """A chosen value as a flag takes it: ``0.836,1.25``, ``0.1``, ``true``."""
    if isinstance(v, tuple):
        return ",".join(f"{x:.3g}" for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v).lower()


# --- the check after training -------------------------------------------------------------

CHECK_SAMPLES = 2000
# A sample value further than this many data ranges beyond the data's [min, max] (per
# feature) is "far outside"; more than FAR_FRACTION of them fails the check.
FAR_RANGES = 1.0
FAR_FRACTION = 0.01
# The median over features of (sample sd / data sd) must lie in this band.
SD_RATIO_BAND = (0.2, 5.0)
# The mean logged loss of the run's last tenth above (1 + this) x its lowest tenth: rising.
LOSS_RISE = 0.5
# A shorter run (a smoke test, a first try) is not expected to fit yet: its problems are
# reported as a warning, and only runs of at least this many iterations fail on them.
MIN_CHECKED_ITERATIONS = 500


@dataclass(frozen=True)
class FitCheck:
    """What :func:`check_fit` measured; ``problems`` is empty for a run that passed."""

    far_fraction: float
    sd_ratio: float
    loss_rise: float | None
    problems: tuple[str, ...]
    advice: str
    binding: bool = True  # False for runs under MIN_CHECKED_ITERATIONS: warn, do not fail

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def failed(self) -> bool:
        """Whether the run should end in an error (a binding check with problems)."""
        return self.binding and not self.ok

    def message(self) -> str:
        return "; ".join(self.problems) + f": {self.advice}"

    def error(self, kept: str) -> FitCheckFailed:
        """The error of a failed check; ``kept`` says where the trained model still is."""
        return FitCheckFailed(f"training finished, but {self.message()} ({kept})")

    def to_dict(self) -> dict:
        return {"ok": self.ok, "far_fraction": self.far_fraction, "sd_ratio": self.sd_ratio,
                "loss_rise": self.loss_rise, "problems": list(self.problems),
                "advice": self.advice, "binding": self.binding}


@torch.no_grad()
def check_fit(samples: torch.Tensor, train: torch.Tensor, losses: list[float], *,
              lr: float, standardize: bool, iterations: int, linear: bool,
              suggest_no_preset: bool) -> FitCheck:
    """Compare ``samples`` (n, D) with the ``train`` rows they should resemble, both in the
    units the model trained in, and the logged ``losses`` of its last stage.

    Fails (``problems``) when, for a linear output, more than 1 % of sample values lie over
    one data range beyond the data's per-feature [min, max] (a sigmoid output cannot leave
    [0, 1], and a pixel that is nearly always 0 has a tiny range); when the median
    per-feature sd ratio leaves 0.2-5; or when the loss's last tenth averages 50 % above its
    lowest tenth. The check binds (``failed``) for runs of ``MIN_CHECKED_ITERATIONS`` or more.
    ``lr``, ``standardize`` and ``iterations`` are the run's; ``suggest_no_preset``: the
    advice may point to the settings chosen from the data (no --preset).
    """
    s = samples.detach().double().cpu()
    x = train.detach().double().cpu()
    # Constant features (image borders, a column of 7s) have no range or spread to compare.
    live = x.std(0) > 0
    s_live, x_live = s[:, live], x[:, live]
    lo, hi = x_live.min(0).values, x_live.max(0).values
    span = hi - lo
    far = (((s_live < lo - FAR_RANGES * span) | (s_live > hi + FAR_RANGES * span)).double().mean()
           if live.any() else torch.tensor(0.0))
    ratio = float((s_live.std(0) / x_live.std(0)).median()) if live.any() else 1.0
    problems = []
    if linear and (not math.isfinite(float(far)) or float(far) > FAR_FRACTION):
        problems.append(f"{float(far):.1%} of sample values lie more than a data range beyond "
                        f"the training data's")
    if not (SD_RATIO_BAND[0] <= ratio <= SD_RATIO_BAND[1]):
        what = "far wider than" if ratio > 1 else "collapsed far below"
        problems.append(f"the samples' spread is {what} the data's (median sd ratio "
                        f"{ratio:.3g})")
    rise = _loss_rise(losses)
    if rise is not None and rise > LOSS_RISE:
        problems.append(f"the loss rose at the end ({rise:.0%} above its lowest stretch)")
    # A tenth of the lr, and for a linear output no more than the lr that converged on tables.
    lower = lr * 0.1 if lr is not None else LINEAR_LR
    lower = f"{min(lower, LINEAR_LR) if linear else lower:g}"
    advice = (f"lower the learning rate (--lr {lower})"
              + ("" if not linear or standardize else " and standardise the data "
                 "(--standardize)")
              + ("" if not suggest_no_preset else
                 ", or train with no --preset to let gmmn choose settings from the data"))
    return FitCheck(float(far), ratio, rise, tuple(problems), advice,
                    binding=iterations >= MIN_CHECKED_ITERATIONS)


def _loss_rise(losses: list[float]) -> float | None:
    """(mean of the last tenth) / (lowest mean of any tenth) - 1, for 20 or more losses."""
    vals = [v for v in losses if math.isfinite(v)]
    if len(vals) < 20:
        return None
    k = len(vals) // 10
    means = [sum(vals[i:i + k]) / k for i in range(0, len(vals) - k + 1, k)]
    best = min(means)
    if best <= 0:
        return None
    return sum(vals[-k:]) / k / best - 1.0
