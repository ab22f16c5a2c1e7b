"""Contractive autoencoder: the closed-form penalty against autograd's Jacobian, the loss
against a written-out sum, and one chain transition against g(f(x) + J eps) built from
``torch.autograd.functional.jacobian``."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from gmmn.baselines.cae import CAE, StackedCAE, cae_loss, cae_step
from gmmn.errors import ConfigError


def layer(tied: bool, seed: int = 0) -> CAE:
    g = torch.Generator().manual_seed(seed)
    cae = CAE(7, 5, tied=tied, generator=g).double()
    with torch.no_grad():
        cae.hidden_bias.normal_(0, 1, generator=g)
        cae.visible_bias.normal_(0, 1, generator=g)
    return cae


def inputs(n: int = 6, d: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("tied", [True, False])
def test_penalty_is_squared_frobenius_norm_of_autograd_jacobian(tied):
    cae, x = layer(tied), inputs()
    for row, got in zip(x, cae.jacobian_norm2(x), strict=True):
        J = jacobian(cae.encode, row)  # (H, D)
        assert J.shape == (5, 7)
        torch.testing.assert_close(got, (J ** 2).sum(), rtol=1e-12, atol=1e-14)


def test_penalty_gradient_matches_autograd_through_the_jacobian():
    cae, x = layer(True), inputs(3)
    cae.zero_grad()
    cae.jacobian_norm2(x).sum().backward()
    closed = cae.weight.grad.clone()
    cae.zero_grad()
    total = sum((jacobian(cae.encode, row, create_graph=True) ** 2).sum() for row in x)
    total.backward()
    torch.testing.assert_close(closed, cae.weight.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("tied", [True, False])
def test_loss_is_reconstruction_plus_weighted_penalty(tied):
    cae, x = layer(tied), inputs()
    want = 0.0
    for row in x:
        r = cae.decode(cae.encode(row[None]))[0]
        bce = -(row * r.log() + (1 - row) * (1 - r).log()).sum()
        pen = (jacobian(cae.encode, row) ** 2).sum()
        want = want + (bce + 0.3 * pen) / len(x)
    torch.testing.assert_close(cae_loss(cae, x, contraction=0.3), want, rtol=1e-10, atol=1e-12)


def reference_loss(cae, x, target, contraction):
    """The loss row by row, its penalty through autograd's Jacobian (differentiable)."""
    total = 0.0
    for row, t in zip(x, target, strict=True):
        r = cae.decode(cae.encode(row[None]))[0]
        bce = -(t * r.log() + (1 - t) * (1 - r).log()).sum()
        pen = (jacobian(cae.encode, row, create_graph=True) ** 2).sum()
        total = total + (bce + contraction * pen) / len(x)
    return total


def test_written_out_gradient_of_the_tied_loss_matches_autograd_through_the_jacobian():
    cae, x = layer(True), inputs(5)
    target = inputs(5, seed=9)  # a target other than the input exercises both terms
    params = [cae.weight, cae.hidden_bias, cae.visible_bias]
    fused = cae_loss(cae, x, contraction=0.3, target=target)
    assert fused.grad_fn is not None and "TiedCAELoss" in type(fused.grad_fn).__name__
    got = torch.autograd.grad(2.5 * fused, params)  # a non-unit upstream gradient
    want = torch.autograd.grad(2.5 * reference_loss(cae, x, target, 0.3), params)
    torch.testing.assert_close(fused.detach(), reference_loss(cae, x, target, 0.3).detach(),
                               rtol=1e-10, atol=1e-12)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)


def test_tied_loss_falls_back_to_autograd_when_the_input_needs_a_gradient():
    cae, x = layer(True), inputs(4).requires_grad_()
    loss = cae_loss(cae, x, contraction=0.3)
    assert "TiedCAELoss" not in type(loss.grad_fn).__name__
    (gx,) = torch.autograd.grad(loss, x)
    (want,) = torch.autograd.grad(reference_loss(cae, x, x, 0.3), x)
    torch.testing.assert_close(gx, want, rtol=1e-9, atol=1e-11)


def test_chain_step_moves_the_code_by_j_jt_alpha_or_j_eps():
    cae, x = layer(True), inputs()
    alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    eps = torch.randn(6, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    hidden = cae_step(cae, x, noise_std=0.7, generator=torch.Generator().manual_seed(5))
    inp = cae_step(cae, x, noise_std=0.7, noise="input",
                   generator=torch.Generator().manual_seed(5))
    for i, row in enumerate(x):
        J = jacobian(cae.encode, row)  # (H, D)
        h = cae.encode(row)
        want = cae.decode((h + J @ J.T @ (0.7 * alpha[i]))[None])[0]
        torch.testing.assert_close(hidden[i], want, rtol=1e-12, atol=1e-14)
        want = cae.decode((h + J @ (0.7 * eps[i]))[None])[0]
        torch.testing.assert_close(inp[i], want, rtol=1e-12, atol=1e-14)
    # without noise the chain is the deterministic map g(f(x))
    still = cae_step(cae, x, noise_std=0.0, generator=torch.Generator())
    torch.testing.assert_close(still, cae.decode(cae.encode(x)))


def test_stacked_sampler_runs_the_top_chain_and_decodes_down():
    g = torch.Generator().manual_seed(0)
    stack = StackedCAE([6, 5, 4], generator=g).double()
    init = inputs(3, 6)
    got = stack.sample(7, init=init, noise_std=0.5, burn_in=2, thin=2,
                       generator=torch.Generator().manual_seed(9))
    # by hand: chains of 3, 2 burn-in steps, then keep every 2nd state, 3 times (9 rows)
    g2 = torch.Generator().manual_seed(9)
    top = stack.layers[1]
    h = stack.layers[0].encode(init)
    rows = []
    for t in range(1, 2 + 2 * 3 + 1):
        h = cae_step(top, h, noise_std=0.5, generator=g2)
        if t > 2 and (t - 2) % 2 == 0:
            rows.append(stack.layers[0].decode(h))
    torch.testing.assert_close(got, torch.cat(rows)[:7])
    assert got.shape == (7, 6)


def test_bad_arguments_are_refused():
    stack = StackedCAE([6, 5])
    with pytest.raises(ConfigError):
        stack.sample(3, init=torch.zeros(2, 5), generator=None)
    with pytest.raises(ConfigError):
        stack.sample(3, init=torch.zeros(2, 6), noise_std=-1.0, generator=None)
    with pytest.raises(ConfigError):
        StackedCAE([6])
    with pytest.raises(ConfigError):
        stack.sample(3, init=torch.zeros(2, 6), noise="pixel", generator=None)
