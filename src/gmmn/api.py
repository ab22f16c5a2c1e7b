"""Python API: trained runs (:func:`load_run`) and a scikit-learn style :class:`GMMN`.

Both sit on the same runner and loop as ``gmmn train``; a saved :class:`GMMN` is an ordinary
run checkpoint, so ``load_run`` and ``gmmn sample`` read it too.
"""

from __future__ import annotations

import logging
import numbers
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

# As the CLI does, before torch loads OpenMP (which reads the variable once): idle OpenMP
# threads that spin made one GMMN().fit 1.5x slower on a 2-core machine (28.3 s against
# 18.2 s). It changes how idle threads wait, never a number; a value the user set wins, and
# after `import torch` it is too late (docs/training.md, "Python API", says what to do then).
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402 - after the wait policy, on purpose
import torch  # noqa: E402

from gmmn.config import TrainConfig, flag
from gmmn.data.splits import check_array, standardize
from gmmn.errors import CheckpointError, ConfigError, DataError
from gmmn.memory import check_fits
from gmmn.models import GenerativeModel
from gmmn.training.auto import MEDIAN_RATIOS, median_sigmas  # noqa: F401 - public names
from gmmn.training.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
)
from gmmn.training.run import build_run_model, resolve_device, run_training, to_data_units

log = logging.getLogger(__name__)


@dataclass
class Run:
    """A trained model rebuilt from its checkpoint alone (config and weights are stored)."""

    config: TrainConfig
    data: dict  # name, dim, image_shape, unit_interval, source, mean, std, fingerprint
    model: GenerativeModel
    done: bool
    stage: str | None = None  # where an unfinished run's checkpoint stands
    iteration: int = 0
    # Baselines: the training rows their chains start from (loaded on first use if None).
    chain_rows: torch.Tensor | None = None

    @property
    def splits_name(self) -> str:
        return self.data["name"]

    @property
    def dim(self) -> int:
        return int(self.data["dim"])

    @property
    def image_shape(self) -> tuple[int, int] | None:
        shape = self.data["image_shape"]
        return None if shape is None else tuple(shape)

    @property
    def prior_dim(self) -> int | None:
        """The prior's dimension; None for a baseline, which samples by its own chain."""
        return self.model.prior_dim

    @property
    def baseline(self) -> bool:
        return self.config.baseline is not None

    @property
    def chain_settings(self) -> dict | None:
        """How a baseline draws its samples (the evaluation report records it); else None."""
        if not self.baseline:
            return None
        return {k: getattr(self.config, k) for k in CHAIN_FIELDS}

    def with_chain(self, **settings) -> Run:
        """This run with other chain settings (``chains``, ``burn_in``, ``thin``,
        ``chain_noise``, ``chain_noise_space``; None keeps the stored one). Baselines only."""
        given = {k: v for k, v in settings.items() if v is not None}
        if not given:
            return self
        if not self.baseline:
            flags = ", ".join(flag(k) for k in given)
            raise ConfigError(f"{flags} set a baseline's Markov chain, but this run "
                              f"({self.config.preset}) samples from its prior; drop them")
        unknown = set(given) - set(CHAIN_FIELDS)
        if unknown:
            raise ConfigError(f"unknown chain settings {sorted(unknown)}; use {CHAIN_FIELDS}")
        return replace(self, config=replace(self.config, **given))

    def with_data_dir(self, data_dir: str | os.PathLike) -> Run:
        """This run, reading its dataset from ``data_dir`` (where a baseline's chains find
        their starting rows; the rows are still checked against the run's fingerprint)."""
        if not self.baseline:
            raise ConfigError(f"--data-dir is only read by baseline runs (DBN, stacked CAE, "
                              f"deep GSN), whose chains start at training rows; this run "
                              f"({self.config.preset}) samples from its prior: drop it")
        return replace(self, config=replace(self.config, data_dir=str(data_dir)))

    def use_training_rows(self, train: torch.Tensor) -> Run:
        """Start a baseline's chains from ``train`` (the run's training split, already
        loaded), after checking that it is the data the run was trained on."""
        if self.baseline:
            self.chain_rows = _checked_rows(train, self.data)
        return self

    def _starts(self) -> torch.Tensor:
        if self.chain_rows is None:
            from gmmn.training.run import load_splits

            self.chain_rows = _checked_rows(load_splits(self.config).train, self.data)
        return self.chain_rows

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def decode_prior(self, z: torch.Tensor) -> torch.Tensor:
        """Prior points (k, prior_dim) -> samples (k, D) in data space (e.g. interpolations)."""
        if self.baseline:
            raise DataError(f"the {self.config.baseline} baseline has no prior to decode; it "
                            f"samples by its own Markov chain (Run.sample)")
        if z.ndim != 2 or z.shape[1] != self.prior_dim:
            raise DataError(f"prior points must have shape (k, {self.prior_dim}), "
                            f"got {tuple(z.shape)}")
        return to_data_units(self.model.decode_prior(z.to(self.device, torch.float32)),
                             self.data)

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None) -> torch.Tensor:
        """``n`` samples (n, D) in data space; the same seed gives the same samples.

        A baseline runs its own chain from ``chains`` training rows picked by the seed, with
        the run's burn-in, thinning (and CAE noise) settings (:meth:`with_chain`)."""
        gen = _sample_generator(n, seed)
        # The samples, a copy and the widest layer's activations, as `gmmn sample` checks.
        hidden = self.config.baseline_hidden if self.baseline else self.config.hidden
        check_fits(4.0 * n * (2 * self.dim + max((*hidden, self.dim))), device=self.device,
                   what=f"{n} samples of {self.dim} dimensions",
                   fix="draw fewer samples per call", error=DataError)
        if self.baseline:
            from gmmn.baselines.model import chain_starts

            if gen is None:  # no seed: a fresh stream, as the prior's sampling does
                gen = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
            starts = chain_starts(self._starts(), self.config.chains, gen).to(self.device)
            return self.model.chain_sample(n, starts=starts, cfg=self.config, generator=gen)
        return to_data_units(self.model.sample(n, generator=gen), self.data)


