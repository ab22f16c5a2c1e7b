"""Collecting samples from a model's own Markov chain, with the chain settings made explicit.

Every baseline here (RBM, DBN, stacked CAE, GSN) draws its Parzen samples by running a
transition operator, not by pushing prior noise through a network. What the source papers
did for their numbers differs in three settings, which are therefore keywords everywhere:

* ``chains``: how many independent chains run side by side (the batch dimension);
* ``burn_in``: transitions made before the first state is kept;
* ``thin``: keep every ``thin``-th state after burn-in (``thin=1`` keeps consecutive states).

After burn-in the chain makes ``thin`` transitions, keeps the state of every chain, and
repeats until ``n_samples`` rows are kept; rows are ordered by step, then by chain. The
number of transitions made is therefore ``burn_in + thin * ceil(n_samples / chains)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gmmn.errors import ConfigError


@dataclass(frozen=True)
class ChainSettings:
    """How a sampler runs its chain; see the module docstring.

    The defaults copy the deep GSN's released sampler (yaoli/GSN ``model.py``,
    ``sample_some_numbers``): one chain, no burn-in, every consecutive state kept.
    """

    chains: int = 1  # one chain: the GSN code's Parzen samples came from a single chain
    burn_in: int = 0  # the GSN code kept states from the first transition on
    thin: int = 1  # consecutive states, as in the GSN code

    def __post_init__(self) -> None:
        if self.chains < 1 or self.thin < 1 or self.burn_in < 0:
            raise ConfigError(
                f"chain settings need chains >= 1, thin >= 1 and burn_in >= 0; got "
                f"chains={self.chains}, thin={self.thin}, burn_in={self.burn_in}.")

    def transitions(self, n_samples: int) -> int:
        """Transitions a run that keeps ``n_samples`` rows makes."""
        return self.burn_in + self.thin * math.ceil(n_samples / self.chains)


def run_chain(step: Callable[[object], object], state: object, emit: Callable[[object],
              torch.Tensor], n_samples: int, settings: ChainSettings) -> torch.Tensor:
    """Run ``state <- step(state)`` and keep ``emit(state)`` (one row per chain) as set.

    ``state`` is whatever the model's chain carries (a tensor, or a list of layer tensors);
    ``emit`` maps it to the visible rows, shape ``(chains, D)``. Returns ``(n_samples, D)``.
    """
    if n_samples < 1:
        raise ConfigError(f"n_samples must be at least 1; got {n_samples}.")
    for _ in range(settings.burn_in):
        state = step(state)
    kept: list[torch.Tensor] = []
    rows = 0
    while rows < n_samples:
        for _ in range(settings.thin):
            state = step(state)
        out = emit(state)
        kept.append(out)
        rows += out.shape[0]
    return torch.cat(kept)[:n_samples]
