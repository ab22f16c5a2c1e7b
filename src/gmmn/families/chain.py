"""What the DBN, stacked CAE and deep GSN rows share: settings, a model wrapper that samples
by its own Markov chain, the stage base, and the chain sampler (recipes in
docs/baselines.md).

The chains start from rows of the TRAINING split (never the test split), drawn by the
sampling seed: the source procedures started from data rows (the GSN's sampler from one
salt-and-pepper-corrupted digit), and a test row among the starts would let the Parzen window
see a test image. Validation and test sets of the Parzen protocol use different seeds, hence
different chains from different starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from gmmn.config import COUNT, MOMENTUM, POSITIVE, POSITIVE_INT, Settings, TrainConfig, setting
from gmmn.config import flag as config_flag
from gmmn.data.splits import fingerprint
from gmmn.errors import ConfigError, DataError
from gmmn.families.base import Family, check_sample_memory
from gmmn.sampling import SamplingConfig, refuse_qmc, sample_generator
from gmmn.training.blocks import BatchSampler, SampledStage, encode_rows, seeded_rng
from gmmn.training.optim import Schedule


@dataclass(frozen=True)
class BaselineSettings(Settings):
    """Settings every Markov-chain baseline has. ``iterations`` is per greedy layer for the
    DBN and the stacked CAE, in all for the GSN."""

    baseline_hidden: tuple[int, ...] = setting((1000, 1000), "baseline hidden layer sizes, "
                                                             "comma-separated (dbn, scae: one "
                                                             "per greedy stage)", POSITIVE_INT)
    iterations: int = setting(40000, "iterations (dbn, scae: per layer; gsn: in all)",
                              POSITIVE_INT)
    lr: float = setting(2.0, "learning rate", POSITIVE)
    momentum: float = setting(0.9, "momentum", MOMENTUM)
    data_batch_size: int = setting(1000, "minibatch size", POSITIVE_INT)
    # 0: constant lr
    anneal_every: int = setting(0, "baselines: multiply lr by --anneal-factor every N "
                                   "iterations (0: never)", COUNT)
    anneal_factor: float = setting(1.0, "baselines: lr factor applied every --anneal-every "
                                        "iterations", (0, 1, False, True))

    def check(self) -> None:
        if not self.baseline_hidden:
            raise ConfigError(f"{config_flag('baseline_hidden')} needs at least one value")


def annealed(*, lr: float, momentum: float, every: int, factor: float) -> Schedule:
    """lr * factor^floor((t - 1) / every) at iteration t (from 1); constant when every is 0.

    The GSN code multiplied its lr by 0.995 after every epoch: ``every`` = batches per epoch.
    """

    def schedule(t: int) -> tuple[float, float]:
        if not every:
            return lr, momentum
        return lr * factor ** ((t - 1) // every), momentum

    return schedule


class ChainModel(nn.Module):
    """A baseline's network ``net`` as a run's model. It has no prior (``prior_dim`` is
    None), so nothing interpolates between prior points; each family's subclass runs the
    chain in :meth:`chain_sample`."""

    prior_dim = None
    autoencoder = None
    discriminator = None

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @property
    def depth(self) -> int:
        return len(self.net.sizes) - 1

    def chain_sample(self, n: int, *, starts: torch.Tensor, sampling: SamplingConfig,
                     generator: torch.Generator, level: int | None = None) -> torch.Tensor:
        """``n`` rows (n, D) from the chain started at ``starts`` (chains, D), with the
        burn-in, thinning (and CAE noise) of ``sampling``. ``level`` (greedy stages'
        pictures): sample from the stack's layers 0..level only."""
        raise NotImplementedError


def chain_starts(train: torch.Tensor, chains: int, generator: torch.Generator) -> torch.Tensor:
    """``chains`` random training rows (with repeats only when there are more chains than
    rows), drawn from ``generator``."""
    if train.ndim != 2 or len(train) == 0:
        raise DataError("a baseline's chains start from training rows, but none were given")
    if chains <= len(train):
        idx = torch.randperm(len(train), generator=generator)[:chains]
    else:
        idx = torch.randint(len(train), (chains,), generator=generator)
    return train[idx.to(train.device)]


class ChainStage(SampledStage):
    """One optimiser, a batch sampler, one noise generator, and progress pictures drawn from
    the model's chain (started at training rows) up to this stage's layer."""

    level: int | None = None

    def __init__(self, name: str, model: ChainModel, data: torch.Tensor,
                 inputs: torch.Tensor, cfg: TrainConfig) -> None:
        m = cfg.model
        self.name, self.iterations = name, m.iterations
        self.model, self.data, self.settings, self.sampling = model, data, m, cfg.sampling
        self.rng = seeded_rng(cfg.seed, name, "noise")
        self.sampler = BatchSampler(inputs, m.data_batch_size, seeded_rng(cfg.seed, name, "data"))
        self.schedule = annealed(lr=m.lr, momentum=m.momentum, every=m.anneal_every,
                                 factor=m.anneal_factor)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        starts = chain_starts(self.data, self.sampling.chains, generator)
        return self.model.chain_sample(n, starts=starts, sampling=self.sampling,
                                       generator=generator, level=self.level)


