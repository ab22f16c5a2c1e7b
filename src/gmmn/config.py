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
import math
import platform
import types
import typing
from dataclasses import dataclass, fields

from gmmn.errors import ConfigError

log = logging.getLogger(__name__)
_WARNED: set[tuple[str | None, tuple[str, ...]]] = set()  # see TrainConfig.from_dict

DEVICES = ("auto", "cpu", "cuda")
OUTPUTS = ("auto", "sigmoid", "linear")
GAN_OPTIMIZERS = ("sgd", "adam")
BASELINES = ("dbn", "scae", "gsn")  # the paper's quoted rows, gmmn.baselines
GSN_COSTS = ("bce", "mse")
CHAIN_NOISE_SPACES = ("hidden", "input")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; see :mod:`gmmn.presets` for the reason behind each value."""

    preset: str = "custom"
    # --- data and run ---
    dataset: str = "digits"
    data_dir: str | None = None
    standardize: bool = False
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 1000
    log_every: int = 100
    sample_every: int = 5000
    # --- generator (data-space or code-space GMMN) ---
    prior_dim: int = 10
    hidden: tuple[int, ...] = (64, 256, 256, 1024)
    output: str = "auto"  # auto: sigmoid for [0, 1] data and codes, linear otherwise
    init_std: float | None = 0.1  # None: PyTorch's default initialisation
    sigmas: tuple[float, ...] = (1.0,)  # kernel standard deviations
    sigma_weights: tuple[float, ...] | None = None
    # --- GMMN optimisation ---
    iterations: int = 40000
    lr: float = 2.0
    momentum: float = 0.9
    late_from: int = 10000
    late_lr_factor: float = 0.1
    late_momentum: float = 0.99
    sample_batch_size: int = 1000
    data_batch_size: int = 1000
    # --- autoencoder (GMMN+AE) ---
    autoencoder: bool = False
    ae_hidden: tuple[int, ...] = (1024, 32)
    ae_dropout: tuple[float, ...] = (0.2, 0.5)
    released_dropout: bool = True
    ae_lr: float = 0.1
    ae_batch_size: int = 100
    ae_clip: float = 10.0
    pretrain_iterations: int = 3000
    pretrain_momentum: float = 0.5
    finetune_iterations: int = 3000
    finetune_momentum: tuple[float, ...] = (0.0, 0.5, 0.9)
    finetune_momentum_from: tuple[int, ...] = (1, 50, 200)
    ae_eval_every: int = 100
    # --- GAN baseline (Goodfellow et al. 2014; see gmmn.gan) ---
    gan: bool = False
    gan_optimizer: str = "sgd"  # sgd: released-form SGD (gmmn.train); adam: gmmn.gan.Adam
    disc_hidden: tuple[int, ...] = (240, 240)
    disc_pieces: int = 5
    disc_dropout: tuple[float, ...] = (0.2, 0.5, 0.5)
    gan_final_momentum: float = 0.7
    gan_momentum_ramp: int = 137500
    gan_lr_decay: float = 1.000004
    gan_min_lr: float = 1e-6
    gan_label_smoothing: float = 0.0  # one-sided: real images' target is 1 - this
    # --- DBN, stacked CAE and deep GSN baselines (gmmn.baselines; docs/baselines.md). They
    # reuse iterations (per layer for the greedy dbn and scae), lr, momentum,
    # data_batch_size and, for the RBMs, init_std. ---
    baseline: str | None = None  # dbn, scae or gsn; None: GMMN, GMMN+AE or GAN
    baseline_hidden: tuple[int, ...] = (1000, 1000)
    cd_k: int = 1
    pcd: bool = True  # persistent chains, one per row of a batch (SML; Tieleman 2008)
    contraction: float = 0.1
    walkbacks: int = 4
    gsn_cost: str = "bce"
    gsn_input_noise: float = 0.4
    gsn_hidden_noise: float = 2.0
    anneal_every: int = 0  # 0: constant lr
    anneal_factor: float = 1.0
    # How samples are drawn from a baseline's own Markov chain (also flags of gmmn sample and
    # gmmn evaluate); defaults: the deep GSN's released sampler.
    chains: int = 1
    burn_in: int = 0
    thin: int = 1
    chain_noise: float = 1.0  # stacked CAE: sigma of the chain's noise
    chain_noise_space: str = "hidden"

    def __post_init__(self) -> None:
        _check_types(self)
        _check_ranges(self)
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown --device {self.device!r}; choose auto, cpu or cuda")
        if self.output not in OUTPUTS:
            raise ConfigError(f"unknown --output {self.output!r}; choose one of {OUTPUTS}")
        if self.sigma_weights is not None and len(self.sigma_weights) != len(self.sigmas):
            raise ConfigError("--sigma-weights needs one weight per value of --sigmas")
        for name in ("sigmas", "ae_hidden", "disc_hidden"):
            if not getattr(self, name):
                raise ConfigError(f"{_flag(name)} needs at least one value")
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
# tuple fields apply it to each value, None (where allowed) skips it. An infinite bound is
# never included, so every value must also be finite (NaN fails every comparison).
_INF = math.inf
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "seed": (0, 2**32 - 1, True, True),  # torch and numpy seeds are 32/64-bit unsigned
    "checkpoint_every": (0, _INF, True, False),
    "log_every": (1, _INF, True, False),
    "sample_every": (0, _INF, True, False),
    "prior_dim": (1, _INF, True, False),
    "hidden": (1, _INF, True, False),
    "init_std": (0, _INF, False, False),
    "sigmas": (0, _INF, False, False),
    "sigma_weights": (0, _INF, True, False),
    "iterations": (1, _INF, True, False),
    "lr": (0, _INF, False, False),
    "momentum": (0, 1, True, False),
    "late_from": (1, _INF, True, False),
    "late_lr_factor": (0, _INF, False, False),
    "late_momentum": (0, 1, True, False),
    "sample_batch_size": (1, _INF, True, False),
    "data_batch_size": (1, _INF, True, False),
    "ae_hidden": (1, _INF, True, False),
    "ae_dropout": (0, 1, True, False),
    "ae_lr": (0, _INF, False, False),
    "ae_batch_size": (1, _INF, True, False),
    "ae_clip": (0, _INF, False, False),  # a negative clip norm reverses the gradient
    "pretrain_iterations": (0, _INF, True, False),
    "pretrain_momentum": (0, 1, True, False),
    "finetune_iterations": (0, _INF, True, False),
    "finetune_momentum": (0, 1, True, False),
    "finetune_momentum_from": (1, _INF, True, False),
    "ae_eval_every": (1, _INF, True, False),
    "disc_hidden": (1, _INF, True, False),
    "disc_pieces": (1, _INF, True, False),
    "disc_dropout": (0, 1, True, False),
    "gan_final_momentum": (0, 1, True, False),
    "gan_momentum_ramp": (1, _INF, True, False),
    "gan_lr_decay": (1, _INF, True, False),
    "gan_min_lr": (0, _INF, True, False),
    "gan_label_smoothing": (0, 0.5, True, False),
    "baseline_hidden": (1, _INF, True, False),
    "cd_k": (1, _INF, True, False),
    "contraction": (0, _INF, True, False),
    "walkbacks": (1, _INF, True, False),
    "gsn_input_noise": (0, 1, True, True),
    "gsn_hidden_noise": (0, _INF, True, False),
    "anneal_every": (0, _INF, True, False),
    "anneal_factor": (0, 1, False, True),
    "chains": (1, _INF, True, False),
    "burn_in": (0, _INF, True, False),
    "thin": (1, _INF, True, False),
    "chain_noise": (0, _INF, True, False),
}


def _num(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _describe(lo: float, hi: float, lo_in: bool, hi_in: bool, *, whole: bool) -> str:
    if hi == _INF and (lo, lo_in) in ((0, False), (1, True)):
        return "positive" if whole else "positive and finite"
    parts = [f"{'>=' if lo_in else '>'} {_num(lo)}"]
    if hi != _INF:
        parts.append(f"{'<=' if hi_in else '<'} {_num(hi)}")
    elif not whole:
        parts.append("finite")
    return " and ".join(parts)


def _check_ranges(cfg: TrainConfig) -> None:
    for name, (lo, hi, lo_in, hi_in) in RANGES.items():
        value = getattr(cfg, name)
        values = value if isinstance(value, tuple) else () if value is None else (value,)
        for v in values:
            above = v >= lo if lo_in else v > lo
            below = v <= hi if hi_in else v < hi
            if not (above and below):
                whole = all(isinstance(x, int) for x in values)
                shown = ",".join(_num(x) for x in values)
                raise ConfigError(f"{_flag(name)} must be "
                                  f"{_describe(lo, hi, lo_in, hi_in, whole=whole)}, got {shown}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _hints() -> dict[str, typing.Any]:
    return typing.get_type_hints(TrainConfig)


def _coerce(value, hint):
    """JSON lists back into tuples, following the field's type."""
    if isinstance(value, list):
        return tuple(value)
    return value


