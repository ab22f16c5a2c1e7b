"""Python API: trained runs (:func:`load_run`) and a scikit-learn style :class:`GMMN`.

Both sit on the same runner and loop as ``gmmn train``; a saved :class:`GMMN` is an ordinary
run checkpoint, so ``load_run`` and ``gmmn sample`` read it too.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

# As the CLI does, before torch loads OpenMP (which reads the variable once): idle OpenMP
# threads that spin made one GMMN().fit 1.5x slower on a 2-core machine (28.3 s against
# 18.2 s). It changes how idle threads wait, never a number; a value the user set wins, and
# after `import torch` it is too late (docs/training.md, "Python API", says what to do then).
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402 - after the wait policy, on purpose
import torch  # noqa: E402

from gmmn.config import TrainConfig
from gmmn.data.splits import check_array
from gmmn.errors import CheckpointError, ConfigError, DataError
from gmmn.families import family_of
from gmmn.families.gmmn_ae import Reconstructions as _Reconstructions
from gmmn.sampling import Sampler
from gmmn.training.auto import MEDIAN_RATIOS, median_sigmas  # noqa: F401 - public names
from gmmn.training.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
)
from gmmn.training.run import load_splits, resolve_device, run_training

log = logging.getLogger(__name__)


@dataclass
class Run:
    """A trained model rebuilt from its checkpoint alone (config and weights are stored).

    Samples come from :meth:`sampler` (a :class:`gmmn.sampling.Sampler`): the prior of a
    GMMN, GMMN+AE or GAN, or a baseline's own Markov chain with the run's stored chain
    settings unless others are given."""

    config: TrainConfig
    data: dict  # name, dim, image_shape, unit_interval, source, mean, std, fingerprint
    model: torch.nn.Module
    done: bool
    stage: str | None = None  # where an unfinished run's checkpoint stands
    iteration: int = 0
    _default: Sampler | None = field(default=None, repr=False)

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
        return self.sampler().prior_dim

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def status(self) -> dict:
        """Whether training finished, and where an unfinished run's checkpoint stands."""
        return {"done": bool(self.done), "stage": self.stage, "iteration": int(self.iteration)}

    def sampler(self, *, rows: torch.Tensor | None = None, data_dir: str | None = None,
                **chain) -> Sampler:
        """A sampler of this run. A baseline's chains start at training rows: ``rows`` (the
        run's training split, already loaded) or the split read from the run's dataset (in
        ``data_dir`` if given), checked against the run's fingerprint; ``chain`` settings
        (``chains``, ``burn_in``, ``thin``, ``chain_noise``, ``chain_noise_space``; None
        keeps the stored one) change how it runs. A prior sampler refuses both."""
        if not family_of(self.config).samples_by_chain:
            rows = None  # a prior needs no training rows
        plain = rows is None and data_dir is None and not any(
            v is not None for v in chain.values())
        if plain and self._default is not None:
            return self._default
        cfg = self.config
        if data_dir is not None:
            cfg = cfg.override(data_dir=str(data_dir))
        source = rows if rows is not None else (lambda: load_splits(cfg).train)
        sampler = family_of(cfg).sampler(self.model, cfg, self.data, rows=source)
        if data_dir is not None and sampler.settings is None:
            raise ConfigError(f"--data-dir is only read by baseline runs (DBN, stacked CAE, "
                              f"deep GSN), whose chains start at training rows; this run "
                              f"({cfg.preset}) samples from its prior: drop it")
        unknown = set(chain) - set(cfg.sampling.names())
        if unknown:
            raise ConfigError(f"unknown chain settings {sorted(unknown)}; use "
                              f"{cfg.sampling.names()}")
        sampler = sampler.with_settings(**chain)
        if plain:
            self._default = sampler
        return sampler

    @classmethod
    def of_sampler(cls, sampler: Sampler, config: TrainConfig, data: dict) -> Run:
        """A run whose samples come from ``sampler`` (no model): a stand-in that lets the
        command line's evaluation score samples made elsewhere, as tests do."""
        return cls(config, data, None, True, _default=sampler)

    def decode_prior(self, z: torch.Tensor) -> torch.Tensor:
        """Prior points (k, prior_dim) -> samples (k, D) in data space (e.g. interpolations)."""
        return self.sampler().decode_prior(z)

    def sample(self, n: int, *, seed: int | None = None, qmc: bool = False,
               label=None) -> torch.Tensor:
        """``n`` samples (n, D) in data space; the same seed gives the same samples.

        ``label`` (a conditional run, families cgmmn and cgmmn-ae): samples of that class,
        or one label per sample; without it a conditional run draws classes as often as its
        training data has them (docs/conditional.md).

        ``qmc=True`` (GMMN, GMMN+AE, GAN): randomised quasi-Monte Carlo, the prior points
        being one scrambled Sobol' sequence per call, randomised by ``seed`` and mapped
        through the prior's inverse CDF (:mod:`gmmn.qmc`; ``n`` a power of two). Estimates
        from such samples have a far smaller variance (Hofert, Prasad & Zhu 2021).

        A baseline runs its own chain from ``chains`` training rows picked by the seed, with
        the run's burn-in, thinning (and CAE noise) settings (:meth:`sampler` for others);
        it refuses ``qmc=True``. A run trained with ``--transform pobs`` samples on the
        copula scale, (0, 1)^D (``data["transform"]``)."""
        if label is not None:
            return self.conditional_sampler().sample(n, seed=seed, qmc=qmc, label=label)
        if qmc:  # passed only when asked, so a Sampler without the keyword still serves
            return self.sampler().sample(n, seed=seed, qmc=True)
        return self.sampler().sample(n, seed=seed)

    def conditional_sampler(self) -> Sampler:
        """The sampler of a conditional run (it has ``classes``), or one ConfigError."""
        sampler = self.sampler()
        if getattr(sampler, "classes", None) is None:
            raise ConfigError(f"a label picks the class of a conditional run (families cgmmn, "
                              f"cgmmn-ae), but this run ({self.config.preset}, family "
                              f"{self.config.family}) is unconditional: drop the label")
        return sampler

    def reconstructions(self, images: torch.Tensor) -> _Reconstructions:
        """A GMMN+AE run's autoencoder as a sampler of reconstructions of ``images``."""
        return _Reconstructions(self.model, self.data, images, preset=self.config.preset)


