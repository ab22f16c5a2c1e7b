"""DBN sampler against a hand-enumerated generative distribution, and CD training against the
exact likelihood of a tiny RBM."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from gmmn.baselines.dbn import DBN
from gmmn.baselines.rbm import RBM, cd_loss, cd_negatives


def sig(a: float) -> float:
    return 1.0 / (1.0 + math.exp(-a))


def tiny_dbn(sizes, seed: int) -> DBN:
    g = torch.Generator().manual_seed(seed)
    dbn = DBN(sizes, init_std=1.5, generator=g).double()
    with torch.no_grad():
        for rbm in dbn.rbms:
            rbm.visible_bias.copy_(torch.randn(rbm.n_visible, generator=g, dtype=torch.float64))
            rbm.hidden_bias.copy_(torch.randn(rbm.n_hidden, generator=g, dtype=torch.float64))
    return dbn


def top_marginal(rbm: RBM) -> dict[tuple, float]:
    """p(v) of an RBM by looping over every (v, h)."""
    W, b, c = (t.detach().tolist() for t in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    un = {}
    for v in itertools.product((0, 1), repeat=len(b)):
        un[v] = sum(math.exp(sum(v[i] * b[i] for i in range(len(b)))
                             + sum(h[j] * c[j] for j in range(len(c)))
                             + sum(v[i] * W[i][j] * h[j] for i in range(len(b))
                                   for j in range(len(c))))
                    for h in itertools.product((0, 1), repeat=len(c)))
    z = sum(un.values())
    return {v: u / z for v, u in un.items()}


def cond_visible(rbm: RBM, h: tuple) -> list[float]:
    """p(v_i = 1 | h) written out."""
    W, b = rbm.weight.detach().tolist(), rbm.visible_bias.detach().tolist()
    return [sig(b[i] + sum(W[i][j] * h[j] for j in range(len(h)))) for i in range(len(b))]


def test_three_layer_dbn_samples_have_the_enumerated_mean():
    dbn = tiny_dbn([3, 3, 3, 2], seed=0)
    r0, r1, r2 = dbn.rbms
    # E[emitted row] = sum_h2 p_top(h2) sum_h1 p(h1 | h2) p(x = 1 | h1)
    want = [0.0, 0.0, 0.0]
    for h2, p2 in top_marginal(r2).items():
        q1 = cond_visible(r1, h2)
        for h1 in itertools.product((0, 1), repeat=3):
            p1 = math.prod(q if s else 1 - q for q, s in zip(q1, h1, strict=True))
            for i, m in enumerate(cond_visible(r0, h1)):
                want[i] += p2 * p1 * m
    init = torch.zeros(4000, 3, dtype=torch.float64)
    x = dbn.sample(40000, init=init, burn_in=20, thin=2,
                   generator=torch.Generator().manual_seed(1))
    assert x.shape == (40000, 3)
    assert ((x > 0) & (x < 1)).all()  # pixel layer returned as probabilities
    err = (x.mean(0) - torch.tensor(want, dtype=torch.float64)).abs().max().item()
    assert err < 0.01, (x.mean(0), want)  # Monte Carlo error about 0.002


def test_up_pass_feeds_each_layer_probabilities():
    dbn = tiny_dbn([4, 3, 2], seed=2)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    W, c = dbn.rbms[0].weight.detach().tolist(), dbn.rbms[0].hidden_bias.detach().tolist()
    h = [sig(c[j] + sum(x[0, i].item() * W[i][j] for i in range(4))) for j in range(3)]
    torch.testing.assert_close(dbn.up(x, 1)[0], torch.tensor(h, dtype=torch.float64))
    assert torch.equal(dbn.up(x, 0), x)


@pytest.mark.integration
def test_cd1_training_raises_the_exact_likelihood():
    g = torch.Generator().manual_seed(3)
    rbm = RBM(6, 4, init_std=0.01, generator=g).double()
    protos = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.float64)
    flips = torch.rand(400, 6, generator=g, dtype=torch.float64) < 0.05
    data = (protos.repeat(200, 1) - flips.double()).abs()
    before = rbm.log_prob(data).mean().item()
    opt = torch.optim.SGD(rbm.parameters(), lr=0.5)
    for _ in range(200):
        batch = data[torch.randint(0, 400, (50,), generator=g)]
        opt.zero_grad()
        cd_loss(rbm, batch, cd_negatives(rbm, batch, k=1, generator=g)).backward()
        opt.step()
    after = rbm.log_prob(data).mean().item()
    # uniform model: -6 log 2 = -4.16; the data entropy (two modes, 5% flips) is 1.88 nats
    assert before < -4.0 and after > -2.4, (before, after)  # measured after: -2.04
