"""Deep GSN: walkback against a written-out noiseless chain, the gradient reaching the top
layer only through walkback, the noise model's statistics, and the sampler's chain settings
(against a counting chain with a hand-written answer)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gmmn.baselines.chain import ChainSettings, run_chain
from gmmn.baselines.gsn import GSN, salt_and_pepper, walkback_loss
from gmmn.errors import ConfigError


def small_gsn(**noise) -> GSN:
    g = torch.Generator().manual_seed(0)
    gsn = GSN((6, 5, 4), generator=g, **noise).double()
    with torch.no_grad():
        for b in gsn.biases:
            b.normal_(0, 0.5, generator=g)
    return gsn


def data(n: int = 8) -> torch.Tensor:
    return torch.rand(n, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


NOISELESS = dict(input_noise=0.0, hidden_noise_std=0.0, input_sampling=False)


@pytest.mark.parametrize("walkbacks", [1, 2, 4, 7])
def test_walkback_terms_match_a_written_out_noiseless_chain(walkbacks):
    gsn, x = small_gsn(**NOISELESS), data()
    total, terms = walkback_loss(gsn, x, walkbacks=walkbacks, generator=None)
    assert len(terms) == walkbacks
    (W0, W1), (b0, b1, b2) = gsn.weights, gsn.biases
    v, h1, h2, want = x, torch.zeros(8, 5).double(), torch.zeros(8, 4).double(), []
    for _ in range(walkbacks):
        h1 = torch.tanh(v @ W0 + h2 @ W1.T + b1)  # odd layer from both neighbours
        v = torch.sigmoid(h1 @ W0.T + b0)  # even layers from the new h1
        h2 = torch.tanh(h1 @ W1 + b2)
        want.append(-(x * v.log() + (1 - x) * (1 - v).log()).mean())
    torch.testing.assert_close(torch.stack(terms), torch.stack(want))
    torch.testing.assert_close(total, sum(want))


def test_top_layer_learns_only_through_walkback():
    # with one step the reconstruction depends on h_1 alone (h_2 starts at 0); the second
    # step is the first to read h_2, so W_1 gets a gradient only from walkbacks >= 2
    for walkbacks, reaches in ((1, False), (2, True)):
        gsn = small_gsn()
        total, _ = walkback_loss(gsn, data(), walkbacks=walkbacks,
                                 generator=torch.Generator().manual_seed(2))
        total.backward()
        assert (gsn.weights[1].grad.abs().sum() > 0).item() is reaches
        assert gsn.weights[0].grad.abs().sum() > 0


def test_salt_and_pepper_replaces_the_stated_fraction_by_fair_coins():
    x = torch.full((400, 500), 0.5, dtype=torch.float64)
    y = salt_and_pepper(x, 0.4, torch.Generator().manual_seed(3))
    assert abs((y == 0).double().mean().item() - 0.2) < 0.005
    assert abs((y == 1).double().mean().item() - 0.2) < 0.005
    assert abs((y == 0.5).double().mean().item() - 0.6) < 0.005


def test_hidden_noise_is_absent_on_h1_and_present_above():
    gsn = small_gsn(input_noise=0.0, input_sampling=False)
    x = data()
    h = gsn.initial_state(x, None)
    a = gsn.transition(h, torch.Generator().manual_seed(4))[0]
    b = gsn.transition(h, torch.Generator().manual_seed(5))[0]
    assert torch.equal(a[1], b[1])  # noiseless_h1: h_1 is deterministic
    spread = (a[2] - b[2]).std().item()  # difference of two N(0, 2^2)-noised values
    assert 2.0 < spread < 4.0  # pre-noise through tanh adds < 1, post-noise sqrt(8) = 2.83


def test_run_chain_keeps_the_stated_steps():
    # a chain that counts its own transitions: state t, emits t for each of 3 chains
    def step(t):
        return t + 1

    def emit(t):
        return torch.full((3, 1), float(t))

    for burn_in, thin, n in ((0, 1, 7), (5, 1, 6), (2, 3, 7), (10, 4, 1)):
        settings = ChainSettings(chains=3, burn_in=burn_in, thin=thin)
        got = run_chain(step, 0, emit, n, settings)[:, 0].tolist()
        want = [burn_in + thin * (1 + r // 3) for r in range(n)]
        assert got == want, (burn_in, thin, n)
        assert settings.transitions(n) == burn_in + thin * math.ceil(n / 3)


def test_sampler_honours_chains_burn_in_and_thinning():
    gsn, calls = small_gsn(), []
    original = gsn.transition

    def counted(h, generator):
        calls.append(h[0].shape[0])
        return original(h, generator)

    gsn.transition = counted
    out = gsn.sample(10, init=data(4), burn_in=3, thin=2,
                     generator=torch.Generator().manual_seed(6))
    assert out.shape == (10, 6) and ((out > 0) & (out < 1)).all()
    assert calls == [4] * (3 + 2 * 3)  # 4 chains, ceil(10 / 4) = 3 kept steps


def test_samples_resume_bit_identically_from_a_state_dict():
    gsn = small_gsn()
    other = GSN((6, 5, 4)).double()
    other.load_state_dict(gsn.state_dict())
    a = gsn.sample(5, init=data(2), generator=torch.Generator().manual_seed(7))
    b = other.sample(5, init=data(2), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_mse_cost_and_bad_arguments():
    gsn, x = small_gsn(**NOISELESS), data()
    _, terms = walkback_loss(gsn, x, walkbacks=1, cost="mse", generator=None)
    p = torch.sigmoid(torch.tanh(x @ gsn.weights[0] + gsn.biases[1]) @ gsn.weights[0].T
                      + gsn.biases[0])
    torch.testing.assert_close(terms[0], F.mse_loss(p, x))
    with pytest.raises(ConfigError):
        walkback_loss(gsn, x, walkbacks=0, generator=None)
    with pytest.raises(ConfigError):
        GSN((6, 5), activation="softsign")
    with pytest.raises(ConfigError):
        gsn.sample(3, init=torch.zeros(2, 5), generator=None)
