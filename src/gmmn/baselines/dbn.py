"""Deep belief network: RBMs trained greedily, one layer at a time, sampled by block Gibbs in
the top RBM followed by one directed down-pass (Hinton, Osindero & Teh 2006).

Layer l (from 0) is an RBM whose visible layer is the hidden layer of RBM l-1. Greedy
training fits RBM l to ``dbn.up(x, l)``: the data pushed through the RBMs below as
probabilities p(h|v) (mean-field, as in Hinton & Salakhutdinov's released code).

Generation: run the top RBM's Gibbs chain; from each kept state take its visible (binary)
layer, which lives in the space of the layer below, and go down through the lower RBMs with
p(v|h): intermediate layers are sampled, the pixel layer is returned as probabilities (the
real-valued rows a Parzen window over grey MNIST is fitted to).
"""

from __future__ import annotations

import torch
from torch import nn

from gmmn.baselines.chain import ChainSettings, run_chain
from gmmn.baselines.rbm import RBM, bernoulli
from gmmn.errors import ConfigError


class DBN(nn.Module):
    """A stack of RBMs with sizes ``[n_visible, h1, h2, ...]``."""

    def __init__(self, sizes: list[int] | tuple[int, ...], *, init_std: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ConfigError(f"a DBN needs a visible size and at least one hidden size; got "
                              f"{list(sizes)}.")
        self.sizes = tuple(int(s) for s in sizes)
        self.rbms = nn.ModuleList(RBM(a, b, init_std=init_std, generator=generator)
                                  for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))

    @property
    def top(self) -> RBM:
        return self.rbms[-1]

    def up(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """The training data of RBM ``level``: ``x`` through RBMs 0..level-1 as p(h|v)."""
        if not 0 <= level < len(self.rbms):
            raise ConfigError(f"level must be in [0, {len(self.rbms) - 1}]; got {level}.")
        for rbm in self.rbms[:level]:
            x = rbm.hidden_prob(x)
        return x

    def down(self, v_top: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Directed pass from the top RBM's visible layer to pixel probabilities."""
        x = v_top
        lower = list(self.rbms[:-1])
        if not lower:
            return x
        for i, rbm in enumerate(reversed(lower)):
            p = rbm.visible_prob(x)
            x = p if i == len(lower) - 1 else bernoulli(p, generator)
        return x

    @torch.no_grad()
    def sample(self, n_samples: int, *, init: torch.Tensor, burn_in: int = 0, thin: int = 1,
               generator: torch.Generator | None) -> torch.Tensor:
        """Samples from the DBN's own chain. ``init`` (chains, n_visible) are data rows
        whose up-pass starts each top chain (the row count is the number of chains).

        Each kept step emits the down-pass of the top RBM's visible layer; with a single
        RBM it emits p(v|h) of that step instead. Defaults: see docs/baselines.md.
        """
        if init.dim() != 2 or init.shape[1] != self.sizes[0]:
            raise ConfigError(f"init must have shape (chains, {self.sizes[0]}); got "
                              f"{tuple(init.shape)}.")
        settings = ChainSettings(chains=init.shape[0], burn_in=burn_in, thin=thin)
        top = self.top
        start = (bernoulli(self.up(init, len(self.rbms) - 1), generator), None)

        def step(state):
            return top.gibbs_step(state[0], generator)

        def emit(state):
            if len(self.rbms) == 1:
                return top.visible_prob(state[1])
            return self.down(state[0], generator)

        return run_chain(step, start, emit, n_samples, settings)
