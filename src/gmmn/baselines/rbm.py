"""Bernoulli-Bernoulli restricted Boltzmann machine: energy, free energy, exact log-partition
for tiny models, CD-k and PCD gradient estimates, and block Gibbs sampling.

With visible v in {0,1}^V, hidden h in {0,1}^H, weights W (V, H) and biases b (V), c (H):

    E(v, h) = -v.b - h.c - v^T W h
    F(v)    = -log sum_h exp(-E(v, h)) = -v.b - sum_j softplus(c_j + (v W)_j)
    log Z   = logsumexp_v (-F(v))          (enumerated over the smaller layer)
    p(h_j = 1 | v) = sigmoid(c_j + (v W)_j),   p(v_i = 1 | h) = sigmoid(b_i + (W h)_i)

The gradient of the mean negative log-likelihood of a batch is
``<dF/dtheta>_data - <dF/dtheta>_model``. :func:`cd_loss` is the surrogate
``mean F(v_data) - mean F(v_model)`` whose autograd gradient is that estimate with the model
expectation replaced by negative samples: from k Gibbs steps started at the data (CD-k,
Hinton 2002; :func:`cd_negatives`) or from chains kept across updates (PCD, Tieleman 2008,
also called SML; :class:`PersistentChains`). Differentiating F puts p(h|v), not a sampled h,
in both phases, the usual lower-variance choice. So the training loop only needs a loss and
``backward``, like every other model in the package.

All randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from gmmn.baselines.chain import ChainSettings, run_chain
from gmmn.errors import ConfigError

MAX_ENUMERATED_UNITS = 20  # 2^20 configurations: about a second on a CPU, the most we allow


def bernoulli(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Binary sample with P(1) = p. Uniforms come from ``generator`` on its own device, so a
    CPU generator's state fixes the draw wherever ``p`` lives."""
    device = generator.device if generator is not None else p.device
    u = torch.rand(p.shape, generator=generator, device=device, dtype=p.dtype)
    return (u.to(p.device) < p).to(p.dtype)


