"""What a model family is: its settings, its model, its stages and how it samples.

A family is one module holding a :class:`Family` subclass and its settings dataclass, plus
one line in :data:`gmmn.families.FAMILIES`. The run, the checkpoint reader, sampling,
evaluation, ``gmmn reproduce`` and the CLI ask the family; none of them branches on its kind.

:class:`GeneratorSettings` are the settings of the networks that sample from a prior (GMMN,
GMMN+AE, GAN) and :class:`PriorSampler` draws their samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from gmmn.config import (
    MOMENTUM,
    POSITIVE,
    POSITIVE_INT,
    Settings,
    TrainConfig,
    flag,
    setting,
)
from gmmn.data.splits import to_data_units
from gmmn.errors import ConfigError, DataError
from gmmn.memory import check_fits
from gmmn.models import PRIORS
from gmmn.qmc import prior_points, prior_sampling
from gmmn.sampling import SamplingConfig, refuse_settings, sample_generator
from gmmn.training.auto import FitCheck
from gmmn.training.loop import Hooks, Stage

log = logging.getLogger(__name__)

OUTPUTS = ("auto", "sigmoid", "linear")


class Family:
    """The interface every model family implements (defaults where most agree)."""

    name: ClassVar[str]
    settings: ClassVar[type[Settings]]
    # The iteration fields `gmmn reproduce --quick` scales down.
    quick_fields: ClassVar[tuple[str, ...]] = ("iterations",)
    # Whether a run may train under torchrun: its stages take the data-parallel hooks.
    data_parallel: ClassVar[bool] = False
    # Whether its generator writes data rows itself (raw values outside [0, 1] get a warning).
    data_space: ClassVar[bool] = False
    # Words for messages: "the GMMN", "the dbn baseline".
    label: ClassVar[str]
    # Whether it samples by its own Markov chain (gmmn.sampling.SamplingConfig applies).
    samples_by_chain: ClassVar[bool] = False
    # Whether its chain has a noise level (--chain-noise) that evaluation may choose.
    tunable_noise: ClassVar[bool] = False

    def stage_names(self, cfg: TrainConfig) -> list[str]:
        raise NotImplementedError

    def stage_iterations(self, cfg: TrainConfig, name: str) -> int:
        """The length of stage ``name`` (one of :meth:`stage_names`)."""
        return cfg.model.iterations

    def build_model(self, cfg: TrainConfig, data_dim: int, *, unit_interval: bool
                    ) -> nn.Module:
        """The networks for data of dimension ``data_dim``; weights from ``cfg.seed``."""
        raise NotImplementedError

    def build_stage(self, name: str, model: nn.Module, train: torch.Tensor,
                    cfg: TrainConfig, hooks: Hooks, *,
                    validation: torch.Tensor | None = None) -> Stage:
        """Stage ``name`` on the training rows ``train``; ``validation`` rows are there for a
        stage that selects on them (never the test rows)."""
        raise NotImplementedError

    def fit_data(self, cfg: TrainConfig, splits) -> TrainConfig:
        """``cfg`` with the settings this family takes from the data beyond
        :func:`gmmn.training.auto.resolve`'s (a conditional family: the number of classes)."""
        return cfg

    def rows(self, cfg: TrainConfig, splits, split: str) -> torch.Tensor:
        """The rows of split ``split`` (train, validation) its stages train on: the data as it
        is (a conditional family appends each row's class)."""
        return getattr(splits, split)

    def init_from_data(self, cfg: TrainConfig, model: nn.Module, train: torch.Tensor) -> None:
        """Initialise what depends on the training rows, once, before a new run's first
        stage (a resumed run has it in its weights)."""

    def batch_fields(self, cfg: TrainConfig) -> tuple[str, ...]:
        """Settings that are batch sizes over training rows (capped at the rows, warned)."""
        return ("data_batch_size",)

    def check_data(self, cfg: TrainConfig, info: dict, n_rows: int,
                   device: torch.device) -> None:
        """Refuse, before training, what this data or this memory cannot serve."""

    def check_world(self, cfg: TrainConfig, world_size: int) -> None:
        """Refuse settings that cannot run on ``world_size`` data-parallel workers."""
        if not self.data_parallel:
            raise ConfigError(f"{self.label} trains in one process; run it with `gmmn train`, "
                              f"not under torchrun ({world_size} workers)")

    def fit_check(self, cfg: TrainConfig, model: nn.Module, train: torch.Tensor,
                  losses: list[float]) -> FitCheck | None:
        """The check of a finished model against its training rows (None: no check)."""
        return None

    def sampler(self, model: nn.Module, cfg: TrainConfig, info: dict, *,
                sampling: SamplingConfig | None = None, rows=None):
        """A :class:`gmmn.sampling.Sampler` of the trained ``model``; ``sampling`` (chain
        families) overrides the run's stored chain settings, ``rows`` gives the training rows
        a chain starts from (a callable returning them, read on first use)."""
        raise NotImplementedError


