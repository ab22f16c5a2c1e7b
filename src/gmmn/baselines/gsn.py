"""Deep generative stochastic network trained with walkback (Bengio, Thibodeau-Laufer, Alain
& Yosinski, ICML 2014), following the released code (github.com/yaoli/GSN, ``model.py``).

Layers h_0 = x (visible, sigmoid) and h_1..h_K (tanh), weights W_i between h_i and h_{i+1}.
One transition updates the odd layers, then the even ones (as a Gibbs sweep of a deep
Boltzmann machine would), each from its neighbours' current values:

    h_i  <- act(h_{i-1} W_{i-1} + h_{i+1} W_i^T + b_i + n_pre) + n_post   (i >= 1; the
            h_{i+1} term is absent for i = K; n ~ N(0, hidden_noise_std^2), none on h_1 when
            noiseless_h1)
    p    <- sigmoid(h_1 W_0^T + b_0)                 (the reconstruction p(x | h_1))
    h_0  <- salt_and_pepper(bernoulli(p), input_noise)   (bernoulli only if input_sampling)

Walkback training: corrupt the data x with salt-and-pepper noise, start the hidden layers at
0, make ``walkbacks`` transitions and sum the reconstruction costs of all of them against
the clean x, so the number of terms is ``walkbacks``. Sampled and salt-and-pepper steps pass
no gradient; the Gaussian noise is additive and does.

Sampling runs the same transition and keeps p, the visible expectation, of each kept step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gmmn.baselines.chain import ChainSettings, run_chain
from gmmn.baselines.rbm import bernoulli
from gmmn.errors import ConfigError

ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


def salt_and_pepper(x: torch.Tensor, p: float, generator: torch.Generator | None
                    ) -> torch.Tensor:
    """Replace each entry, with probability ``p``, by a fair coin flip (0 or 1)."""
    if p == 0:
        return x
    keep = bernoulli(torch.full_like(x, 1.0 - p), generator)
    coin = bernoulli(torch.full_like(x, 0.5), generator)
    return x * keep + (1 - keep) * coin


class GSN(nn.Module):
    """Deep GSN with layer sizes ``[n_visible, h_1, ..., h_K]``.

    Defaults are those of the released MNIST script (``run_dsn.py``): two tanh layers of
    1500, salt-and-pepper 0.4 on the visible layer, Gaussian noise of std 2 before and after
    the activation of every hidden layer but the first, a binary sample of the visible
    layer inside the chain. Weights U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), biases 0
    (``model.py``).
    """

    def __init__(self, sizes: list[int] | tuple[int, ...] = (784, 1500, 1500), *,
                 activation: str = "tanh", input_noise: float = 0.4,
                 hidden_noise_std: float = 2.0, noiseless_h1: bool = True,
                 input_sampling: bool = True, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ConfigError(f"a GSN needs a visible size and at least one hidden size; got "
                              f"{list(sizes)}.")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}; got "
                              f"{activation!r}.")
        if not 0 <= input_noise <= 1 or hidden_noise_std < 0:
            raise ConfigError(f"input_noise must be in [0, 1] and hidden_noise_std >= 0; got "
                              f"{input_noise} and {hidden_noise_std}.")
        self.sizes = tuple(int(s) for s in sizes)
        self.activation = activation
        self.input_noise, self.hidden_noise_std = input_noise, hidden_noise_std
        self.noiseless_h1, self.input_sampling = noiseless_h1, input_sampling
        weights = []
        for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            bound = (6.0 / (a + b)) ** 0.5
            weights.append(nn.Parameter((torch.rand(a, b, generator=generator) * 2 - 1) * bound))
        self.weights = nn.ParameterList(weights)  # W_i: (sizes[i], sizes[i+1])
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(s)) for s in self.sizes)

    @property
    def depth(self) -> int:
        """K, the number of hidden layers."""
        return len(self.sizes) - 1

    def _noise(self, a: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.hidden_noise_std == 0:
            return a
        device = generator.device if generator is not None else a.device
        n = torch.randn(a.shape, generator=generator, device=device, dtype=a.dtype)
        return a + self.hidden_noise_std * n.to(a.device)

    def _update_layer(self, h: list[torch.Tensor], i: int, generator: torch.Generator | None
                      ) -> torch.Tensor | None:
        """Recompute layer i in place; return p(x | h_1) when i == 0."""
        if i == 0:
            p = torch.sigmoid(h[1] @ self.weights[0].T + self.biases[0])
            x = bernoulli(p, generator) if self.input_sampling else p
            h[0] = salt_and_pepper(x, self.input_noise, generator)
            return p
        a = h[i - 1] @ self.weights[i - 1] + self.biases[i]
        if i < self.depth:
            a = a + h[i + 1] @ self.weights[i].T
        noisy = not (i == 1 and self.noiseless_h1)
        if noisy:
            a = self._noise(a, generator)
        out = ACTIVATIONS[self.activation](a)
        h[i] = self._noise(out, generator) if noisy else out
        return None

    def transition(self, h: list[torch.Tensor], generator: torch.Generator | None
                   ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One chain step: odd layers, then even layers. Returns (new layers, p(x | h_1))."""
        h = list(h)
        for i in range(1, self.depth + 1, 2):
            self._update_layer(h, i, generator)
        p = None
        for i in range(0, self.depth + 1, 2):
            out = self._update_layer(h, i, generator)
            p = out if out is not None else p
        return h, p

    def initial_state(self, x: torch.Tensor, generator: torch.Generator | None
                      ) -> list[torch.Tensor]:
        """Corrupted visible layer and zero hidden layers, as the released code starts."""
        zeros = [x.new_zeros(x.shape[0], s) for s in self.sizes[1:]]
        return [salt_and_pepper(x, self.input_noise, generator), *zeros]

    @torch.no_grad()
    def sample(self, n_samples: int, *, init: torch.Tensor, burn_in: int = 0, thin: int = 1,
               generator: torch.Generator | None) -> torch.Tensor:
        """Run the chain from ``init`` (chains, n_visible), keeping p(x | h_1) of each kept
        step. Defaults follow the released sampler: consecutive states, no burn-in (it
        also started from one test digit, i.e. one chain; see docs/baselines.md)."""
        if init.dim() != 2 or init.shape[1] != self.sizes[0]:
            raise ConfigError(f"init must have shape (chains, {self.sizes[0]}); got "
                              f"{tuple(init.shape)}.")
        settings = ChainSettings(chains=init.shape[0], burn_in=burn_in, thin=thin)
        start = (self.initial_state(init, generator), None)

        def step(state):
            return self.transition(state[0], generator)

        return run_chain(step, start, lambda state: state[1], n_samples, settings)


RECONSTRUCTION = {
    # the ICML code's cost: mean binary cross-entropy over rows and pixels
    "bce": lambda p, x: F.binary_cross_entropy(p, x),
    # a later commit of model.py switched to the mean squared error
    "mse": lambda p, x: F.mse_loss(p, x),
}


def walkback_loss(gsn: GSN, x: torch.Tensor, *, walkbacks: int = 4, cost: str = "bce",
                  generator: torch.Generator | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Walkback cost of one minibatch: (sum of the terms, the ``walkbacks`` terms).

    ``walkbacks=4`` is the released MNIST setting (``run_dsn.py``, ``N = 4`` with K = 2).
    """
    if walkbacks < 1:
        raise ConfigError(f"walkbacks must be at least 1; got {walkbacks}.")
    if cost not in RECONSTRUCTION:
        raise ConfigError(f"cost must be one of {sorted(RECONSTRUCTION)}; got {cost!r}.")
    h = gsn.initial_state(x, generator)
    terms = []
    for _ in range(walkbacks):
        h, p = gsn.transition(h, generator)
        terms.append(RECONSTRUCTION[cost](p, x))
    return torch.stack(terms).sum(), terms
