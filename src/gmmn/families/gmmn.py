"""The data-space GMMN (Li, Swersky & Zemel 2015, Sec. 3): a generator trained to minimise
sqrt(MMD^2) between its samples and data under a mixture of Gaussian kernels
(:func:`gmmn.mmd.mmd_loss`). One stage, ``gmmn``, the only data-parallel one: every worker
draws the global prior batch and data indices from the same streams and keeps its own rows,
so the gathered batches are one process's (:mod:`gmmn.training.distributed`).

:class:`PriorFamily` holds what every family that samples from a prior shares (GMMN,
GMMN+AE, GAN): the fit check after training, the memory bound of a step and the sampler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from gmmn.config import (
    COUNT,
    F32,
    MOMENTUM,
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    TrainConfig,
    setting,
)
from gmmn.config import flag as config_flag
from gmmn.errors import ConfigError
from gmmn.families.base import Family, GeneratorSettings, PriorSampler
from gmmn.memory import check_fits
from gmmn.mmd import mmd2, mmd_loss
from gmmn.models import GenerativeModel, Generator, check_weights_fit, layer_weights, sigmoid_output
from gmmn.training.auto import CHECK_SAMPLES, FitCheck, check_fit
from gmmn.training.blocks import (
    BatchSampler,
    GeneratorSamples,
    KeepsBest,
    SampledStage,
    seeded_rng,
    warn_far_scales,
)
from gmmn.training.loop import Hooks, Part
from gmmn.training.optim import ReleasedSGD, gmmn_schedule

log = logging.getLogger(__name__)

WEIGHTS_FIX = "use smaller --hidden, --ae-hidden or --disc-hidden sizes"


@dataclass(frozen=True)
class GMMNSettings(GeneratorSettings):
    """The generator, its MMD kernel and the paper's two-phase SGD schedule."""

    # None (median): chosen from the training data, gmmn.training.auto
    sigmas: tuple[float, ...] | None = setting((1.0,),
                                               "kernel standard deviations, comma-separated, "
                                               "or mnist, tfd, mnist-code, tfd-code, or median "
                                               "(from the training data)", POSITIVE)
    sigma_weights: tuple[float, ...] | None = setting(None, "one weight per kernel scale "
                                                            "(default all 1)", NONNEGATIVE)
    late_from: int = setting(10000, "iteration from which lr * late_lr_factor and "
                                    "late_momentum apply", POSITIVE_INT)
    late_lr_factor: float = setting(0.1, "lr factor from late_from on", POSITIVE)
    late_momentum: float = setting(0.99, "momentum from late_from on", MOMENTUM)
    # model selection on the validation rows (docs/training.md, "Choosing the length")
    select_every: int = setting(0, "every N iterations, and at the last, score the MMD^2 "
                                   "between select_samples samples and the validation rows "
                                   "and keep the generator with the lowest (0: off)", COUNT)
    select_samples: int = setting(10000, "samples behind each validation score",
                                  POSITIVE_INT)

    def check(self) -> None:
        super().check()
        if self.sigmas is None:
            if self.sigma_weights is not None:
                raise ConfigError("--sigma-weights needs explicit --sigmas, one weight per "
                                  "value; with --sigmas median drop --sigma-weights")
        elif not self.sigmas:
            raise ConfigError(f"{config_flag('sigmas')} needs at least one value")
        elif self.sigma_weights is not None and len(self.sigma_weights) != len(self.sigmas):
            raise ConfigError("--sigma-weights needs one weight per value of --sigmas")
        # The learning rate the schedule computes from late_from on must stay a float32.
        if self.lr is not None and self.lr * self.late_lr_factor > F32:
            raise ConfigError(f"--lr {self.lr:g} times --late-lr-factor "
                              f"{self.late_lr_factor:g} is the learning rate from --late-from "
                              f"on, {self.lr * self.late_lr_factor:.3g}, beyond float32's "
                              f"largest number {F32:.6g}; lower one of them")


