"""The paper's networks: the GMMN generator and the GMMN+AE autoencoder.

Randomness never comes from the global RNG: the prior and the dropout masks take an explicit
``torch.Generator`` so that a checkpoint can capture and restore it (bit-identical resume).

Generator (Li et al. 2015, Sec. 4): z ~ U[-1, 1]^prior_dim, then ReLU layers
(10-64-256-256-1024 in the paper) and a sigmoid output of the data or code size (linear for
data that is not confined to [0, 1]).

Autoencoder: sigmoid encoder layers with dropout on each layer's input and a mirrored sigmoid
decoder. ``released_dropout=True`` copies the released code: dropout masks are NOT rescaled
by 1/(1-p) (neither in training nor at test) and, when layer-wise pretraining ends, the
encoder weights are divided by (1-p) (see :meth:`Autoencoder.released_rescale`).
``released_dropout=False`` is standard inverted dropout and copies the weights unchanged.

Discriminator (GAN baseline, Goodfellow et al. 2014, MNIST): maxout hidden layers (240 units
of 5 pieces twice in the GAN paper) with inverted dropout on each layer's input and one
output logit; weights uniform in +-0.005, biases 0 (pylearn2's ``irange`` of that model).
"""

from __future__ import annotations

import torch
from torch import nn

from gmmn.memory import check_fits


def init_linear(layer: nn.Linear, std: float | None, generator: torch.Generator | None, *,
                bound: float | None = None) -> None:
    """Released-code initialisation: weights std * N(0, 1), biases 0.

    ``std=None`` gives PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
    biases, but drawn from ``generator`` so that a seed fixes it. ``bound``: weights
    U(-bound, bound) and biases 0 instead (pylearn2's ``irange``, the GAN paper's networks).
    """
    with torch.no_grad():
        if bound is not None:
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.zero_()
        elif std is None:
            bound = layer.in_features ** -0.5
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
        else:
            layer.weight.normal_(0.0, std, generator=generator)
            layer.bias.zero_()


def dropout(x: torch.Tensor, p: float, generator: torch.Generator | None, *,
            rescale: bool) -> torch.Tensor:
    """Drop each entry with probability ``p``; identity when ``generator`` is None (test).

    The mask is drawn on the CPU from ``generator`` so its state can be checkpointed.
    """
    if generator is None or p == 0:
        return x
    keep = torch.rand(x.shape, generator=generator).ge_(p).to(device=x.device, dtype=x.dtype)
    return x * keep / (1.0 - p) if rescale else x * keep


PRIORS = ("uniform", "normal")


