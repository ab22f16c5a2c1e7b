"""Contractive autoencoder (Rifai et al. 2011), stacked greedily, with the sampling chain of
Rifai, Bengio, Dauphin & Vincent 2012 ("A Generative Process for Sampling Contractive
Auto-Encoders") run in the top layer's input space and decoded down (Bengio et al. 2013).

One layer, input x (D), code h (H), weights W (D, H):

    h = f(x) = sigmoid(x W + c),        r = g(h) = sigmoid(h W^T + b)   (tied; or h V + b)
    J(x) = dh/dx = diag(h * (1 - h)) W^T                                 (H, D)
    ||J(x)||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2                  (closed form)
    loss = mean_n [ BCE(r_n, x_n) summed over inputs + lambda ||J(x_n)||_F^2 ]

Sampling chain (one transition), as the authors' numpy CAE does it (``cae.py`` by Dauphin &
Rifai, 2012, method ``sample``; read in the copy github.com/gyom/cae.py):

    h = f(x_t);  alpha ~ N(0, sigma^2 I_H);  x_{t+1} = g(h + J(x_t) J(x_t)^T alpha)

so the move in code space has covariance sigma^2 (J J^T)^2: large along the directions the
CAE leaves uncontracted (its estimate of the manifold's tangents), small elsewhere.
``noise="input"`` gives the other reading, g(h + J eps) with eps ~ N(0, sigma^2 I_D) in
input space (covariance sigma^2 J J^T); see docs/baselines.md. Neither forms J: with
s = h(1-h), J^T a = (s * a) W^T and J e = s * (e W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gmmn.baselines.chain import ChainSettings, run_chain
from gmmn.errors import ConfigError


class CAE(nn.Module):
    """One sigmoid contractive autoencoder layer, ``n_in`` -> ``n_hidden`` -> ``n_in``.

    Weights U(-a, a) with a = 4 sqrt(6 / (n_in + n_hidden)), biases 0, tied decoder: as in
    the authors' ``cae.py`` (``CAE.fit``).
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

    def jjt_times(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """J(x) J(x)^T alpha per row for alpha of shape (N, H), shape (N, H)."""
        s = self.encode(x)
        s = s * (1 - s)
        return s * (((s * alpha) @ self.weight.T) @ self.weight)


class _TiedCAELoss(torch.autograd.Function):
    """The tied layer's loss with its gradient written out, for inputs that need none.

    With a = x W + c, h = sigmoid(a), s = h(1-h), z = h W^T + b, n_j = sum_i W_ij^2 and
    N rows, the loss is (1/N) sum_n [sum_i BCE(z_ni, t_ni) + lambda sum_j s_nj^2 n_j], so

        dz = (sigmoid(z) - t) / N                                 (N, D)
        dh = dz W + (2 lambda / N) s (1 - 2h) n                   (N, H)   [d s^2/dh = 2 s (1-2h)]
        da = dh * s
        dW = dz^T h + x^T da + 2 lambda W diag(mean_n s_n^2)      (D, H)
        dc = sum_n da,   db = sum_n dz

    Autograd through the formula gives the same numbers (tested in float64) but records
    about twenty operations and allocates several (D, H) temporaries per step; at the
    source's batch of 10 that bookkeeping, not the arithmetic, set the pace (about 2.5x).
    """

    @staticmethod
    def forward(ctx, x, target, weight, hidden_bias, visible_bias, contraction):
        h = torch.sigmoid(torch.addmm(hidden_bias, x, weight))  # (N, H)
        z = torch.addmm(visible_bias, h, weight.T)  # (N, D)
        s = h * (1 - h)
        col = (weight * weight).sum(0)  # (H,)
        bce = F.binary_cross_entropy_with_logits(z, target, reduction="sum")
        loss = (bce + contraction * ((s * s) @ col).sum()) / x.shape[0]
        ctx.save_for_backward(x, target, weight, h, z, s, col)
        ctx.contraction = contraction
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, target, weight, h, z, s, col = ctx.saved_tensors
        lam, n = ctx.contraction, x.shape[0]
        dz = torch.sigmoid(z).sub_(target).mul_(grad / n)  # (N, D)
        da = torch.addcmul(dz @ weight, s * (1 - 2 * h), col, value=2 * lam * grad / n)
        da.mul_(s)  # (N, H)
        # dz^T h + x^T da as one product over 2N rows: an addmm with the transposed x as
        # its second operand took about eight times as long on a CPU.
        dw = torch.cat([dz, x]).T @ torch.cat([h, da])  # (D, H)
        dw.addcmul_(weight, (s * s).mean(0), value=2 * lam * grad)
        return None, None, dw, da.sum(0), dz.sum(0), None


def cae_loss(cae: CAE, x: torch.Tensor, *, contraction: float,
             target: torch.Tensor | None = None, fast: bool = True) -> torch.Tensor:
    """Mean over rows of summed binary cross-entropy plus ``contraction`` * ||J||_F^2.

    ``target`` defaults to ``x`` (inputs in [0, 1], read as Bernoulli means). A tied layer
    whose inputs need no gradient (greedy training) takes the written-out gradient of
    :class:`_TiedCAELoss`; otherwise, or with ``fast=False`` (the benchmark's reference),
    autograd runs through the formula below.
    """
    target = x if target is None else target
    if fast and cae.tied and not (x.requires_grad or target.requires_grad):
        return _TiedCAELoss.apply(x, target, cae.weight, cae.hidden_bias, cae.visible_bias,
                                  float(contraction))
    h = cae.encode(x)
    bce = F.binary_cross_entropy_with_logits(cae.decode_logits(h), target, reduction="none")
    return (bce.sum(1) + contraction * cae.jacobian_norm2(x, h)).mean()


NOISE_SPACES = ("hidden", "input")


def cae_step(cae: CAE, x: torch.Tensor, *, noise_std: float, noise: str = "hidden",
             generator: torch.Generator | None) -> torch.Tensor:
    """One transition of the CAE chain (module docstring).

    ``noise="hidden"``: g(f(x) + J J^T alpha), alpha ~ N(0, noise_std^2 I_H) (released code);
    ``noise="input"``: g(f(x) + J eps), eps ~ N(0, noise_std^2 I_D).
    """
    if noise not in NOISE_SPACES:
        raise ConfigError(f"noise must be one of {NOISE_SPACES}; got {noise!r}.")
    shape = (x.shape[0], cae.weight.shape[1]) if noise == "hidden" else x.shape
    device = generator.device if generator is not None else x.device
    z = torch.randn(shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    move = cae.jjt_times(x, noise_std * z) if noise == "hidden" else cae.jacobian_times(
        x, noise_std * z)
    return cae.decode(cae.encode(x) + move)


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
               noise: str = "hidden", burn_in: int = 0, thin: int = 1,
               level: int | None = None, generator: torch.Generator | None) -> torch.Tensor:
        """Run the CAE chain of layer ``level`` (default: the top) in its input space from
        the up-pass of ``init`` (chains, n_in) and decode every kept state to pixels.

        ``noise_std`` (sigma) defaults to 1, the released ``sample(x, sigma=1)``; the value
        behind the paper's Parzen number is not known (docs/baselines.md), so it is meant to
        be picked on validation data. ``burn_in`` / ``thin`` as in
        :mod:`gmmn.baselines.chain`; the rows of ``init`` are the chains.
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
            return cae_step(layer, x, noise_std=noise_std, noise=noise, generator=generator)

        return run_chain(step, self.up(init, level), lambda x: self.down(x, level), n_samples,
                         settings)
