"""How samples are drawn, apart from how a model was trained.

* :class:`SamplingConfig`: the settings of a Markov-chain sampler (the DBN, stacked CAE and
  deep GSN rows sample by their own chains). A run stores the preset's values with its
  config; ``gmmn sample`` and ``gmmn evaluate`` may draw with others without touching the
  training config.
* :class:`Sampler`: what evaluation and sampling code ask of any source of samples: a prior
  sampler (GMMN, GMMN+AE, GAN), a chain sampler (the baselines) or a GMMN+AE's
  reconstructions. Each family builds its own (:mod:`gmmn.families`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gmmn.config import COUNT, NONNEGATIVE, POSITIVE_INT, Settings, flag, setting
from gmmn.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

CHAIN_NOISE_SPACES = ("hidden", "input")
SAMPLE_SEEDS = 2**64  # torch.Generator.manual_seed takes 0 .. 2**64 - 1


@dataclass(frozen=True)
class SamplingConfig(Settings):
    """A Markov chain's sampling settings; defaults: the deep GSN's released sampler (one
    chain, no burn-in, consecutive states). Flags of gmmn train, sample and evaluate."""

    chains: int = setting(1, "baseline sampling: chains run side by side, each from a "
                             "training row", POSITIVE_INT)
    burn_in: int = setting(0, "baseline sampling: transitions before the first kept state",
                           COUNT)
    thin: int = setting(1, "baseline sampling: keep every N-th state (1: consecutive states)",
                        POSITIVE_INT)
    # stacked CAE: sigma of the chain's noise
    chain_noise: float = setting(1.0, "scae sampling: std of the chain's Gaussian noise "
                                      "(sigma)", NONNEGATIVE)
    chain_noise_space: str = setting("hidden",
                                     "scae sampling: noise in hidden space (J J^T alpha, "
                                     "released code) or input space (J eps)")

    def check(self) -> None:
        if self.chain_noise_space not in CHAIN_NOISE_SPACES:
            raise ConfigError(f"unknown --chain-noise-space {self.chain_noise_space!r}; choose "
                              f"one of {CHAIN_NOISE_SPACES}")


CHAIN_FIELDS = SamplingConfig.names()


@runtime_checkable
class Sampler(Protocol):
    """A source of samples in data units: ``sample(n, seed=s)`` gives the same (n, D) rows
    for the same seed. ``prior_dim`` is None where there is no prior to walk across (a
    Markov chain); ``settings`` holds the chain settings the samples depend on (None for a
    prior); ``with_settings`` draws with other chain settings."""

    prior_dim: int | None
    settings: SamplingConfig | None
    tunable_noise: bool  # whether with_settings(chain_noise=...) changes the samples

    def sample(self, n: int, *, seed: int | None = None) -> torch.Tensor:
        """Prior samplers also take ``qmc=True`` (randomised Sobol' prior points); the
        others refuse it (:func:`refuse_qmc`)."""
        ...

    def decode_prior(self, z: torch.Tensor) -> torch.Tensor: ...

    def with_settings(self, **changes) -> Sampler: ...


def refuse_settings(changes: dict, what: str) -> None:
    """The error of a sampler that has no chain to set (a prior, reconstructions)."""
    given = [flag(k) for k, v in changes.items() if v is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} set a baseline's Markov chain, but {what}; "
                          f"drop them")


def refuse_qmc(qmc: bool, what: str) -> None:
    """The error of a sampler with no prior to feed Sobol' points (a chain, reconstructions)."""
    if qmc:
        raise ConfigError(f"qmc=True (--qmc) feeds Sobol' points to a generator's prior, but "
                          f"{what}; drop qmc / --qmc")


def sample_generator(n: int, seed: int | None) -> torch.Generator | None:
    """The generator of a ``sample(n, seed=...)`` call, after checking ``n`` and ``seed``
    (whole numbers; numpy integers too)."""
    import torch

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


class FunctionSampler:
    """Any source of samples as a :class:`Sampler`: ``fn(n, seed=s)`` returns (n, D) rows in
    data units (a tensor or an array). ``decode`` maps (k, prior_dim) prior points to rows,
    where there is a prior. What :func:`gmmn.evaluate.evaluate_run` needs to score samples
    made elsewhere (another library's model, held-out data)."""

    settings = None
    tunable_noise = False

    def __init__(self, fn: Callable[..., torch.Tensor], *, prior_dim: int | None = None,
                 decode: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.fn, self.prior_dim, self.decode = fn, prior_dim, decode

    def sample(self, n: int, *, seed: int | None = None, qmc: bool = False) -> torch.Tensor:
        if qmc:  # passed on only when asked: fn may not know the keyword
            return self.fn(n, seed=seed, qmc=True)
        return self.fn(n, seed=seed)

    def decode_prior(self, z: torch.Tensor) -> torch.Tensor:
        if self.decode is None:
            raise DataError("this sampler has no prior to decode")
        return self.decode(z)

    def with_settings(self, **changes) -> FunctionSampler:
        refuse_settings(changes, "this sampler has no chain")
        return self