def _check_types(cfg: TrainConfig) -> None:
    for name, hint in _hints().items():
        value = getattr(cfg, name)
        if not _matches(value, hint):
            raise ConfigError(f"{_flag(name)} has the wrong type: {value!r}")


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


# One line per field for `gmmn train --help` (the flag is the field name with dashes).
FIELD_HELP = {
    "dataset": "dataset name (digits, mnist, fashion-mnist, tfd) or a path to your data",
    "data_dir": "where dataset files are looked for / cached",
    "standardize": "z-score each feature (the generator output becomes linear)",
    "seed": "seed of weights, prior noise, dropout and data order",
    "device": "auto, cpu, cuda or cuda:N",
    "checkpoint_every": "checkpoint every N iterations (0: only at stage ends)",
    "log_every": "a metrics.jsonl line every N iterations",
    "sample_every": "a sample grid every N iterations (image data; 0: only at the end)",
    "prior_dim": "dimension of the uniform prior on [-1, 1]",
    "hidden": "generator hidden layer sizes, comma-separated",
    "output": "generator output: auto, sigmoid or linear",
    "init_std": "initial weights init_std * N(0, 1), biases 0 ('none': PyTorch default)",
    "sigmas": "kernel standard deviations, comma-separated, or mnist, tfd, mnist-code, tfd-code",
    "sigma_weights": "one weight per kernel scale (default all 1)",
    "iterations": "GMMN iterations (GAN: iterations; dbn, scae: per layer; gsn: in all)",
    "lr": "GMMN learning rate (also the GAN's and the baselines')",
    "momentum": "GMMN momentum (also the GAN's and the baselines')",
    "late_from": "iteration from which lr * late_lr_factor and late_momentum apply",
    "late_lr_factor": "lr factor from late_from on",
    "late_momentum": "momentum from late_from on",
    "sample_batch_size": "generated samples per GMMN step",
    "data_batch_size": "data (or code) points per GMMN step (released code: 100); GAN and "
                       "baselines: their minibatch",
    "autoencoder": "GMMN+AE: train an autoencoder and the GMMN on its codes",
    "ae_hidden": "encoder layer sizes after the input, comma-separated (last: code size)",
    "ae_dropout": "dropout rate on each encoder layer's input, comma-separated",
    "released_dropout": "released-code dropout: masks not rescaled, weights / (1-p) on copy",
    "ae_lr": "autoencoder learning rate (pretraining and fine-tuning)",
    "ae_batch_size": "autoencoder batch size",
    "ae_clip": "autoencoder gradient-norm clip",
    "pretrain_iterations": "layer-wise pretraining iterations per layer (0: skip)",
    "pretrain_momentum": "pretraining momentum",
    "finetune_iterations": "fine-tuning iterations (0: skip)",
    "finetune_momentum": "fine-tuning momenta, comma-separated",
    "finetune_momentum_from": "iteration (from 1) where each fine-tuning momentum starts",
    "ae_eval_every": "fine-tuning: training loss every N iterations, best kept",
    "gan": "GAN baseline: train the generator against a discriminator instead of the MMD",
    "gan_optimizer": "GAN: sgd (released-form SGD with momentum) or adam (momentum = beta1)",
    "disc_hidden": "GAN discriminator hidden layer sizes (maxout units), comma-separated",
    "disc_pieces": "GAN discriminator: linear pieces per maxout unit",
    "disc_dropout": "GAN discriminator: dropout rate on each layer's input, comma-separated",
    "gan_final_momentum": "GAN: momentum rises linearly from --momentum to this",
    "gan_momentum_ramp": "GAN: iterations over which the momentum rises",
    "gan_lr_decay": "GAN: lr divided by this every iteration",
    "gan_min_lr": "GAN: the decayed lr never falls below this",
    "gan_label_smoothing": "GAN: one-sided label smoothing, the discriminator's target for "
                           "real images is 1 minus this (0: the GAN paper's loss)",
    "baseline": "train a quoted row instead: dbn, scae (stacked CAE) or gsn (deep GSN)",
    "baseline_hidden": "baseline hidden layer sizes, comma-separated (dbn, scae: one per "
                       "greedy stage)",
    "cd_k": "dbn: Gibbs steps per update of the negative phase (CD-k or PCD-k)",
    "pcd": "dbn: persistent chains (PCD / SML), one per batch row; --no-pcd: CD-k",
    "contraction": "scae: weight lambda of the contractive penalty ||dh/dx||_F^2",
    "walkbacks": "gsn: walkback steps per update, one reconstruction term each",
    "gsn_cost": "gsn: reconstruction cost, bce or mse",
    "gsn_input_noise": "gsn: salt-and-pepper probability on the visible layer",
    "gsn_hidden_noise": "gsn: std of the Gaussian noise on hidden layers (not the first)",
    "anneal_every": "baselines: multiply lr by --anneal-factor every N iterations (0: never)",
    "anneal_factor": "baselines: lr factor applied every --anneal-every iterations",
    "chains": "baseline sampling: chains run side by side, each from a training row",
    "burn_in": "baseline sampling: transitions before the first kept state",
    "thin": "baseline sampling: keep every N-th state (1: consecutive states)",
    "chain_noise": "scae sampling: std of the chain's Gaussian noise (sigma)",
    "chain_noise_space": "scae sampling: noise in hidden space (J J^T alpha, released code) "
                         "or input space (J eps)",
}