@dataclass(frozen=True)
class GeneratorSettings(Settings):
    """A generator network that maps a prior to data (or codes), and its steps."""

    # None (auto): twice the data's dimension, 10 to 100 (gmmn.training.auto)
    prior_dim: int | None = setting(10, "dimension of the prior; 'none': twice the data's "
                                        "dimension, from 10 to 100", POSITIVE_INT)
    hidden: tuple[int, ...] = setting((64, 256, 256, 1024),
                                      "generator hidden layer sizes, comma-separated",
                                      POSITIVE_INT)
    # auto: sigmoid for [0, 1] data and codes, linear otherwise
    output: str = setting("auto", "generator output: auto, sigmoid or linear")
    # None: PyTorch's default initialisation
    init_std: float | None = setting(0.1, "initial weights init_std * N(0, 1), biases 0 "
                                          "('none': PyTorch default)", POSITIVE)
    iterations: int = setting(40000, "training iterations of the generator", POSITIVE_INT)
    # None (auto): 2 for a sigmoid output, 0.1 for a linear one (gmmn.training.auto)
    lr: float | None = setting(2.0, "learning rate; 'none': by the generator's output",
                               POSITIVE)
    momentum: float = setting(0.9, "momentum", MOMENTUM)
    sample_batch_size: int = setting(1000, "generated samples per step", POSITIVE_INT)
    # None (auto): all training rows, at most 1000 (gmmn.training.auto)
    data_batch_size: int | None = setting(1000, "data (or code) points per step (released "
                                                "code: 100); 'none': all training rows up "
                                                "to 1000", POSITIVE_INT)

    # uniform: the paper's U[-1, 1]^prior_dim; normal: N(0, I), the GAN paper's noise
    prior: str = setting("uniform", "the generator's prior: uniform on [-1, 1] (the paper's) "
                                    "or normal, N(0, I)")
    # pylearn2's irange: the GAN paper's generator used 0.05
    init_range: float | None = setting(None, "initial weights uniform in +-init_range, "
                                             "biases 0 (instead of --init-std; 'none': off)",
                                       POSITIVE)

    def check(self) -> None:
        if self.output not in OUTPUTS:
            raise ConfigError(f"unknown --output {self.output!r}; choose one of {OUTPUTS}")
        if not self.hidden:
            raise ConfigError(f"{flag('hidden')} needs at least one value")
        if self.prior not in PRIORS:
            raise ConfigError(f"unknown --prior {self.prior!r}; choose one of {PRIORS}")
        if self.init_range is not None and self.init_std is not None:
            raise ConfigError("--init-range and --init-std are two initialisations; set one "
                              "and pass 'none' for the other")



class PriorSampler:
    """Samples of a model that maps prior points to data: ``model.sample(n, generator=g)``
    and ``model.decode_prior(z)``, back in data units (the run's standardisation undone)."""

    settings = None
    tunable_noise = False

    def __init__(self, model: nn.Module, info: dict, *, what: str) -> None:
        self.model, self.info, self.what = model, info, what
        self.dim = int(info["dim"])

    @property
    def prior_dim(self) -> int:
        return self.model.prior_dim

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def with_settings(self, **changes) -> PriorSampler:
        refuse_settings(changes, f"{self.what} samples from its prior")
        return self

    @torch.no_grad()
    def decode_prior(self, z: torch.Tensor) -> torch.Tensor:
        """Prior points (k, prior_dim) -> samples (k, D) in data space (interpolations)."""
        if z.ndim != 2 or z.shape[1] != self.prior_dim:
            raise DataError(f"prior points must have shape (k, {self.prior_dim}), "
                            f"got {tuple(z.shape)}")
        out = self.model.decode_prior(z.to(self.device, torch.float32))
        return to_data_units(out, self.info)

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, qmc: bool = False) -> torch.Tensor:
        """``n`` samples (n, D) in data space; the same seed gives the same samples.

        ``qmc=True``: randomised quasi-Monte Carlo (Hofert, Prasad & Zhu 2021): the prior
        points are the first ``n`` points of one scrambled Sobol' sequence randomised by
        ``seed``, mapped through the prior's inverse CDF (:func:`gmmn.qmc.prior_points`;
        ``n`` should be a power of two). ``qmc=False`` (default): pseudo-random prior points,
        the numbers of every earlier gmmn."""
        gen = sample_generator(n, seed)
        check_sample_memory(self.model, n, self.dim, self.device)
        if prior_sampling(qmc) == "sobol":
            z = prior_points(n, self.prior_dim, prior=self.prior, seed=seed)
            out = self.model.decode_prior(z.to(self.device))
        else:
            out = self.model.sample(n, generator=gen)
        return to_data_units(out, self.info)

    @property
    def prior(self) -> str:
        """The generator's prior, ``uniform`` (U[-1, 1]) or ``normal`` (N(0, I))."""
        return self.model.generator.prior


def check_sample_memory(model: nn.Module, n: int, dim: int, device: torch.device) -> None:
    """Refuse a sampling call whose samples, a copy and the widest layer's activations do
    not fit, before drawing (as ``gmmn sample`` checks)."""
    widest = max((dim, *(max(p.shape) for p in model.parameters() if p.ndim == 2)))
    check_fits(4.0 * n * (2 * dim + widest), device=device, what=f"{n} samples of {dim} "
               f"dimensions", fix="draw fewer samples per call", error=DataError)
