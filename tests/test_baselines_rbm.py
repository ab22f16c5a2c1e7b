"""RBM against brute force: free energy, log Z, the exact likelihood gradient, and the
stationary distribution of block Gibbs sampling, all enumerated by hand-written loops."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from gmmn.baselines.chain import ChainSettings
from gmmn.baselines.rbm import RBM, PersistentChains, cd_loss, cd_negatives, sample_rbm
from gmmn.errors import ConfigError


def tiny_rbm(n_visible: int, n_hidden: int, seed: int, scale: float = 1.0) -> RBM:
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(n_visible, n_hidden, init_std=scale, generator=g).double()
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.randn(n_visible, generator=g, dtype=torch.float64))
        rbm.hidden_bias.copy_(torch.randn(n_hidden, generator=g, dtype=torch.float64))
    return rbm


def brute_force(rbm: RBM):
    """Enumerate every (v, h) with plain Python loops in float64.

    Returns (Z, {v: F(v)}, {v: p(v)}, E_model[v_i h_j], E_model[v_i], E_model[h_j]).
    """
    W = rbm.weight.detach().tolist()
    b = rbm.visible_bias.detach().tolist()
    c = rbm.hidden_bias.detach().tolist()
    nv, nh = len(b), len(c)
    unnorm: dict[tuple, float] = {}
    joint: dict[tuple, float] = {}
    for v in itertools.product((0, 1), repeat=nv):
        total = 0.0
        for h in itertools.product((0, 1), repeat=nh):
            e = -sum(v[i] * b[i] for i in range(nv)) - sum(h[j] * c[j] for j in range(nh))
            e -= sum(v[i] * W[i][j] * h[j] for i in range(nv) for j in range(nh))
            w = math.exp(-e)
            joint[(v, h)] = w
            total += w
        unnorm[v] = total
    Z = sum(unnorm.values())
    free = {v: -math.log(u) for v, u in unnorm.items()}
    pv = {v: u / Z for v, u in unnorm.items()}
    vh = [[0.0] * nh for _ in range(nv)]
    ev, eh = [0.0] * nv, [0.0] * nh
    for (v, h), w in joint.items():
        p = w / Z
        for i in range(nv):
            ev[i] += p * v[i]
            for j in range(nh):
                vh[i][j] += p * v[i] * h[j]
        for j in range(nh):
            eh[j] += p * h[j]
    return Z, free, pv, vh, ev, eh


@pytest.mark.parametrize("nv,nh", [(5, 7), (7, 5)])  # both sides of the enumeration
def test_free_energy_and_log_partition_match_enumeration(nv, nh):
    rbm = tiny_rbm(nv, nh, seed=nv)
    Z, free, pv, *_ = brute_force(rbm)
    vs = torch.tensor(list(free), dtype=torch.float64)
    got = rbm.free_energy(vs).detach()
    want = torch.tensor(list(free.values()), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert abs(rbm.log_partition().item() - math.log(Z)) < 1e-10
    logp = rbm.log_prob(vs).detach()
    torch.testing.assert_close(logp.exp(), torch.tensor(list(pv.values()), dtype=torch.float64))


def test_energy_sums_to_free_energy():
    rbm = tiny_rbm(3, 4, seed=1)
    v = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    hs = torch.tensor(list(itertools.product((0.0, 1.0), repeat=4)), dtype=torch.float64)
    e = rbm.energy(v.expand(len(hs), 3), hs)
    assert abs(-torch.logsumexp(-e, 0).item() - rbm.free_energy(v).item()) < 1e-12


def exact_nll_gradient(rbm: RBM, data: torch.Tensor) -> torch.Tensor:
    """d/dW of the mean NLL: -(E_data[v p(h|v)^T] - E_model[v h^T]), hand-enumerated."""
    *_, vh, _ev, _eh = brute_force(rbm)
    W = rbm.weight.detach()
    c = rbm.hidden_bias.detach()
    pos = torch.zeros_like(W)
    for row in data:
        ph = torch.sigmoid(row @ W + c)
        pos += torch.outer(row, ph) / len(data)
    return -(pos - torch.tensor(vh, dtype=torch.float64))


def test_cd_k_gradient_approaches_exact_gradient_as_k_grows():
    rbm = tiny_rbm(4, 3, seed=3, scale=1.5)
    data = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]], dtype=torch.float64)
    exact = exact_nll_gradient(rbm, data)
    batch = data.repeat(20000, 1)  # 60000 chains: Monte Carlo error about 0.002 per entry
    errors = {}
    for k in (1, 3, 40):
        g = torch.Generator().manual_seed(10 + k)
        rbm.zero_grad()
        cd_loss(rbm, batch, cd_negatives(rbm, batch, k=k, generator=g)).backward()
        errors[k] = (rbm.weight.grad - exact).abs().max().item()
    assert errors[40] < 0.015, errors  # measured 0.002 (k=40), 0.008 (k=3), 0.089 (k=1)
    assert errors[1] > 3 * errors[40], errors  # CD-1 is visibly biased on this model
    assert errors[3] < errors[1], errors


def total_variation(x: torch.Tensor, pv: dict) -> float:
    counts: dict[tuple, int] = {}
    for row in x.long().tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    return 0.5 * sum(abs(counts.get(v, 0) / len(x) - p) for v, p in pv.items())


def test_gibbs_chain_reaches_the_enumerated_distribution():
    rbm = tiny_rbm(6, 4, seed=5)
    _Z, _free, pv, *_ = brute_force(rbm)
    init = torch.zeros(2000, 6, dtype=torch.float64)
    mixed = sample_rbm(rbm, 20000, init=init, burn_in=30, thin=3,
                       emit="state", generator=torch.Generator().manual_seed(0))
    assert total_variation(mixed, pv) < 0.035  # measured 0.014; Monte Carlo floor ~0.01
    # one step from all-zeros has not mixed (measured 0.38): the check can fail
    init = torch.zeros(20000, 6, dtype=torch.float64)
    first = sample_rbm(rbm, 20000, init=init, emit="state",
                       generator=torch.Generator().manual_seed(0))
    assert total_variation(first, pv) > 0.2


def test_persistent_chains_resume_bit_identically():
    rbm = tiny_rbm(5, 3, seed=7)
    data = (torch.rand(8, 5, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    g = torch.Generator().manual_seed(2)
    chains = PersistentChains(8, 5).double()
    chains.advance(rbm, data, k=2, generator=g)
    saved, g_state = chains.state_dict(), g.get_state()
    a = chains.advance(rbm, data, k=2, generator=g)
    other = PersistentChains(8, 5).double()
    other.load_state_dict(saved)
    g.set_state(g_state)
    b = other.advance(rbm, data, k=2, generator=g)
    assert torch.equal(a, b)


def test_bad_settings_are_refused():
    rbm = RBM(30, 25)
    with pytest.raises(ConfigError):
        rbm.log_partition()
    with pytest.raises(ConfigError):
        cd_negatives(rbm, torch.zeros(2, 30), k=0, generator=None)
    with pytest.raises(ConfigError):
        ChainSettings(chains=0)
