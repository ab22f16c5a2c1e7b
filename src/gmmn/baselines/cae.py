"""Contractive autoencoder (Rifai et al. 2011), stacked greedily, with the sampling chain of
Rifai, Bengio, Dauphin & Vincent 2012 ("A Generative Process for Sampling Contractive
Auto-Encoders") run in the top layer's input space and decoded down (Bengio et al. 2013).

One layer, input x (D), code h (H), weights W (D, H):

    h = f(x) = sigmoid(x W + c),        r = g(h) = sigmoid(h W^T + b)   (tied; or h V + b)
    J(x) = dh/dx = diag(h * (1 - h)) W^T                                 (H, D)
    ||J(x)||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2                  (closed form)
    loss = mean_n [ BCE(r_n, x_n) summed over inputs + lambda ||J(x_n)||_F^2 ]

Sampling chain (one transition): h = f(x_t); eps ~ N(0, sigma^2 I_D); x_{t+1} = g(h + J(x_t) eps).
The move in code space has covariance sigma^2 J J^T: large along the directions the CAE
leaves uncontracted (its estimate of the manifold's tangents), small elsewhere. J eps is
computed as h(1-h) * (eps W), without forming J.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gmmn.baselines.chain import ChainSettings, run_chain
from gmmn.errors import ConfigError


class CAE(nn.Module):
    """One sigmoid contractive autoencoder layer, ``n_in`` -> ``n_hidden`` -> ``n_in``.

    Weights U(-a, a) with a = 4 sqrt(6 / (n_in + n_hidden)), the sigmoid form of Glorot &
    Bengio 2010 used by the Montreal autoencoder code of the time; biases 0.
    """

    def __init__(self, n_in: int, n_hidden: int, *, tied: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        a = 4.0 * (6.0 / (n_in + n_hidden)) ** 0.5
        self.weight = nn.Parameter((torch.rand(n_in, n_hidden, generator=generator) * 2 - 1) * a)
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden))
        self.visible_bias = nn.Parameter(torch.zeros(n_in))
        self.tied = tied
        if not tied:
            w = (torch.rand(n_hidden, n_in, generator=generator) * 2 - 1) * a
            self.decoder_weight = nn.Parameter(w)  # (H, D)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x @ self.weight + self.hidden_bias)

    def decode_logits(self, h: torch.Tensor) -> torch.Tensor:
        w = self.weight.T if self.tied else self.decoder_weight
        return h @ w + self.visible_bias

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(h))

    def jacobian_norm2(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """||df/dx||_F^2 per row, shape (N,), in closed form."""
        h = self.encode(x) if h is None else h
        return ((h * (1 - h)) ** 2) @ (self.weight ** 2).sum(0)

    def jacobian_times(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """J(x) eps per row for eps of shape (N, D): h(1-h) * (eps W), shape (N, H)."""
        h = self.encode(x)
        return h * (1 - h) * (eps @ self.weight)


def cae_loss(cae: CAE, x: torch.Tensor, *, contraction: float,
             target: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of summed binary cross-entropy plus ``contraction`` * ||J||_F^2.

    ``target`` defaults to ``x`` (inputs in [0, 1], read as Bernoulli means).
    """
    h = cae.encode(x)
    target = x if target is None else target
    bce = F.binary_cross_entropy_with_logits(cae.decode_logits(h), target, reduction="none")
    return (bce.sum(1) + contraction * cae.jacobian_norm2(x, h)).mean()


def cae_step(cae: CAE, x: torch.Tensor, *, noise_std: float,
             generator: torch.Generator | None) -> torch.Tensor:
    """One transition of the CAE chain: g(f(x) + J(x) eps), eps ~ N(0, noise_std^2 I)."""
    device = generator.device if generator is not None else x.device
    eps = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    return cae.decode(cae.encode(x) + cae.jacobian_times(x, noise_std * eps))


class StackedCAE(nn.Module):
    """CAEs with sizes ``[n_in, h1, h2, ...]``; layer l is trained on ``up(x, l)``."""

    def __init__(self, sizes: list[int] | tuple[int, ...], *, tied: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ConfigError(f"a stacked CAE needs an input size and at least one hidden size; "
                              f"got {list(sizes)}.")
        self.sizes = tuple(int(s) for s in sizes)
        self.layers = nn.ModuleList(CAE(a, b, tied=tied, generator=generator)
                                    for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))

    def up(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """Input of layer ``level``: ``x`` encoded by layers 0..level-1."""
        if not 0 <= level < len(self.layers):
            raise ConfigError(f"level must be in [0, {len(self.layers) - 1}]; got {level}.")
        for layer in self.layers[:level]:
            x = layer.encode(x)
        return x

    def down(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """Map a point in layer ``level``'s input space to pixels with decoders level-1..0."""
        for layer in reversed(self.layers[:level]):
            x = layer.decode(x)
        return x

    @torch.no_grad()
    def sample(self, n_samples: int, *, init: torch.Tensor, noise_std: float = 1.0,
               burn_in: int = 0, thin: int = 1, level: int | None = None,
               generator: torch.Generator | None) -> torch.Tensor:
        """Run the CAE chain of layer ``level`` (default: the top) in its input space from
        the up-pass of ``init`` (chains, n_in) and decode every kept state to pixels.

        ``noise_std`` is sigma of the chain; its default is a choice, not a source value
        (docs/baselines.md), and is meant to be picked on validation data.
        """
        level = len(self.layers) - 1 if level is None else level
        if init.dim() != 2 or init.shape[1] != self.sizes[0]:
            raise ConfigError(f"init must have shape (chains, {self.sizes[0]}); got "
                              f"{tuple(init.shape)}.")
        if noise_std < 0:
            raise ConfigError(f"noise_std must be >= 0; got {noise_std}.")
        settings = ChainSettings(chains=init.shape[0], burn_in=burn_in, thin=thin)
        layer = self.layers[level]

        def step(x):
            return cae_step(layer, x, noise_std=noise_std, generator=generator)

        return run_chain(step, self.up(init, level), lambda x: self.down(x, level), n_samples,
                         settings)
