"""Training configuration: one frozen dataclass whose field names are also the CLI flags
(``--data-batch-size`` for ``data_batch_size``) and the keys of ``config.json`` and of the
checkpoint's stored config.

A config is never mutated: presets build one, the CLI derives another with
:func:`dataclasses.replace`, and :meth:`TrainConfig.__post_init__` validates every copy.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import types
import typing
from dataclasses import dataclass, fields

from gmmn.errors import ConfigError

log = logging.getLogger(__name__)
_WARNED: set[tuple[str | None, tuple[str, ...]]] = set()  # see TrainConfig.from_dict

DEVICES = ("auto", "cpu", "cuda")
OUTPUTS = ("auto", "sigmoid", "linear")
# Fields whose None means "chosen from the training data" (gmmn.training.auto.resolve).
AUTO_FIELDS = ("standardize", "sigmas", "lr", "data_batch_size", "prior_dim")
GAN_OPTIMIZERS = ("sgd", "adam")
BASELINES = ("dbn", "scae", "gsn")  # the paper's quoted rows, gmmn.baselines
GSN_COSTS = ("bce", "mse")
CHAIN_NOISE_SPACES = ("hidden", "input")


def _f(default, help: str):
    """A config field with its one line of ``gmmn train --help`` (the flag: :func:`flag`)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; see :mod:`gmmn.presets` for the reason behind each value."""

    preset: str = "custom"
    # --- data and run ---
    dataset: str = _f("digits",
                      "dataset name (digits, mnist, fashion-mnist, tfd) or a path to your data")
    data_dir: str | None = _f(None, "where dataset files are looked for / cached")
    # None (auto): z-score when any value lies outside [0, 1], as tables usually do
    standardize: bool | None = _f(False,
                                  "z-score each feature (the generator output becomes linear); "
                                  "tabular-gmmn leaves it unset: only when values lie outside "
                                  "[0, 1]")
    seed: int = _f(0, "seed of weights, prior noise, dropout and data order")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    checkpoint_every: int = _f(1000, "checkpoint every N iterations (0: only at stage ends)")
    log_every: int = _f(100, "a metrics.jsonl line every N iterations")
    sample_every: int = _f(5000,
                           "a sample grid every N iterations (image data; 0: only at the end)")
    # --- generator (data-space or code-space GMMN) ---
    # None (auto): twice the data's dimension, 10 to 100 (gmmn.training.auto)
    prior_dim: int | None = _f(10, "dimension of the uniform prior on [-1, 1]; 'none': twice "
                                   "the data's dimension, from 10 to 100")
    hidden: tuple[int, ...] = _f((64, 256, 256, 1024),
                                 "generator hidden layer sizes, comma-separated")
    # auto: sigmoid for [0, 1] data and codes, linear otherwise
    output: str = _f("auto", "generator output: auto, sigmoid or linear")
    # None: PyTorch's default initialisation
    init_std: float | None = _f(0.1,
                                "initial weights init_std * N(0, 1), biases 0 ('none': PyTorch "
                                "default)")
    # None (median): chosen from the training data, gmmn.training.auto
    sigmas: tuple[float, ...] | None = _f((1.0,),
                                          "kernel standard deviations, comma-separated, or "
                                          "mnist, tfd, mnist-code, tfd-code, or median (from "
                                          "the training data)")
    sigma_weights: tuple[float, ...] | None = _f(None,
                                                 "one weight per kernel scale (default all 1)")
    # --- GMMN optimisation ---
    iterations: int = _f(40000,
                         "GMMN iterations (GAN: iterations; dbn, scae: per layer; gsn: in all)")
    # None (auto): 2 for a sigmoid output, 0.1 for a linear one (gmmn.training.auto)
    lr: float | None = _f(2.0, "GMMN learning rate (also the GAN's and the baselines'); 'none': "
                               "by the generator's output")
    momentum: float = _f(0.9, "GMMN momentum (also the GAN's and the baselines')")
    late_from: int = _f(10000, "iteration from which lr * late_lr_factor and late_momentum apply")
    late_lr_factor: float = _f(0.1, "lr factor from late_from on")
    late_momentum: float = _f(0.99, "momentum from late_from on")
    sample_batch_size: int = _f(1000, "generated samples per GMMN step")
    # None (auto): all training rows, at most 1000 (gmmn.training.auto)
    data_batch_size: int | None = _f(1000,
                                     "data (or code) points per GMMN step (released code: 100); "
                                     "GAN and baselines: their minibatch; 'none': all training "
                                     "rows up to 1000")
    # --- autoencoder (GMMN+AE) ---
    autoencoder: bool = _f(False, "GMMN+AE: train an autoencoder and the GMMN on its codes")
    ae_hidden: tuple[int, ...] = _f((1024, 32),
                                    "encoder layer sizes after the input, comma-separated (last: "
                                    "code size)")
    ae_dropout: tuple[float, ...] = _f((0.2, 0.5),
                                       "dropout rate on each encoder layer's input, comma- "
                                       "separated")
    released_dropout: bool = _f(True,
                                "released-code dropout: masks not rescaled, weights / (1-p) on "
                                "copy")
    ae_lr: float = _f(0.1, "autoencoder learning rate (pretraining and fine-tuning)")
    ae_batch_size: int = _f(100, "autoencoder batch size")
    ae_clip: float = _f(10.0, "autoencoder gradient-norm clip")
    pretrain_iterations: int = _f(3000, "layer-wise pretraining iterations per layer (0: skip)")
    pretrain_momentum: float = _f(0.5, "pretraining momentum")
    finetune_iterations: int = _f(3000, "fine-tuning iterations (0: skip)")
    finetune_momentum: tuple[float, ...] = _f((0.0, 0.5, 0.9),
                                              "fine-tuning momenta, comma-separated")
    finetune_momentum_from: tuple[int, ...] = _f((1, 50, 200),
                                                 "iteration (from 1) where each fine-tuning "
                                                 "momentum starts")
    ae_eval_every: int = _f(100, "fine-tuning: training loss every N iterations, best kept")
    # --- GAN baseline (Goodfellow et al. 2014; see gmmn.training.gan) ---
    gan: bool = _f(False,
                   "GAN baseline: train the generator against a discriminator instead of the MMD")
    # sgd: released-form SGD; adam: Adam (gmmn.training.optim)
    gan_optimizer: str = _f("sgd",
                            "GAN: sgd (released-form SGD with momentum) or adam (momentum = beta1)")
    disc_hidden: tuple[int, ...] = _f((240, 240),
                                      "GAN discriminator hidden layer sizes (maxout units), comma- "
                                      "separated")
    disc_pieces: int = _f(5, "GAN discriminator: linear pieces per maxout unit")
    disc_dropout: tuple[float, ...] = _f((0.2, 0.5, 0.5),
                                         "GAN discriminator: dropout rate on each layer's input, "
                                         "comma-separated")
    gan_final_momentum: float = _f(0.7, "GAN: momentum rises linearly from --momentum to this")
    gan_momentum_ramp: int = _f(137500, "GAN: iterations over which the momentum rises")
    gan_lr_decay: float = _f(1.000004, "GAN: lr divided by this every iteration")
    gan_min_lr: float = _f(1e-6, "GAN: the decayed lr never falls below this")
    # one-sided: real images' target is 1 - this
    gan_label_smoothing: float = _f(0.0,
                                    "GAN: one-sided label smoothing, the discriminator's target "
                                    "for real images is 1 minus this (0: the GAN paper's loss)")
    gan_instance_noise: float = _f(0.0,
                                   "GAN: std of Gaussian noise added to the discriminator's "
                                   "real and generated inputs, falling linearly to 0 over "
                                   "the run (0: none)")
    # --- DBN, stacked CAE and deep GSN baselines (gmmn.baselines; docs/baselines.md). They
    # reuse iterations (per layer for the greedy dbn and scae), lr, momentum,
    # data_batch_size and, for the RBMs, init_std. ---
    # dbn, scae or gsn; None: GMMN, GMMN+AE or GAN
    baseline: str | None = _f(None,
                              "train a quoted row instead: dbn, scae (stacked CAE) or gsn (deep "
                              "GSN)")
    baseline_hidden: tuple[int, ...] = _f((1000, 1000),
                                          "baseline hidden layer sizes, comma-separated (dbn, "
                                          "scae: one per greedy stage)")
    cd_k: int = _f(1, "dbn: Gibbs steps per update of the negative phase (CD-k or PCD-k)")
    # persistent chains, one per row of a batch (SML; Tieleman 2008)
    pcd: bool = _f(True, "dbn: persistent chains (PCD / SML), one per batch row; --no-pcd: CD-k")
    contraction: float = _f(0.1, "scae: weight lambda of the contractive penalty ||dh/dx||_F^2")
    walkbacks: int = _f(4, "gsn: walkback steps per update, one reconstruction term each")
    gsn_cost: str = _f("bce", "gsn: reconstruction cost, bce or mse")
    gsn_input_noise: float = _f(0.4, "gsn: salt-and-pepper probability on the visible layer")
    gsn_hidden_noise: float = _f(2.0,
                                 "gsn: std of the Gaussian noise on hidden layers (not the first)")
    # 0: constant lr
    anneal_every: int = _f(0,
                           "baselines: multiply lr by --anneal-factor every N iterations (0: "
                           "never)")
    anneal_factor: float = _f(1.0, "baselines: lr factor applied every --anneal-every iterations")
    # How samples are drawn from a baseline's own Markov chain (also flags of gmmn sample and
    # gmmn evaluate); defaults: the deep GSN's released sampler.
    chains: int = _f(1, "baseline sampling: chains run side by side, each from a training row")
    burn_in: int = _f(0, "baseline sampling: transitions before the first kept state")
    thin: int = _f(1, "baseline sampling: keep every N-th state (1: consecutive states)")
    # stacked CAE: sigma of the chain's noise
    chain_noise: float = _f(1.0, "scae sampling: std of the chain's Gaussian noise (sigma)")
    chain_noise_space: str = _f("hidden",
                                "scae sampling: noise in hidden space (J J^T alpha, released code) "
                                "or input space (J eps)")

    def __post_init__(self) -> None:
        _check_types(self)
        _check_ranges(self)
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown --device {self.device!r}; choose auto, cpu or cuda")
        if self.output not in OUTPUTS:
            raise ConfigError(f"unknown --output {self.output!r}; choose one of {OUTPUTS}")
        if self.sigmas is None:
            if self.autoencoder:
                raise ConfigError("--sigmas median is chosen from data rows, but a GMMN+AE's "
                                  "kernel works on codes that do not exist before training; "
                                  "give its --sigmas explicitly")
            if self.sigma_weights is not None:
                raise ConfigError("--sigma-weights needs explicit --sigmas, one weight per "
                                  "value; with --sigmas median drop --sigma-weights")
        elif self.sigma_weights is not None and len(self.sigma_weights) != len(self.sigmas):
            raise ConfigError("--sigma-weights needs one weight per value of --sigmas")
        for name in ("sigmas", "ae_hidden", "disc_hidden"):
            if getattr(self, name) is not None and not getattr(self, name):
                raise ConfigError(f"{flag(name)} needs at least one value")
        if len(self.ae_dropout) != len(self.ae_hidden):
            raise ConfigError(f"--ae-dropout needs one rate per encoder layer "
                              f"({len(self.ae_hidden)}), got {len(self.ae_dropout)}")
        if len(self.finetune_momentum) != len(self.finetune_momentum_from):
            raise ConfigError("--finetune-momentum and --finetune-momentum-from need equal "
                              "lengths")
        if list(self.finetune_momentum_from) != sorted(self.finetune_momentum_from):
            raise ConfigError("--finetune-momentum-from must be increasing")
        self._check_gan()
        self._check_baseline()

    def _check_baseline(self) -> None:
        if self.baseline is not None and self.baseline not in BASELINES:
            raise ConfigError(f"unknown --baseline {self.baseline!r}; choose one of "
                              f"{BASELINES} or none")
        if self.baseline is not None and (self.gan or self.autoencoder):
            raise ConfigError("--baseline cannot be combined with --gan or --autoencoder; a "
                              "run trains one model")
        if not self.baseline_hidden:
            raise ConfigError("--baseline-hidden needs at least one value")
        if self.gsn_cost not in GSN_COSTS:
            raise ConfigError(f"unknown --gsn-cost {self.gsn_cost!r}; choose one of {GSN_COSTS}")
        if self.chain_noise_space not in CHAIN_NOISE_SPACES:
            raise ConfigError(f"unknown --chain-noise-space {self.chain_noise_space!r}; choose "
                              f"one of {CHAIN_NOISE_SPACES}")

    def _check_gan(self) -> None:
        if self.gan and self.autoencoder:
            raise ConfigError("--gan and --autoencoder cannot be combined: the GAN baseline "
                              "trains in data space; drop one of them")
        if self.gan_optimizer not in GAN_OPTIMIZERS:
            raise ConfigError(f"unknown --gan-optimizer {self.gan_optimizer!r}; choose one of "
                              f"{GAN_OPTIMIZERS}")
        if len(self.disc_dropout) != len(self.disc_hidden) + 1:
            raise ConfigError(f"--disc-dropout needs one rate per discriminator layer input "
                              f"({len(self.disc_hidden) + 1}), got {len(self.disc_dropout)}")

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict, *, source: str | None = None) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error.

        Fields missing from ``data`` (a run made before they existed) take today's defaults,
        with one warning naming them and ``source``.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; was the run made by a newer gmmn?")
        missing = [f.name for f in fields(cls) if f.name not in data]
        # Once per file and process: a resume reads the same checkpoint twice (CLI, runner).
        if missing and (source, tuple(missing)) not in _WARNED:
            _WARNED.add((source, tuple(missing)))
            log.warning("%s has no %s (made by an older gmmn); using today's defaults for "
                        "them", source or "the stored config", ", ".join(missing))
        return cls(**{k: _coerce(v, _hints()[k]) for k, v in data.items()})


# The range of every numeric field, in one place: (low, high, low included, high included);
# tuple fields apply it to each value, None (where allowed) skips it. NaN fails every
# comparison. A float field becomes a float32 tensor or an optimiser's float32 step, so none
# may exceed float32's largest number (1e39 or 1e300 overflowed at the first step); an integer
# one is a tensor size, count or int64 index, so none may exceed int64's.
_F32 = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max, without importing it
_I64 = 2**63 - 1
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "seed": (0, 2**32 - 1, True, True),  # torch and numpy seeds are 32/64-bit unsigned
    "checkpoint_every": (0, _I64, True, True),
    "log_every": (1, _I64, True, True),
    "sample_every": (0, _I64, True, True),
    "prior_dim": (1, _I64, True, True),
    "hidden": (1, _I64, True, True),
    "init_std": (0, _F32, False, True),
    "sigmas": (0, _F32, False, True),
    "sigma_weights": (0, _F32, True, True),
    "iterations": (1, _I64, True, True),
    "lr": (0, _F32, False, True),
    "momentum": (0, 1, True, False),
    "late_from": (1, _I64, True, True),
    "late_lr_factor": (0, _F32, False, True),
    "late_momentum": (0, 1, True, False),
    "sample_batch_size": (1, _I64, True, True),
    "data_batch_size": (1, _I64, True, True),
    "ae_hidden": (1, _I64, True, True),
    "ae_dropout": (0, 1, True, False),
    "ae_lr": (0, _F32, False, True),
    "ae_batch_size": (1, _I64, True, True),
    "ae_clip": (0, _F32, False, True),  # a negative clip norm reverses the gradient
    "pretrain_iterations": (0, _I64, True, True),
    "pretrain_momentum": (0, 1, True, False),
    "finetune_iterations": (0, _I64, True, True),
    "finetune_momentum": (0, 1, True, False),
    "finetune_momentum_from": (1, _I64, True, True),
    "ae_eval_every": (1, _I64, True, True),
    "disc_hidden": (1, _I64, True, True),
    "disc_pieces": (1, _I64, True, True),
    "disc_dropout": (0, 1, True, False),
    "gan_final_momentum": (0, 1, True, False),
    "gan_momentum_ramp": (1, _I64, True, True),
    "gan_lr_decay": (1, _F32, True, True),
    "gan_min_lr": (0, _F32, True, True),
    "gan_label_smoothing": (0, 0.5, True, False),
    # Added to data in its own units ([0, 1] pixels for the presets): a std far past that
    # leaves the discriminator nothing but noise, and 1e300 turned every weight into NaN.
    "gan_instance_noise": (0, 1000, True, True),
    "baseline_hidden": (1, _I64, True, True),
    "cd_k": (1, _I64, True, True),
    "contraction": (0, _F32, True, True),
    "walkbacks": (1, _I64, True, True),
    "gsn_input_noise": (0, 1, True, True),
    "gsn_hidden_noise": (0, _F32, True, True),
    "anneal_every": (0, _I64, True, True),
    "anneal_factor": (0, 1, False, True),
    "chains": (1, _I64, True, True),
    "burn_in": (0, _I64, True, True),
    "thin": (1, _I64, True, True),
    "chain_noise": (0, _F32, True, True),
}


def _num(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _describe(lo: float, hi: float, lo_in: bool, hi_in: bool) -> str:
    positive = (lo, lo_in) in ((0, False), (1, True))
    low = "positive" if positive else f"{'>=' if lo_in else '>'} {_num(lo)}"
    if hi == _F32:
        return f"{low} and at most {hi:.6g} (float32's largest number)"
    if hi == _I64:
        return f"{low} and at most 2**63 - 1" if positive else f"{low} and below 2**63"
    return f"{low} and {'<=' if hi_in else '<'} {_num(hi)}"


def _check_ranges(cfg: TrainConfig) -> None:
    for name, (lo, hi, lo_in, hi_in) in RANGES.items():
        value = getattr(cfg, name)
        values = value if isinstance(value, tuple) else () if value is None else (value,)
        for v in values:
            above = v >= lo if lo_in else v > lo
            below = v <= hi if hi_in else v < hi
            if not (above and below):
                shown = ",".join(_num(x) for x in values)
                raise ConfigError(f"{flag(name)} must be "
                                  f"{_describe(lo, hi, lo_in, hi_in)}, got {shown}")
    # Learning rates the schedules compute: each must stay a float32 too.
    if cfg.lr is not None and cfg.lr * cfg.late_lr_factor > _F32:
        raise ConfigError(f"--lr {_num(cfg.lr)} times --late-lr-factor "
                          f"{_num(cfg.late_lr_factor)} is the learning rate from --late-from "
                          f"on, {cfg.lr * cfg.late_lr_factor:.3g}, beyond float32's largest "
                          f"number {_F32:.6g}; lower one of them")


def field_help(name: str) -> str | None:
    """The help text of config field ``name``, from its ``_f(..., help)`` declaration."""
    return TrainConfig.__dataclass_fields__[name].metadata.get("help")


def flag(name: str) -> str:
    """The command-line flag of config field ``name`` (``data_batch_size`` ->
    ``--data-batch-size``): the one place the field-to-flag mapping is written."""
    return "--" + name.replace("_", "-")


def _hints() -> dict[str, typing.Any]:
    return typing.get_type_hints(TrainConfig)


def _coerce(value, hint):
    """JSON lists back into tuples where the field's type is a tuple (``tuple[...]``, maybe
    ``| None``); any other value is left for :func:`_check_types` to judge."""
    if isinstance(value, list) and _is_tuple_hint(hint):
        return tuple(value)
    return value


def _is_tuple_hint(hint) -> bool:
    if typing.get_origin(hint) is tuple:
        return True
    return any(_is_tuple_hint(arg) for arg in typing.get_args(hint)
               if typing.get_origin(hint) in (typing.Union, types.UnionType))


def _check_types(cfg: TrainConfig) -> None:
    for name, hint in _hints().items():
        value = getattr(cfg, name)
        if not _matches(value, hint):
            raise ConfigError(f"{flag(name)} has the wrong type: {value!r}")


def _matches(value, hint) -> bool:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, tuple) and all(_matches(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def field_types() -> dict[str, typing.Any]:
    """Field name -> resolved type hint, for generating CLI flags."""
    return _hints()


def package_versions() -> dict[str, str]:
    """Versions saved beside the config of every run, for reproducing it."""
    import numpy
    import torch

    import gmmn

    # str(): torch's version is a str subclass that a weights-only load refuses.
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "numpy": str(numpy.__version__), "gmmn": str(gmmn.__version__)}