def Reconstructions(run: Run, images: torch.Tensor) -> _Reconstructions:  # noqa: N802
    """The reconstructions sampler of a GMMN+AE ``run`` (:meth:`Run.reconstructions`)."""
    return run.reconstructions(images)


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
    model = family_of(cfg).build_model(cfg, info["dim"], unit_interval=info["unit_interval"])
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


# GMMN.fit without validation rows for a config that selects on them: the share of X held
# out (scikit-learn's MLP early stopping holds out 0.1; a table of a hundred rows needs more
# than ten to score a generator on), and the fewest rows for which it selects at all.
VALIDATION_FRACTION = 0.2
MIN_SELECTION_ROWS = 10


def _with_validation(splits, validation, *, seed: int):
    """``splits`` with validation rows: ``validation`` (an array as wide as the training
    rows), else a seeded :data:`VALIDATION_FRACTION` of the training rows, else (fewer than
    :data:`MIN_SELECTION_ROWS` rows) none."""
    import dataclasses

    from gmmn.data.splits import random_split

    train = splits.train
    if validation is not None:
        rows = array_splits(validation, name="validation").train
        if rows.shape[1] != train.shape[1]:
            raise DataError(f"validation rows have {rows.shape[1]} columns but the training "
                            f"rows have {train.shape[1]}; pass rows of the same features")
        return dataclasses.replace(splits, validation=rows.to(train.dtype))
    if len(train) < MIN_SELECTION_ROWS:
        log.info("%d rows are too few to hold some out for selecting the generator: training "
                 "on all of them, without selection", len(train))
        return splits
    keep, held = random_split(len(train), (1 - VALIDATION_FRACTION, VALIDATION_FRACTION),
                              seed=seed)
    log.info("holding out %d of the %d rows to select the generator on (pass validation= "
             "to choose them, or config_overrides={'select_every': 0} to train on all)",
             len(held), len(train))
    keep, held = torch.from_numpy(keep), torch.from_numpy(held)
    return dataclasses.replace(splits, train=train[keep], validation=train[held])


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


