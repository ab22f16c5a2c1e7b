"""A trained baseline as a run's model: the network a config describes, and sampling by its
own Markov chain with the chain settings of the config (``chains``, ``burn_in``, ``thin``,
``chain_noise``, ``chain_noise_space``).

The chains start from rows of the TRAINING split (never the test split), drawn by the
sampling seed: the source procedures started from data rows (the GSN's sampler from one
salt-and-pepper-corrupted digit), and a test row among the starts would let the Parzen window
see a test image. Validation and test sets of the Parzen protocol use different seeds, hence
different chains from different starts.
"""

from __future__ import annotations

import torch
from torch import nn

from gmmn.baselines.cae import StackedCAE
from gmmn.baselines.dbn import DBN
from gmmn.baselines.gsn import GSN
from gmmn.config import TrainConfig
from gmmn.errors import ConfigError, DataError

RBM_INIT_STD = 0.01  # Hinton's practical guide; used when --init-std is none


class BaselineModel(nn.Module):
    """``net`` is a :class:`DBN`, :class:`StackedCAE` or :class:`GSN` (``kind`` says which).

    It has no prior (``prior_dim`` is None), so nothing interpolates between prior points.
    """

    prior_dim = None
    autoencoder = None
    discriminator = None

    def __init__(self, kind: str, net: nn.Module) -> None:
        super().__init__()
        self.kind, self.net = kind, net

    @property
    def depth(self) -> int:
        return len(self.net.sizes) - 1

    @torch.no_grad()
    def chain_sample(self, n: int, *, starts: torch.Tensor, cfg: TrainConfig,
                     generator: torch.Generator, level: int | None = None) -> torch.Tensor:
        """``n`` rows (n, D) from the chain started at ``starts`` (chains, D), with the
        burn-in, thinning and CAE noise of ``cfg``. ``level`` (greedy stages' pictures):
        sample from the stack's layers 0..level only."""
        top = self.depth - 1 if level is None else level
        kw = {"init": starts, "burn_in": cfg.burn_in, "thin": cfg.thin, "generator": generator}
        if self.kind == "gsn":
            return self.net.sample(n, **kw)
        if self.kind == "scae":
            return self.net.sample(n, noise_std=cfg.chain_noise, noise=cfg.chain_noise_space,
                                   level=top, **kw)
        dbn = self.net if top == self.depth - 1 else _truncated(self.net, top)
        return dbn.sample(n, **kw)


def _truncated(dbn: DBN, top: int) -> DBN:
    """A DBN made of RBMs 0..top of ``dbn`` (the same parameters, not copies)."""
    sub = DBN.__new__(DBN)
    nn.Module.__init__(sub)
    sub.sizes = dbn.sizes[:top + 2]
    sub.rbms = nn.ModuleList(dbn.rbms[:top + 1])
    return sub


def build_baseline(cfg: TrainConfig, data_dim: int, *, unit_interval: bool) -> BaselineModel:
    """The baseline ``cfg.baseline`` for data of dimension ``data_dim``; its weights are drawn
    from a generator seeded with ``cfg.seed``."""
    if cfg.standardize:
        raise ConfigError(f"the {cfg.baseline} baseline models pixels in [0, 1] as Bernoulli "
                          f"means; drop --standardize")
    if not unit_interval:
        raise ConfigError(f"the {cfg.baseline} baseline models pixels in [0, 1] as Bernoulli "
                          f"means, but {cfg.dataset} holds values outside [0, 1]; rescale it")
    rng = torch.Generator().manual_seed(cfg.seed)
    sizes = (data_dim, *cfg.baseline_hidden)
    if cfg.baseline == "dbn":
        std = RBM_INIT_STD if cfg.init_std is None else cfg.init_std
        net: nn.Module = DBN(sizes, init_std=std, generator=rng)
    elif cfg.baseline == "scae":
        net = StackedCAE(sizes, generator=rng)
    elif cfg.baseline == "gsn":
        net = GSN(sizes, input_noise=cfg.gsn_input_noise,
                  hidden_noise_std=cfg.gsn_hidden_noise, generator=rng)
    else:
        raise ConfigError(f"unknown baseline {cfg.baseline!r}")
    return BaselineModel(cfg.baseline, net)


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