class GMMNStage(KeepsBest, GeneratorSamples, SampledStage):
    """Train ``model.generator`` so its samples match ``targets`` (data, or codes of data);
    with ``select_every``, keep the generator whose samples lie nearest (in MMD^2) to the
    ``validation`` rows."""

    data_parallel = True
    BEST_KEY = "best_val_mmd2"

    def __init__(self, model: GenerativeModel, targets: torch.Tensor, cfg: TrainConfig, *,
                 name: str = "gmmn", hooks: Hooks | None = None,
                 validation: torch.Tensor | None = None) -> None:
        m = cfg.model
        self.name, self.iterations = name, m.iterations
        self.model, self.settings = model, m
        hooks = hooks or Hooks()
        self.gather, self.shard = hooks.gather, hooks.shard
        self.rng = seeded_rng(cfg.seed, name, "prior")
        self.sampler = BatchSampler(targets, m.data_batch_size,
                                    seeded_rng(cfg.seed, name, "data"))
        opt = ReleasedSGD(model.generator.parameters(), lr=m.lr, momentum=m.momentum)
        schedule = gmmn_schedule(lr=m.lr, momentum=m.momentum, late_from=m.late_from,
                                 late_lr_factor=m.late_lr_factor,
                                 late_momentum=m.late_momentum)
        self.parts = (Part("mmd", opt, schedule, self.loss),)
        warn_far_scales(targets, m.sigmas, seed=cfg.seed, name=name)
        self.init_best(getattr(m, "select_every", 0), validation)

    @torch.no_grad()
    def validation_score(self) -> tuple[float, dict[str, float]]:
        """Minus the biased MMD^2, under the run's kernels, between ``select_samples``
        samples of a fixed noise stream (every score sees the same prior points) and the
        validation rows."""
        gen, m = self.model.generator, self.settings
        samples = gen(gen.sample_prior(m.select_samples, seeded_rng(0, self.name, "select")))
        d2 = float(mmd2(samples.double(), self.validation.double(), sigmas=list(m.sigmas),
                        weights=None if m.sigma_weights is None else list(m.sigma_weights)))
        return -d2, {"val_mmd2": d2}

    def best_metric(self, score: float) -> float:
        return -score  # logged as the MMD^2 itself

    def state_dict(self) -> dict:
        return {**super().state_dict(), **self.best_state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.load_best_state_dict(state)

    def loss(self, t: int) -> torch.Tensor:
        gen, m = self.model.generator, self.settings
        # Data-parallel: every worker draws the global prior batch and data indices from the
        # same streams and keeps its own rows, so the gathered batches are one process's.
        z = self.shard(gen.sample_prior(m.sample_batch_size, self.rng))
        x = self.gather(gen(z))
        if not bool(torch.isfinite(x).all()):
            # The generator diverged (its weights overflowed): a NaN loss lets the loop say
            # so, where the MMD's input check would blame the samples like bad data.
            return x.new_tensor(float("nan"))
        y = self.gather(self.sampler.next(self.shard))
        return mmd_loss(x, y, sigmas=list(m.sigmas),
                        weights=None if m.sigma_weights is None else list(m.sigma_weights))


class PriorFamily(Family):
    """A family whose model samples from a prior: ``model.sample`` and ``decode_prior``."""

    # Whether the fit check's advice may suggest training with no --preset.
    suggest_no_preset: ClassVar[bool] = True

    def fit_check(self, cfg: TrainConfig, model: nn.Module, train: torch.Tensor,
                  losses: list[float]) -> FitCheck | None:
        """:func:`gmmn.training.auto.check_fit` in the units the model trained in, on a noise
        stream of its own (the training RNGs are untouched)."""
        with torch.no_grad():
            samples = model.sample(CHECK_SAMPLES, generator=seeded_rng(cfg.seed, "fit-check"))
        last = model.autoencoder if model.autoencoder is not None else model.generator
        linear = not last.sigmoid_output  # the layer that writes the samples
        check = check_fit(samples, train, losses, lr=cfg.model.lr,
                          standardize=cfg.standardize, iterations=cfg.model.iterations,
                          linear=linear, suggest_no_preset=self.suggest_no_preset
                          and cfg.preset != "tabular-gmmn")
        if not check.ok and not check.binding:  # else the CLI and GMMN.fit raise on it
            log.warning("training finished, but %s (a run of %d iterations is not expected to "
                        "fit yet: not an error)", check.message(), cfg.model.iterations)
        return check

    def check_data(self, cfg: TrainConfig, info: dict, n_rows: int,
                   device: torch.device) -> None:
        m = cfg.model
        if self.data_space and m.output == "sigmoid" and not info["unit_interval"]:
            fp = info["fingerprint"]
            raise ConfigError(f"--output sigmoid keeps samples in [0, 1] but {cfg.dataset} "
                              f"holds values in [{fp['min']:.4g}, {fp['max']:.4g}]; use --output "
                              f"linear or auto, or rescale the data to [0, 1]")
        check_step_memory(cfg, info["dim"], n_rows, device)
        if not self.sigmoid(cfg, info["unit_interval"]) and m.lr > 0.5:
            log.warning("lr %g with a linear generator output (data outside [0, 1]) tends to "
                        "diverge; consider --lr 0.1", m.lr)

    def sigmoid(self, cfg: TrainConfig, unit_interval: bool) -> bool:
        """Whether the generator ends in a sigmoid for data of this range."""
        return sigmoid_output(cfg.model.output, unit_interval=unit_interval)

    def sampler(self, model: nn.Module, cfg: TrainConfig, info: dict, *, sampling=None,
                rows=None) -> PriorSampler:
        # A prior has no chain: stored chain settings (``sampling``) do not apply to it.
        return PriorSampler(model, info, what=f"this run ({cfg.preset})")


class GMMNFamily(PriorFamily):
    name = "gmmn"
    settings = GMMNSettings
    data_parallel = True
    data_space = True
    label = "the GMMN"
    quick_fields = ("iterations", "late_from")

    def stage_names(self, cfg: TrainConfig) -> list[str]:
        return ["gmmn"]

    def build_model(self, cfg: TrainConfig, data_dim: int, *, unit_interval: bool
                    ) -> GenerativeModel:
        m = cfg.model
        check_weights_fit(layer_weights((m.prior_dim, *m.hidden, data_dim)), preset=cfg.preset,
                          fix=WEIGHTS_FIX)
        rng = torch.Generator().manual_seed(cfg.seed)
        return GenerativeModel(Generator(m.prior_dim, m.hidden, data_dim,
                                         sigmoid_output=self.sigmoid(cfg, unit_interval),
                                         init_std=m.init_std, generator=rng, prior=m.prior,
                                         init_range=m.init_range))

    def build_stage(self, name, model, train, cfg, hooks, *, validation=None):
        return GMMNStage(model, train, cfg, hooks=hooks, validation=validation)

    def check_world(self, cfg: TrainConfig, world_size: int) -> None:
        check_batches_split(cfg, world_size)


def check_batches_split(cfg: TrainConfig, world_size: int) -> None:
    """Refuse GMMN batches that do not split evenly over the data-parallel workers."""
    for name in ("sample_batch_size", "data_batch_size"):
        b = getattr(cfg.model, name)
        if b % world_size:
            lo, hi = b // world_size * world_size, -(-b // world_size) * world_size
            near = f"{lo} or {hi}" if lo else str(hi)
            raise ConfigError(f"{config_flag(name)} {b} does not split evenly over "
                              f"{world_size} workers; use a multiple of {world_size} "
                              f"(e.g. {near})")


def check_step_memory(cfg: TrainConfig, dim: int, n_rows: int, device: torch.device) -> None:
    """A lower bound of one GMMN step, refused before training when it cannot fit: the pooled
    (B + M)^2 float32 kernel matrix and the generator's widest layer for B samples."""
    m = cfg.model
    b = m.sample_batch_size
    d = min(m.data_batch_size, n_rows)
    widest = max((*m.hidden, dim))
    check_fits(4.0 * ((b + d) ** 2 + b * widest), device=device,
               what=f"a step with --sample-batch-size {b} and --data-batch-size {d}",
               fix="use smaller batch sizes")


FAMILY = GMMNFamily()