# scikit-learn is imported here, beside the estimator it serves, rather than in the block above.
import numbers  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from typing import Any  # noqa: E402

from sklearn.base import BaseEstimator  # noqa: E402
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError  # noqa: E402


class GMMN(BaseEstimator):
    """Generative moment matching network as a scikit-learn estimator.

    >>> model = GMMN().fit(X)                     # X: (N, D) array, any units
    >>> samples = model.sample(100)               # (100, D) numpy array, X's units

    Hyper-parameters start from ``preset``: by default ``tabular-gmmn`` (a data-space GMMN
    whose data-dependent settings are chosen from ``X``: standardisation when values lie
    outside [0, 1], kernel scales from the median distance, the learning rate by the output,
    the data batch by the size; docs/data.md, "Your own tables"), or ``digits-gmmn-ae`` with
    ``autoencoder=True``. Every other parameter left at None keeps the preset's value; one
    that is set replaces it. As scikit-learn asks, ``__init__`` only stores the parameters
    (``get_params``, ``set_params`` and ``sklearn.base.clone`` rely on that); they are
    checked when :meth:`fit` turns them into a :class:`gmmn.config.TrainConfig`, so a bad
    value is a :class:`gmmn.errors.ConfigError` from ``fit``, not from the constructor.

    Parameters (all keyword-only):

    - ``preset``: the preset to start from (``gmmn train --help`` lists them); not a
      baseline's (DBN, stacked CAE, deep GSN), which ``gmmn train`` trains.
    - ``autoencoder``: True for a GMMN+AE (the GMMN trains on an autoencoder's codes).
    - ``iterations``, ``lr``, ``momentum``, ``hidden``, ``prior_dim``, ``sigma_weights``,
      ``data_batch_size``, ``sample_batch_size``: the GMMN's config fields of those names.
      For data outside [0, 1] (a linear output) ``lr`` defaults to 0.1 instead of the
      data-space presets' 2, which overshoots there; a preset's batch larger than ``X``
      becomes all of ``X``.
    - ``standardize``: z-score each feature (samples are mapped back to ``X``'s units).
      ``standardize``, ``lr``, ``prior_dim`` and ``data_batch_size`` also take ``"auto"``:
      chosen from the data (:mod:`gmmn.training.auto`), whatever the preset says.
    - ``sigmas``: the kernel scales; ``"median"`` (the default) chooses them from the
      training rows as the model sees them (after standardisation) for a data-space model,
      and keeps the preset's for a GMMN+AE (its codes do not exist before training); None
      keeps the preset's; else a number or a sequence of positive numbers.
    - ``ae_hidden``, ``ae_dropout``, ``pretrain_iterations``, ``finetune_iterations``: the
      autoencoder's layer sizes (the last one is the code), dropout rates and stage lengths.
    - ``config_overrides``: any other TrainConfig field by name (``{"late_from": 2000}``),
      for the settings without a parameter of their own; a field that has one is refused.
    - ``device``: "cpu", "cuda", "cuda:N" or "auto".
    - ``random_state``: the seed of the weights, prior noise, dropout and data order, a whole
      number from 0 to 2**32 - 1; the same value gives the same model on the same data
      (0, the default, is ``gmmn train``'s seed). None draws one from numpy's global RNG at
      each fit (``np.random.seed`` makes that repeatable) and records it in
      ``config_.seed``. A ``numpy.random.RandomState`` or ``Generator`` is refused with a
      ConfigError: training seeds torch with one number, stored in the checkpoint, so pass
      one drawn from yours (``random_state=int(rng.integers(2**32))``).
    - ``progress``: True shows a bar per stage on a terminal and a line every few hundred
      iterations elsewhere (a notebook, a log file); "stages" only each stage's start and
      end; False nothing. A parameter because scikit-learn's tools (pipelines, searches,
      ``clone``) call ``fit(X)`` with no other argument; ``fit(progress=...)`` still
      overrides it for one call.

    Fitted attributes: ``run_`` (the :class:`Run`: config, data statistics, model),
    ``config_`` (the TrainConfig trained, with the values chosen from the data filled in),
    ``n_features_in_``, ``chosen_`` (the settings chosen from the data, by field; None after
    :meth:`load`, as the checkpoint stores their values but not which were chosen) and
    ``fit_check_``. After the last iteration the samples are checked against the data
    (:func:`gmmn.training.auto.check_fit`); a run of 500 or more iterations that diverged or
    collapsed raises :class:`gmmn.errors.FitCheckFailed` naming the fix (the fitted model is
    kept: sample or save it to look).
    """

    def __init__(self, *, preset: str | None = None, autoencoder: bool = False,
                 iterations: int | None = None, lr: float | str | None = None,
                 momentum: float | None = None, hidden: Sequence[int] | None = None,
                 prior_dim: int | str | None = None,
                 sigmas: str | float | Sequence[float] | None = "median",
                 sigma_weights: Sequence[float] | None = None,
                 standardize: bool | str | None = None,
                 data_batch_size: int | str | None = None,
                 sample_batch_size: int | None = None,
                 ae_hidden: Sequence[int] | None = None,
                 ae_dropout: Sequence[float] | None = None,
                 pretrain_iterations: int | None = None,
                 finetune_iterations: int | None = None,
                 config_overrides: Mapping[str, Any] | None = None,
                 device: str = "cpu", random_state: int | None = 0,
                 progress: bool | str = True) -> None:
        # Stored as given, nothing else (scikit-learn's rule: clone and set_params rebuild
        # an estimator from these attributes); _config reads and checks them at fit.
        self.preset = preset
        self.autoencoder = autoencoder
        self.iterations = iterations
        self.lr = lr
        self.momentum = momentum
        self.hidden = hidden
        self.prior_dim = prior_dim
        self.sigmas = sigmas
        self.sigma_weights = sigma_weights
        self.standardize = standardize
        self.data_batch_size = data_batch_size
        self.sample_batch_size = sample_batch_size
        self.ae_hidden = ae_hidden
        self.ae_dropout = ae_dropout
        self.pretrain_iterations = pretrain_iterations
        self.finetune_iterations = finetune_iterations
        self.config_overrides = config_overrides
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def _config(self, splits) -> TrainConfig:
        """The config a fit on ``splits`` trains: the preset with the parameters the user set.

        The one place where parameters become config fields. It collects a dict of flat
        TrainConfig field names holding only what was set (``random_state`` -> ``seed``) and
        what fit itself decides (the data, no periodic checkpoints, the data-dependent
        defaults below), then applies it to the preset in one step.
        """
        from gmmn.families import get_family
        from gmmn.presets import TABULAR_PRESET, get_preset

        name = self.preset or ("digits-gmmn-ae" if self.autoencoder else TABULAR_PRESET)
        base = get_preset(name)
        extra = _extra_fields(self.config_overrides)
        if family_of(base).samples_by_chain:
            raise ConfigError(f"GMMN fits a GMMN or GMMN+AE, not the {name} baseline; train "
                              f"baselines with `gmmn train --preset {name}`")
        family = _family(base, _plain(self.autoencoder))
        overrides = dict(extra, seed=_seed(self.random_state), device=self.device,
                         dataset=splits.name, checkpoint_every=0)
        for param, key in _PARAM_FIELDS.items():
            value = getattr(self, param)
            if value is not None:
                overrides[key] = _field_value(param, value)
        if self.lr is None and family == "gmmn" and not splits.unit_interval:
            # A linear output: the presets' lr 2 overshoots (gmmn.training.auto picks 0.1).
            # Other presets keep their own lr (a GAN's 2e-4; tabular-gmmn's is None already).
            overrides["lr"] = None
        n = len(splits.train)
        # A preset's batch on a smaller X: all of X, said in the config (the batch sampler
        # would cap it too, but with a warning meant for a flag the user chose).
        for batch in ("data_batch_size", "ae_batch_size"):
            if batch not in overrides and (base.get(batch) or 0) > n:
                overrides[batch] = n
        has_kernel = "sigmas" in get_family(family).settings.names()  # not a GAN's
        if isinstance(self.sigmas, str) and self.sigmas == "median":
            if not self.autoencoder and has_kernel:
                overrides["sigmas"] = None  # chosen from the (standardised) rows
        elif self.sigmas is not None:
            overrides["sigmas"] = _sigmas_argument(self.sigmas)
        # The one step that applies the fields to the preset (as a run of its family).
        return _apply(base, family, overrides)

    def fit(self, X, y=None, *, validation=None, image_shape: tuple[int, int] | None = None,
            callback=None, progress: bool | str | None = None) -> GMMN:
        """Train on the rows of ``X`` (N, D); returns ``self``.

        ``y`` is ignored: the model is unsupervised, and scikit-learn passes one anyway.
        ``validation``: held-out rows (M, D) on which a config that selects its generator
        (``config_overrides={"select_every": N}``; docs/training.md) scores it. Without them
        such a fit holds out a seeded fifth of ``X`` (:data:`VALIDATION_FRACTION`) and trains on
        the rest, as scikit-learn's early stopping does; with fewer than
        :data:`MIN_SELECTION_ROWS` rows it trains on all of them and selects nothing.
        ``image_shape``: (height, width) when the rows are images. ``progress``: as the
        parameter of that name, for this call only (None: the parameter's).
        ``callback(step)`` gets every :class:`gmmn.training.loop.StepInfo` too.
        """
        from gmmn.progress import TrainingProgress

        if (torch.is_tensor(X) and X.layout != torch.strided) or (
                hasattr(X, "toarray") and hasattr(X, "nnz")):  # torch's or scipy's sparse
            raise DataError(f"training data is a sparse {type(X).__name__}; the kernel reads "
                            f"every value, so pass a dense array (X.toarray() for scipy, "
                            f"X.to_dense() for torch)")
        splits = array_splits(X, image_shape=image_shape)
        cfg = self._config(splits)
        if getattr(cfg.model, "select_every", 0) or validation is not None:
            splits = _with_validation(splits, validation, seed=cfg.seed)
            cfg = self._config(splits)  # its data batch is the rows it trains on
            if not len(splits.validation):
                cfg = cfg.override(select_every=0)
        progress = self.progress if progress is None else progress
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
        run = _run_from_state(result.checkpoint, device=resolve_device(self.device))
        self._set_fitted(result.checkpoint, run, chosen=dict(result.chosen),
                         fit_check=result.fit_check)
        if result.fit_check is not None and result.fit_check.failed:
            raise result.fit_check.error("the fitted model is kept: sample or save it to look")
        return self

    def _set_fitted(self, state: dict, run: Run, *, chosen: dict | None, fit_check) -> None:
        """Every fitted attribute at once, so a model is wholly fitted or not at all."""
        self._state = state  # the checkpoint save() writes
        self.run_ = run
        self.config_ = run.config
        self.n_features_in_ = run.dim
        self.chosen_ = chosen
        self.fit_check_ = fit_check

    def __sklearn_is_fitted__(self) -> bool:
        # What check_is_fitted asks; _set_fitted sets run_ together with the others.
        return hasattr(self, "run_")

    def _fitted(self) -> Run:
        if not hasattr(self, "run_"):
            raise NotFittedError("this GMMN is not fitted yet; call fit(X) first")
        return self.run_

    def sample(self, n: int, *, seed: int | None = None, qmc: bool = False) -> np.ndarray:
        """``n`` samples as an (n, D) float32 numpy array, in the units of the data given to
        :meth:`fit` (a standardised fit maps its samples back). The same ``seed`` gives the
        same samples; None draws fresh ones. (``seed``, not ``random_state``: it is
        :meth:`Run.sample`'s and ``gmmn sample --seed``'s, and picks only the prior noise.)
        ``qmc=True``: randomised Sobol' prior points (:meth:`Run.sample`), for estimates of
        smaller variance; ``n`` should be a power of two."""
        return self._fitted().sample(n, seed=seed, qmc=qmc).cpu().numpy()

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model as a run checkpoint (``load_run`` and ``gmmn sample`` read
        it too)."""
        self._fitted()
        save_checkpoint(self._state, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> GMMN:
        """A fitted GMMN from a checkpoint (:meth:`save`'s, or a ``gmmn train`` run's).

        Its parameters are the stored config's values, with those chosen from the data
        filled in, so ``clone(model).fit(X)`` trains the same settings again. ``chosen_``
        and ``fit_check_`` are None: the checkpoint does not record them."""
        state = load_checkpoint(path)
        run = _run_from_state(state, device=resolve_device(str(device)), source=str(path))
        cfg = run.config
        params = {param: cfg.get(key) for param, key in _PARAM_FIELDS.items()}
        model = cls(preset=cfg.preset, autoencoder=cfg.family == "gmmn-ae",
                    sigmas=cfg.get("sigmas"), random_state=cfg.seed, device=str(device),
                    config_overrides=_other_settings(cfg) or None, **params)
        model._set_fitted(state, run, chosen=None, fit_check=None)
        return model


class NotFittedError(DataError, _SklearnNotFittedError):
    """A :class:`GMMN` used before :meth:`GMMN.fit` (or :meth:`GMMN.load`).

    Both scikit-learn's ``NotFittedError`` (what ``check_is_fitted`` raises and scikit-learn
    code catches) and gmmn's :class:`DataError` (what gmmn's callers and the CLI catch, as
    before this class existed)."""


# The parameters that are TrainConfig fields (of the same name today), applied when not None.
# The others: preset, autoencoder, sigmas ("median"), random_state (seed), device, progress and
# config_overrides have rules of their own in GMMN._config.
_PARAM_FIELDS = {name: name for name in (
    "iterations", "lr", "momentum", "hidden", "prior_dim", "sigma_weights", "standardize",
    "data_batch_size", "sample_batch_size", "ae_hidden", "ae_dropout", "pretrain_iterations",
    "finetune_iterations")}
# Parameters that take "auto": None in the config, chosen from the data (gmmn.config.AUTO_FIELDS).
_AUTO_PARAMS = ("lr", "prior_dim", "standardize", "data_batch_size")
_TUPLE_PARAMS = ("hidden", "sigma_weights", "ae_hidden", "ae_dropout")
# Config fields that config_overrides may not set, and why.
_SET_ELSEWHERE = {
    **{key: f"use GMMN({param}=...)" for param, key in _PARAM_FIELDS.items()},
    **{key: f"use GMMN({key}=...)" for key in ("preset", "autoencoder", "sigmas", "device")},
    "seed": "use GMMN(random_state=...)",
    "dataset": "fit(X) trains on X",
    "checkpoint_every": "fit writes no run folder; save() writes the model",
}


def _other_settings(cfg: TrainConfig) -> dict:
    """The settings of ``cfg`` without a parameter of their own that differ from its preset
    (as a run of its family): what ``config_overrides`` must hold for a clone to train them."""
    from dataclasses import fields

    from gmmn.families import get_family
    from gmmn.presets import PRESETS

    base = PRESETS.get(cfg.preset)
    if base is None:
        return {}
    defaults = {f.name: f.default for f in fields(get_family(cfg.family).settings)}
    old = {**defaults, **base.flat()}  # the preset's value where it has one
    return {k: _plain(v) for k, v in cfg.flat().items()
            if k not in _SET_ELSEWHERE and k != "family" and old.get(k) != v}


# TrainConfig's seed range (torch and numpy seeds are 32-bit unsigned there).
_SEEDS = 2**32


def _family(base: TrainConfig, autoencoder: bool) -> str:
    """The family a fit trains: a GMMN+AE with ``autoencoder``, else a data-space GMMN; a GAN
    preset stays a GAN (it has no autoencoder to add)."""
    if base.family == "gan":
        if autoencoder:
            raise ConfigError("a GAN preset cannot be combined with autoencoder=True: the GAN "
                              "baseline trains in data space; drop one of them")
        return "gan"
    return "gmmn-ae" if autoencoder else "gmmn"


def _apply(base: TrainConfig, family: str, overrides: dict) -> TrainConfig:
    """``base`` as a run of ``family`` with ``overrides`` (flat setting names) applied; the
    config checks the values. Unknown names are one ConfigError naming them all."""
    from gmmn.families import setting_classes, switch_family

    known = {n for cls in setting_classes().values() for n in cls.names()}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"GMMN got unknown config field(s) {unknown} in config_overrides; "
                          f"use the settings of gmmn.config.TrainConfig and its family")
    return switch_family(base, family, **overrides)


def _extra_fields(config_overrides) -> dict:
    """``config_overrides`` as a dict of config fields, refusing one that a parameter (or fit)
    sets: two places for one setting would leave it unclear which wins."""
    if config_overrides is None:
        return {}
    if not isinstance(config_overrides, Mapping) or not all(
            isinstance(k, str) for k in config_overrides):
        raise ConfigError(f"config_overrides must be a dict of TrainConfig field names to "
                          f"values, got {config_overrides!r}")
    taken = sorted(k for k in config_overrides if k in _SET_ELSEWHERE)
    if taken:
        raise ConfigError("config_overrides sets " + ", ".join(
            f"{k} ({_SET_ELSEWHERE[k]})" for k in taken))
    return {k: _plain(v) for k, v in config_overrides.items()}


def _field_value(param: str, value):
    """A parameter's value as its config field takes it: "auto" -> None (chosen from the
    data), sequences -> tuples, numpy numbers -> Python ones (a TrainConfig checks types
    strictly, and scikit-learn's searches hand out numpy values)."""
    if param in _AUTO_PARAMS and isinstance(value, str) and value == "auto":
        return None
    if param in _TUPLE_PARAMS:
        if isinstance(value, str):
            raise ConfigError(f"{param} must be a sequence of numbers, got {value!r}")
        return tuple(_plain(v) for v in value) if isinstance(value, Sequence | np.ndarray) \
            else (_plain(value),)
    return _plain(value)


def _plain(value):
    """numpy scalars as Python ones and lists or arrays as tuples; anything else unchanged."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, list | np.ndarray):
        return tuple(_plain(v) for v in value)
    return value


def _seed(random_state) -> int:
    """``random_state`` as the config's seed: an int checked here, so the error names the
    parameter (the config's would name ``--seed``), or one drawn for None."""
    if random_state is None:  # scikit-learn's meaning: fresh, from numpy's global RNG
        return int(np.random.randint(0, _SEEDS, dtype=np.int64))
    if isinstance(random_state, np.random.RandomState | np.random.Generator):
        raise ConfigError(f"random_state must be a whole number or None, not a numpy "
                          f"{type(random_state).__name__}: training seeds torch with one "
                          f"number, recorded in the checkpoint; pass one drawn from it, "
                          f"e.g. random_state=int(rng.integers(2**32))")
    if isinstance(random_state, bool | np.bool_) or not isinstance(
            random_state, numbers.Integral) or not 0 <= random_state < _SEEDS:
        raise ConfigError(f"random_state must be a whole number from 0 to 2**32 - 1, or None, "
                          f"got {random_state!r}")
    return int(random_state)


def _sigmas_argument(sigmas) -> tuple[float, ...]:
    """``sigmas=`` of :class:`GMMN` as a tuple of floats, or one ConfigError naming it."""
    values = (sigmas,) if isinstance(sigmas, numbers.Real) else sigmas
    try:
        if isinstance(values, str):
            raise TypeError
        return tuple(float(s) for s in values)
    except (TypeError, ValueError):
        raise ConfigError(f"sigmas must be 'median', None or a sequence of positive numbers, "
                          f"got {sigmas!r}") from None