def draw_prior(n: int, dim: int, prior: str, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """n pseudo-random points (n, dim) of ``prior`` on the CPU: N(0, I) for "normal", else
    the paper's uniform on [-1, 1]^dim."""
    if prior == "normal":
        return torch.randn(n, dim, generator=generator)
    return torch.rand(n, dim, generator=generator) * 2 - 1


class Generator(nn.Module):
    """MLP from the prior to data (or code) space.

    The prior is the paper's uniform on [-1, 1]^prior_dim, or N(0, I) (``prior="normal"``, the
    GAN paper's generator noise)."""

    def __init__(self, prior_dim: int, hidden: tuple[int, ...], out_dim: int, *,
                 sigmoid_output: bool, init_std: float | None,
                 generator: torch.Generator | None = None, prior: str = "uniform",
                 init_range: float | None = None) -> None:
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {PRIORS}")
        self.prior_dim = prior_dim
        self.out_dim = out_dim
        self.sigmoid_output = sigmoid_output
        self.prior = prior
        sizes = (prior_dim, *hidden, out_dim)
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        for layer in self.layers:
            init_linear(layer, init_std, generator, bound=init_range)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n prior points (n, prior_dim), drawn on the CPU, moved to the model's device."""
        return draw_prior(n, self.prior_dim, self.prior, generator).to(
            self.layers[0].weight.device)

    @torch.no_grad()
    def init_output_bias(self, marginals: torch.Tensor) -> None:
        """Output biases b with sigmoid(b) = the data's per-feature means, clipped to
        [1e-7, 1 - 1e-7] (pylearn2's ``init_sigmoid_bias_from_marginals``, which the GAN
        paper's MNIST generator used)."""
        p = marginals.double().clamp(1e-7, 1 - 1e-7)
        self.layers[-1].bias.copy_(torch.log(p / (1 - p)).to(self.layers[-1].bias))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        out = self.layers[-1](h)  # (n, out_dim)
        return torch.sigmoid(out) if self.sigmoid_output else out


class Autoencoder(nn.Module):
    """Sigmoid encoder ``sizes[0] -> ... -> sizes[-1]`` with a mirrored decoder.

    ``decoders[k]`` maps ``sizes[k+1] -> sizes[k]``, so encoder layer k and decoder layer k
    together form the one-layer autoencoder that layer-wise pretraining trains.
    ``sigmoid_output=False`` makes the last decoder layer linear (data outside [0, 1]).
    """

    def __init__(self, sizes: tuple[int, ...], dropout_rates: tuple[float, ...], *,
                 released_dropout: bool, sigmoid_output: bool, init_std: float | None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if len(dropout_rates) != len(sizes) - 1:
            raise ValueError("one dropout rate per encoder layer")
        self.sizes = tuple(sizes)
        self.dropout_rates = tuple(dropout_rates)
        self.released_dropout = released_dropout
        self.sigmoid_output = sigmoid_output
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.encoders = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.decoders = nn.ModuleList(nn.Linear(b, a) for a, b in pairs)
        for layer in (*self.encoders, *self.decoders):
            init_linear(layer, init_std, generator)

    @property
    def depth(self) -> int:
        return len(self.encoders)

    @property
    def code_dim(self) -> int:
        return self.sizes[-1]

    def encode_layer(self, k: int, h: torch.Tensor, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
        h = dropout(h, self.dropout_rates[k], generator, rescale=not self.released_dropout)
        return torch.sigmoid(self.encoders[k](h))

    def decode_layer_logits(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Pre-activation of decoder layer k (sigmoid or linear applied by the caller)."""
        return self.decoders[k](h)

    def decode_layer(self, k: int, h: torch.Tensor) -> torch.Tensor:
        out = self.decode_layer_logits(k, h)
        return out if (k == 0 and not self.sigmoid_output) else torch.sigmoid(out)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes of ``x``; deterministic (no dropout) when ``generator`` is None."""
        h = x
        for k in range(self.depth):
            h = self.encode_layer(k, h, generator)
        return h

    def decode_logits(self, code: torch.Tensor) -> torch.Tensor:
        """Last decoder layer's pre-activation, for a numerically stable cross-entropy."""
        h = code
        for k in range(self.depth - 1, 0, -1):
            h = self.decode_layer(k, h)
        return self.decode_layer_logits(0, h)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        out = self.decode_logits(code)
        return torch.sigmoid(out) if self.sigmoid_output else out

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self.encode(x, generator))

    @torch.no_grad()
    def released_rescale(self, k: int) -> None:
        """Released-code quirk: divide pretrained encoder layer k's weights by (1 - p_k)."""
        if self.released_dropout:
            self.encoders[k].weight.div_(1.0 - self.dropout_rates[k])


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, *, sigmoid: bool
                        ) -> torch.Tensor:
    """Per-example loss summed over dimensions, averaged over the batch (as pynn did).

    Binary cross-entropy -sum_d [t log y + (1-t) log(1-y)] with y = sigmoid(logits) for [0, 1]
    targets; half the squared error for linear outputs.
    """
    n = target.shape[0]
    if sigmoid:
        total = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    else:
        total = 0.5 * (logits - target).pow(2).sum()
    return total / n


# pylearn2's irange of the GAN paper's MNIST discriminator: weights uniform in +-0.005.
DISC_INIT_RANGE = 0.005


class Discriminator(nn.Module):
    """Maxout MLP ``in_dim -> hidden... -> 1`` returning logits (n,); dropout on each input.

    A maxout unit is the maximum of ``pieces`` linear functions (consecutive outputs of one
    linear layer, as pylearn2 grouped them). Dropout is inverted (kept units scaled by
    1/(1-p)), as pylearn2's ``input_scales`` did; masks come from ``generator`` (none: test).
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...], *, pieces: int,
                 dropout_rates: tuple[float, ...], generator: torch.Generator | None = None
                 ) -> None:
        super().__init__()
        if len(dropout_rates) != len(hidden) + 1:
            raise ValueError("one dropout rate per discriminator layer")
        self.pieces = pieces
        self.dropout_rates = tuple(dropout_rates)
        ins = (in_dim, *hidden)
        outs = (*(h * pieces for h in hidden), 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(ins, outs, strict=True))
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.uniform_(-DISC_INIT_RANGE, DISC_INIT_RANGE, generator=generator)
                layer.bias.zero_()

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor:
        h = x
        for k, layer in enumerate(self.layers):
            h = layer(dropout(h, self.dropout_rates[k], generator, rescale=True))
            if k < len(self.layers) - 1:
                h = h.view(h.shape[0], -1, self.pieces).amax(-1)  # (n, units)
        return h.squeeze(1)  # (n,) logits of "x is data"


class GenerativeModel(nn.Module):
    """A GMMN, optionally in an autoencoder's code space: prior -> generator -> (decoder).

    A GAN baseline also carries its ``discriminator``, so checkpoints hold both networks;
    sampling never uses it.
    """

    def __init__(self, generator: Generator, autoencoder: Autoencoder | None = None,
                 discriminator: Discriminator | None = None) -> None:
        super().__init__()
        self.generator = generator
        self.autoencoder = autoencoder
        self.discriminator = discriminator

    @property
    def prior_dim(self) -> int:
        return self.generator.prior_dim

    def decode_prior(self, z: torch.Tensor) -> torch.Tensor:
        """Map prior points (k, prior_dim) to data space (k, D)."""
        out = self.generator(z)
        return out if self.autoencoder is None else self.autoencoder.decode(out)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode_prior(self.generator.sample_prior(n, generator))


def sigmoid_output(output: str, *, unit_interval: bool) -> bool:
    """Whether a data-space generator with ``--output output`` ends in a sigmoid: ``auto``
    follows the data's range (a sigmoid for [0, 1]), else the flag says."""
    return unit_interval if output == "auto" else output == "sigmoid"


def layer_weights(sizes) -> int:
    """Weights of a chain of dense layers of ``sizes`` (biases aside)."""
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def check_weights_fit(count: int, *, preset: str, fix: str) -> None:
    """Refuse networks whose float32 weights alone exceed the free memory, before
    allocating them (``--hidden 1000000000000`` would die in the allocator)."""
    check_fits(4.0 * count, what=f"a {preset} model of {count:.3g} weights", fix=fix)