class RBM(nn.Module):
    """Binary RBM with ``n_visible`` x ``n_hidden`` weights.

    Initialisation: weights ``init_std * N(0, 1)``, biases 0 (Hinton's guide to RBM training,
    2010, recommends std 0.01). ``visible_bias`` can be set to log(p/(1-p)) of the data's
    pixel means afterwards (same guide).
    """

    def __init__(self, n_visible: int, n_hidden: int, *, init_std: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if n_visible < 1 or n_hidden < 1:
            raise ConfigError(f"an RBM needs at least one visible and one hidden unit; got "
                              f"{n_visible} x {n_hidden}.")
        w = torch.randn(n_visible, n_hidden, generator=generator) * init_std
        self.weight = nn.Parameter(w)  # (V, H)
        self.visible_bias = nn.Parameter(torch.zeros(n_visible))  # (V,)
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden))  # (H,)

    @property
    def n_visible(self) -> int:
        return self.weight.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.weight.shape[1]

    def hidden_prob(self, v: torch.Tensor) -> torch.Tensor:
        """p(h = 1 | v), shape (N, H)."""
        return torch.sigmoid(v @ self.weight + self.hidden_bias)

    def visible_prob(self, h: torch.Tensor) -> torch.Tensor:
        """p(v = 1 | h), shape (N, V)."""
        return torch.sigmoid(h @ self.weight.T + self.visible_bias)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E(v, h) per row, shape (N,)."""
        return -(v @ self.visible_bias) - (h @ self.hidden_bias) - ((v @ self.weight) * h).sum(1)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -v.b - sum_j softplus(c_j + (v W)_j), shape (N,)."""
        return -(v @ self.visible_bias) - F.softplus(v @ self.weight + self.hidden_bias).sum(1)

    def _hidden_free_energy(self, h: torch.Tensor) -> torch.Tensor:
        """F(h) = -log sum_v exp(-E(v, h)), the same sum taken over the other layer."""
        return -(h @ self.hidden_bias) - F.softplus(h @ self.weight.T + self.visible_bias).sum(1)

    def log_partition(self) -> torch.Tensor:
        """Exact log Z by enumerating every configuration of the smaller layer.

        Differentiable, so ``-log_prob(data).mean()`` gives the exact likelihood gradient of
        a tiny model. Refuses layers of more than ``MAX_ENUMERATED_UNITS`` units.
        """
        small = min(self.n_visible, self.n_hidden)
        if small > MAX_ENUMERATED_UNITS:
            raise ConfigError(
                f"exact log Z enumerates 2^{small} states; use a model whose smaller layer "
                f"has at most {MAX_ENUMERATED_UNITS} units (or an AIS estimate).")
        states = all_binary(small, dtype=self.weight.dtype, device=self.weight.device)
        if self.n_visible <= self.n_hidden:
            return torch.logsumexp(-self.free_energy(states), 0)
        return torch.logsumexp(-self._hidden_free_energy(states), 0)

    def log_prob(self, v: torch.Tensor) -> torch.Tensor:
        """log p(v) = -F(v) - log Z, exact; tiny models only (see :meth:`log_partition`)."""
        return -self.free_energy(v) - self.log_partition()

    def gibbs_step(self, v: torch.Tensor, generator: torch.Generator | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """One block Gibbs transition v -> h -> v'. Returns (v', h), both binary."""
        h = bernoulli(self.hidden_prob(v), generator)
        return bernoulli(self.visible_prob(h), generator), h


def all_binary(n: int, *, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Every vector of {0,1}^n as rows, shape (2^n, n), in binary counting order."""
    rows = list(itertools.product((0.0, 1.0), repeat=n))
    return torch.tensor(rows, dtype=dtype, device=device).reshape(2 ** n, n)


@torch.no_grad()
def cd_negatives(rbm: RBM, v_data: torch.Tensor, *, k: int = 1,
                 generator: torch.Generator | None) -> torch.Tensor:
    """CD-k negative samples: k block Gibbs steps from the data batch (Hinton 2002).

    ``k=1`` is the usual default of the RBM literature; larger k lowers the estimate's bias.
    """
    if k < 1:
        raise ConfigError(f"CD-k needs k >= 1; got k={k}.")
    v = v_data
    if v.dtype.is_floating_point and ((v > 0) & (v < 1)).any():
        v = bernoulli(v, generator)  # grey pixels are read as probabilities of a 1
    for _ in range(k):
        v, _h = rbm.gibbs_step(v, generator)
    return v


class PersistentChains(nn.Module):
    """Fantasy particles for PCD / SML (Tieleman 2008): chains carried across updates.

    The chain state is a buffer, so it is part of ``state_dict`` and a resumed run continues
    the same chains. The chains start from the first batch they are given (binarised), the
    choice of Tieleman's paper; they must then keep that batch size.
    """

    def __init__(self, n_chains: int, n_visible: int) -> None:
        super().__init__()
        self.register_buffer("state", torch.zeros(n_chains, n_visible))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def advance(self, rbm: RBM, v_data: torch.Tensor, *, k: int = 1,
                generator: torch.Generator | None) -> torch.Tensor:
        """Move every chain k Gibbs steps under the current parameters; return the states."""
        if k < 1:
            raise ConfigError(f"PCD-k needs k >= 1; got k={k}.")
        if not bool(self.started):
            if v_data.shape != self.state.shape:
                raise ConfigError(
                    f"persistent chains of shape {tuple(self.state.shape)} cannot start from "
                    f"a batch of shape {tuple(v_data.shape)}; give as many chains as rows.")
            self.state.copy_(bernoulli(v_data.to(self.state), generator))
            self.started.fill_(True)
        v = self.state
        for _ in range(k):
            v, _h = rbm.gibbs_step(v, generator)
        self.state.copy_(v)
        return v.clone()


def cd_loss(rbm: RBM, v_data: torch.Tensor, v_model: torch.Tensor) -> torch.Tensor:
    """Surrogate loss ``mean F(v_data) - mean F(v_model)``.

    Its gradient is the CD / PCD estimate of the gradient of the mean negative
    log-likelihood (``v_model`` is treated as a constant). Its value is not the likelihood.
    """
    return rbm.free_energy(v_data).mean() - rbm.free_energy(v_model.detach()).mean()


@torch.no_grad()
def sample_rbm(rbm: RBM, n_samples: int, *, init: torch.Tensor, burn_in: int = 0,
               thin: int = 1, emit: str = "mean", generator: torch.Generator | None
               ) -> torch.Tensor:
    """Block Gibbs sampling; ``init`` (chains, V) is each chain's start, so its row count
    is the number of chains. ``burn_in`` and ``thin`` as in :mod:`gmmn.baselines.chain`.

    ``emit="mean"`` keeps p(v|h) of each kept step (real-valued rows, what a Parzen window
    over grey MNIST is fitted to); ``emit="state"`` keeps the binary v.
    """
    if emit not in ("mean", "state"):
        raise ConfigError(f"emit must be 'mean' or 'state'; got {emit!r}.")
    if init.dim() != 2 or init.shape[1] != rbm.n_visible:
        raise ConfigError(f"init must have shape (chains, {rbm.n_visible}), one row per "
                          f"chain; got {tuple(init.shape)}.")
    settings = ChainSettings(chains=init.shape[0], burn_in=burn_in, thin=thin)
    start = (bernoulli(init, generator), None)

    def step(state):
        return rbm.gibbs_step(state[0], generator)

    def out(state):
        return state[0] if emit == "state" else rbm.visible_prob(state[1])

    return run_chain(step, start, out, n_samples, settings)