class GreedyStage(ChainStage):
    """Layer ``level`` of a stack trained greedily (DBN, stacked CAE), on the up-pass of the
    data through the layers below it; named ``<prefix>-<level + 1>``."""

    prefix: str

    def __init__(self, model: ChainModel, level: int, data: torch.Tensor,
                 cfg: TrainConfig) -> None:
        net = model.net
        inputs = data if level == 0 else encode_rows(lambda x: net.up(x, level), data)
        super().__init__(f"{self.prefix}-{level + 1}", model, data, inputs, cfg)
        self.level = level


class ChainFamily(Family):
    """A baseline that models pixels in [0, 1] as Bernoulli means and samples by its chain."""

    quick_fields = ("iterations", "anneal_every")
    samples_by_chain = True

    def build_model(self, cfg: TrainConfig, data_dim: int, *, unit_interval: bool
                    ) -> ChainModel:
        if cfg.standardize:
            raise ConfigError(f"{self.label} models pixels in [0, 1] as Bernoulli means; drop "
                              f"--standardize")
        if not unit_interval:
            raise ConfigError(f"{self.label} models pixels in [0, 1] as Bernoulli means, but "
                              f"{cfg.dataset} holds values outside [0, 1]; rescale it")
        rng = torch.Generator().manual_seed(cfg.seed)
        return self.make_model(cfg, (data_dim, *cfg.model.baseline_hidden), rng)

    def make_model(self, cfg: TrainConfig, sizes: tuple[int, ...],
                   rng: torch.Generator) -> ChainModel:
        raise NotImplementedError

    def sampler(self, model: nn.Module, cfg: TrainConfig, info: dict, *, sampling=None,
                rows=None) -> ChainSampler:
        return ChainSampler(model, info, cfg.sampling if sampling is None else sampling,
                            rows, tunable_noise=self.tunable_noise)


class ChainSampler:
    """Samples of a baseline by its own chain, started at training rows picked by the seed,
    with the burn-in, thinning (and CAE noise) of ``settings``."""

    prior_dim = None

    def __init__(self, model: ChainModel, info: dict, settings: SamplingConfig,
                 rows: torch.Tensor | Callable[[], torch.Tensor] | None, *,
                 tunable_noise: bool) -> None:
        self.model, self.info, self.settings = model, info, settings
        self.tunable_noise = tunable_noise
        self._rows, self._checked = rows, False

    def with_settings(self, **changes) -> ChainSampler:
        given = {k: v for k, v in changes.items() if v is not None}
        if not given:
            return self
        out = ChainSampler(self.model, self.info, replace(self.settings, **given), self._rows,
                           tunable_noise=self.tunable_noise)
        out._checked = self._checked
        return out

    def use_rows(self, train: torch.Tensor) -> ChainSampler:
        """Start the chains from ``train`` (the run's training split, already loaded), after
        checking that it is the data the run was trained on."""
        self._rows, self._checked = train, False
        return self

    def rows(self) -> torch.Tensor:
        if self._rows is None:
            raise DataError("a baseline's chains start from training rows, but none were given")
        if callable(self._rows):
            self._rows = self._rows()
        if self._checked:
            return self._rows
        stored = self.info.get("fingerprint")
        train = self._rows
        if stored is not None and fingerprint(train)["sha256"] != stored["sha256"]:
            raise DataError(f"a baseline's chains start from its training rows, but the data "
                            f"given is not the {self.info.get('name')} training split the run "
                            f"was trained on; pass that dataset (and --data-dir)")
        self._rows, self._checked = train.to(torch.float32), True
        return self._rows

    def decode_prior(self, z: torch.Tensor) -> torch.Tensor:
        raise DataError("a baseline has no prior to decode; it samples by its own Markov "
                        "chain (sample)")

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, qmc: bool = False) -> torch.Tensor:
        refuse_qmc(qmc, "this baseline samples by its own Markov chain, which has no prior")
        gen = sample_generator(n, seed)
        device = next(self.model.parameters()).device
        check_sample_memory(self.model, n, int(self.info["dim"]), device)
        if gen is None:  # no seed: a fresh stream, as the prior's sampling does
            gen = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        starts = chain_starts(self.rows(), self.settings.chains, gen).to(device)
        return self.model.chain_sample(n, starts=starts, sampling=self.settings, generator=gen)