# The config fields that say how a baseline's chain draws samples (flags of gmmn sample and
# gmmn evaluate too).
CHAIN_FIELDS = ("chains", "burn_in", "thin", "chain_noise", "chain_noise_space")


def _checked_rows(train: torch.Tensor, info: dict) -> torch.Tensor:
    from gmmn.training.run import fingerprint

    stored = info.get("fingerprint")
    if stored is not None and fingerprint(train)["sha256"] != stored["sha256"]:
        raise DataError(f"a baseline's chains start from its training rows, but the data given "
                        f"is not the {info.get('name')} training split the run was trained on; "
                        f"pass that dataset (and --data-dir)")
    return train.to(torch.float32)


# torch.Generator.manual_seed takes the seeds 0 <= seed < 2**64 (negative ones wrap around).
SAMPLE_SEEDS = 2**64


def _sample_generator(n: int, seed: int | None) -> torch.Generator | None:
    """The generator of a ``sample(n, seed=...)`` call, after checking ``n`` and ``seed``
    (whole numbers; numpy integers too)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise DataError(f"the number of samples must be a whole number, got {n!r}")
    if n <= 0:
        raise DataError(f"the number of samples must be positive, got {n}")
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
            or not 0 <= seed < SAMPLE_SEEDS:
        raise ConfigError(f"seed must be a whole number from 0 to 2**64 - 1 (or None), got "
                          f"{seed!r}")
    return torch.Generator().manual_seed(int(seed))


@dataclass
class Reconstructions:
    """A GMMN+AE run's autoencoder as a sample source: ``sample(n, seed=s)`` returns the
    reconstructions (decode of encode, no dropout) of ``n`` random rows of ``images``.

    Scored like samples (``gmmn evaluate --reconstructions``), they show the ceiling of the
    GMMN+AE: what its samples would score if the code-space GMMN matched the distribution of
    codes exactly. A gap between the samples and this ceiling is the GMMN's; a gap between the
    ceiling and real data is the autoencoder's.
    """

    run: Run
    images: torch.Tensor  # (N, D) in data units, e.g. the training split

    def __post_init__(self) -> None:
        if self.run.model.autoencoder is None:
            raise DataError(f"run of preset {self.run.config.preset!r} has no autoencoder, so "
                            "it has no reconstructions; pass a GMMN+AE run")
        if self.images.ndim != 2 or self.images.shape[1] != self.run.dim:
            raise DataError(f"images must have shape (N, {self.run.dim}), "
                            f"got {tuple(self.images.shape)}")

    @property
    def config(self) -> TrainConfig:
        return self.run.config

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None) -> torch.Tensor:
        gen = _sample_generator(n, seed)
        total = self.images.shape[0]
        rows = (torch.randperm(total, generator=gen)[:n] if n <= total
                else torch.randint(total, (n,), generator=gen))  # more than there are
        info = self.run.data
        x = standardize(self.images[rows].to(self.run.device, torch.float32),
                        info.get("mean"), info.get("std"))
        ae = self.run.model.autoencoder
        return to_data_units(ae.decode(ae.encode(x)), info)


def load_run(run_dir: str | os.PathLike, *, device: str | torch.device = "cpu") -> Run:
    """The model of a run directory (or a checkpoint file), for sampling and evaluation.

    ``device``: "cpu", "cuda", "cuda:N", "auto" or a torch.device; an unknown name or a CUDA
    device on a machine without one is a :class:`ConfigError`, as for ``gmmn train``."""
    if not isinstance(device, torch.device):
        device = resolve_device(str(device))
    path = Path(run_dir)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    return _run_from_state(load_checkpoint(path), device=device, source=str(path))


def _run_from_state(state: dict, *, device, source: str = "checkpoint") -> Run:
    cfg = checkpoint_config(state, source)  # checks every entry read below
    info = state["data"]
    model = build_run_model(cfg, info["dim"], unit_interval=info["unit_interval"])
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError, KeyError) as exc:
        raise CheckpointError(f"the weights in {source} do not fit the model its config "
                              f"describes (a wrong tensor shape or name); the checkpoint is "
                              f"damaged") from exc
    done = state["done"]
    if not done:
        log.warning("%s is a checkpoint of an unfinished run (stage %s)", source,
                    state.get("stage"))
    return Run(cfg, info, model.to(device).eval(), done, stage=state.get("stage"),
               iteration=state["iteration"])


def array_splits(x, *, name: str = "array", image_shape: tuple[int, int] | None = None):
    """Wrap an (N, D) array as :class:`gmmn.data.Splits` (all of it for training)."""
    from gmmn.data import Splits

    if torch.is_tensor(x):
        if x.device.type == "meta":
            raise DataError("training data is a meta tensor (a shape without values); pass "
                            "a tensor or array that holds the data")
        x = x.detach().cpu()
        a = (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    else:
        try:
            a = np.asarray(x)
        except (ValueError, TypeError) as exc:  # ragged rows
            raise DataError(f"training data must be an (N, D) array of numbers; numpy cannot "
                            f"read this {type(x).__name__} as one ({exc})") from exc
    if a.ndim != 2 or len(a) < 2:
        raise DataError(f"training data must be an (N, D) array with N >= 2, got shape "
                        f"{tuple(a.shape)}")
    # The loaders' check: numbers only, no complex values, finite in float32.
    t = torch.from_numpy(check_array(a, what="training data", source="array"))
    unit = bool(t.min() >= 0 and t.max() <= 1)
    return Splits(name=name, train=t, validation=t[:0], test=t[:0], train_labels=None,
                  validation_labels=None, test_labels=None, image_shape=image_shape,
                  source="array", unit_interval=unit)


class GMMN:
    """Generative moment matching network, scikit-learn style.

    >>> model = GMMN().fit(X)                     # X: (N, D) array, any units
    >>> samples = model.sample(100)               # (100, D) numpy array, X's units

    Hyper-parameters start from ``preset``: by default ``tabular-gmmn`` (a data-space GMMN
    whose data-dependent settings are chosen from ``X``: standardisation when values lie
    outside [0, 1], kernel scales from the median distance, the learning rate by the output,
    the data batch by the size; docs/data.md, "Your own tables"), or ``digits-gmmn-ae`` with
    ``autoencoder=True``. Any :class:`gmmn.config.TrainConfig` field can be overridden by
    keyword (``standardize=True``, ``lr=0.05``, ...). ``sigmas="median"`` (the default for
    data-space models) scales the kernel to the training rows as the model sees them (after
    standardisation). For data outside [0, 1] the learning rate defaults to 0.1 instead of the
    presets' 2. After the last iteration the samples are checked against the data
    (:func:`gmmn.training.auto.check_fit`); a run that diverged or collapsed raises
    :class:`gmmn.errors.FitCheckFailed` naming the fix (the fitted model is kept).
    """

    def __init__(self, *, autoencoder: bool = False, preset: str | None = None,
                 iterations: int | None = None, sigmas="median", seed: int = 0,
                 device: str = "cpu", **overrides) -> None:
        self.autoencoder = autoencoder
        self.preset = preset
        self.iterations = iterations
        self.sigmas = sigmas
        self.seed = seed
        self.device = device
        self.overrides = overrides

    def get_params(self, deep: bool = True) -> dict:
        return {"autoencoder": self.autoencoder, "preset": self.preset,
                "iterations": self.iterations, "sigmas": self.sigmas, "seed": self.seed,
                "device": self.device, **self.overrides}

    def _config(self, splits) -> TrainConfig:
        from gmmn.presets import TABULAR_PRESET, get_preset

        name = self.preset or ("digits-gmmn-ae" if self.autoencoder else TABULAR_PRESET)
        base = get_preset(name)
        if base.baseline is not None or self.overrides.get("baseline") is not None:
            raise ConfigError(f"GMMN fits a GMMN or GMMN+AE, not the {name} baseline; train "
                              f"baselines with `gmmn train --preset {name}`")
        fields = dict(self.overrides, autoencoder=self.autoencoder, seed=self.seed,
                      device=self.device, dataset=splits.name, checkpoint_every=0)
        if self.iterations is not None:
            fields["iterations"] = self.iterations
        if ("lr" not in self.overrides and not self.autoencoder and not base.gan
                and not splits.unit_interval):
            # A linear output: the presets' lr 2 overshoots (gmmn.training.auto picks 0.1).
            # Other presets keep their own lr (a GAN's 2e-4; tabular-gmmn's is None already).
            fields["lr"] = None
        n = len(splits.train)
        # A preset's batch on a smaller X: all of X, said in the config (the batch sampler
        # would cap it too, but with a warning meant for a flag the user chose).
        for batch in ("data_batch_size", "ae_batch_size"):
            if batch not in self.overrides and (getattr(base, batch) or 0) > n:
                fields[batch] = n
        if isinstance(self.sigmas, str) and self.sigmas == "median":
            if not self.autoencoder:
                fields["sigmas"] = None  # chosen from the (standardised) rows
        elif self.sigmas is not None:
            fields["sigmas"] = _sigmas_argument(self.sigmas)
        try:
            return replace(base, **fields)
        except TypeError as exc:  # a keyword that is no TrainConfig field
            unknown = sorted(set(fields) - set(base.to_dict()))
            raise ConfigError(f"GMMN got unknown keyword(s) {unknown}; use the fields of "
                              f"gmmn.config.TrainConfig") from exc

    def fit(self, X, *, image_shape: tuple[int, int] | None = None, callback=None,
            progress: bool | str = True) -> GMMN:
        """Train on the rows of ``X`` (N, D); returns ``self``.

        ``progress``: True shows a bar per stage on a terminal and a line every few hundred
        iterations elsewhere (a notebook, a log file); "stages" only each stage's start and
        end; False nothing. ``callback(step)`` gets every
        :class:`gmmn.training.loop.StepInfo` too.
        """
        from gmmn.progress import TrainingProgress

        if (torch.is_tensor(X) and X.layout != torch.strided) or (
                hasattr(X, "toarray") and hasattr(X, "nnz")):  # torch's or scipy's sparse
            raise DataError(f"training data is a sparse {type(X).__name__}; the kernel reads "
                            f"every value, so pass a dense array (X.toarray() for scipy, "
                            f"X.to_dense() for torch)")
        splits = array_splits(X, image_shape=image_shape)
        cfg = self._config(splits)
        mode = {True: "auto", False: None}.get(progress, progress)
        bar = TrainingProgress(mode=mode) if mode else None

        def on_step(step) -> None:
            if bar is not None:
                bar.update(step)
            if callback is not None:
                callback(step)
        try:
            result = run_training(cfg, splits=splits, callback=on_step)
        finally:
            if bar is not None:
                bar.close()
        self._state = result.checkpoint
        self.run_ = _run_from_state(self._state, device=self.device)
        self.fit_check_ = result.fit_check
        if result.fit_check is not None and result.fit_check.failed:
            raise result.fit_check.error("the fitted model is kept: sample or save it to look")
        return self

    def _fitted(self) -> Run:
        if not hasattr(self, "run_"):
            raise DataError("this GMMN is not fitted yet; call fit(X) first")
        return self.run_

    def sample(self, n: int, *, seed: int | None = None) -> np.ndarray:
        """``n`` samples as an (n, D) float32 numpy array, in the units of the data given to
        :meth:`fit` (a standardised fit maps its samples back)."""
        return self._fitted().sample(n, seed=seed).cpu().numpy()

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model as a run checkpoint (``load_run`` and ``gmmn sample`` read
        it too)."""
        self._fitted()
        save_checkpoint(self._state, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> GMMN:
        state = load_checkpoint(path)
        run = _run_from_state(state, device=device, source=str(path))
        cfg = run.config
        model = cls(autoencoder=cfg.autoencoder, preset=cfg.preset, iterations=cfg.iterations,
                    sigmas=cfg.sigmas, seed=cfg.seed, device=device)
        model._state, model.run_ = state, run
        return model


def _sigmas_argument(sigmas) -> tuple[float, ...]:
    """``sigmas=`` of :class:`GMMN` as a tuple of floats, or one ConfigError naming it."""
    values = (sigmas,) if isinstance(sigmas, (int, float)) else sigmas
    try:
        if isinstance(values, str):
            raise TypeError
        return tuple(float(s) for s in values)
    except (TypeError, ValueError):
        raise ConfigError(f"sigmas must be 'median', None or a sequence of positive numbers, "
                          f"got {sigmas!r}") from None
