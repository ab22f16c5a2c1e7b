"""Training configuration: one frozen dataclass whose field names are also the CLI flags
(``--data-batch-size`` for ``data_batch_size``) and the keys of ``config.json`` and of the
checkpoint's stored config.

A config is never mutated: presets build one, the CLI derives another with
:func:`dataclasses.replace`, and :meth:`TrainConfig.__post_init__` validates every copy.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import types
import typing
from dataclasses import dataclass, fields

from gmmn.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
OUTPUTS = ("auto", "sigmoid", "linear")
GAN_OPTIMIZERS = ("sgd", "adam")


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

    def __post_init__(self) -> None:
        _check_types(self)
        positive = ("prior_dim", "iterations", "sample_batch_size", "data_batch_size",
                    "ae_batch_size", "log_every", "ae_eval_every", "late_from")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_flag(name)} must be positive, got {getattr(self, name)}")
        for name in ("pretrain_iterations", "finetune_iterations", "checkpoint_every",
                     "sample_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "ae_lr", "late_lr_factor"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{_flag(name)} must be positive, got {getattr(self, name)}")
        for name in ("momentum", "late_momentum", "pretrain_momentum"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{_flag(name)} must lie in [0, 1), got {getattr(self, name)}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown --device {self.device!r}; choose auto, cpu or cuda")
        if self.output not in OUTPUTS:
            raise ConfigError(f"unknown --output {self.output!r}; choose one of {OUTPUTS}")
        if any(h <= 0 for h in self.hidden) or any(h <= 0 for h in self.ae_hidden):
            raise ConfigError("layer sizes in --hidden and --ae-hidden must be positive")
        if not self.sigmas or any(not s > 0 for s in self.sigmas):
            raise ConfigError(f"--sigmas must be positive numbers, got {self.sigmas}")
        if self.sigma_weights is not None and len(self.sigma_weights) != len(self.sigmas):
            raise ConfigError("--sigma-weights needs one weight per value of --sigmas")
        if self.init_std is not None and not self.init_std > 0:
            raise ConfigError(f"--init-std must be positive, got {self.init_std}")
        if not self.ae_hidden:
            raise ConfigError("--ae-hidden needs at least one layer size")
        if len(self.ae_dropout) != len(self.ae_hidden):
            raise ConfigError(f"--ae-dropout needs one rate per encoder layer "
                              f"({len(self.ae_hidden)}), got {len(self.ae_dropout)}")
        if any(not 0 <= p < 1 for p in self.ae_dropout):
            raise ConfigError(f"--ae-dropout rates must lie in [0, 1), got {self.ae_dropout}")
        if len(self.finetune_momentum) != len(self.finetune_momentum_from):
            raise ConfigError("--finetune-momentum and --finetune-momentum-from need equal "
                              "lengths")
        if list(self.finetune_momentum_from) != sorted(self.finetune_momentum_from):
            raise ConfigError("--finetune-momentum-from must be increasing")
        self._check_gan()

    def _check_gan(self) -> None:
        if self.gan and self.autoencoder:
            raise ConfigError("--gan and --autoencoder cannot be combined: the GAN baseline "
                              "trains in data space; drop one of them")
        if self.gan_optimizer not in GAN_OPTIMIZERS:
            raise ConfigError(f"unknown --gan-optimizer {self.gan_optimizer!r}; choose one of "
                              f"{GAN_OPTIMIZERS}")
        if not self.disc_hidden or any(h <= 0 for h in self.disc_hidden):
            raise ConfigError(f"--disc-hidden needs positive layer sizes, got {self.disc_hidden}")
        if self.disc_pieces <= 0:
            raise ConfigError(f"--disc-pieces must be positive, got {self.disc_pieces}")
        if len(self.disc_dropout) != len(self.disc_hidden) + 1:
            raise ConfigError(f"--disc-dropout needs one rate per discriminator layer input "
                              f"({len(self.disc_hidden) + 1}), got {len(self.disc_dropout)}")
        if any(not 0 <= p < 1 for p in self.disc_dropout):
            raise ConfigError(f"--disc-dropout rates must lie in [0, 1), got {self.disc_dropout}")
        if not 0 <= self.gan_final_momentum < 1:
            raise ConfigError(f"--gan-final-momentum must lie in [0, 1), got "
                              f"{self.gan_final_momentum}")
        if self.gan_momentum_ramp <= 0:
            raise ConfigError(f"--gan-momentum-ramp must be positive, got "
                              f"{self.gan_momentum_ramp}")
        if not self.gan_lr_decay >= 1 or not self.gan_min_lr >= 0:
            raise ConfigError("--gan-lr-decay must be >= 1 and --gan-min-lr >= 0")

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; was the run made by a newer gmmn?")
        return cls(**{k: _coerce(v, _hints()[k]) for k, v in data.items()})


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
    "iterations": "GMMN iterations",
    "lr": "GMMN learning rate",
    "momentum": "GMMN momentum",
    "late_from": "iteration from which lr * late_lr_factor and late_momentum apply",
    "late_lr_factor": "lr factor from late_from on",
    "late_momentum": "momentum from late_from on",
    "sample_batch_size": "generated samples per GMMN step",
    "data_batch_size": "data (or code) points per GMMN step (released code: 100)",
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
}
