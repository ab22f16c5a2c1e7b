"""Double backward of the exact estimators: gradgradcheck and a dense autograd reference."""

from __future__ import annotations

import pytest
import torch

import gmmn.mmd._blocked as blocked
from gmmn.mmd import mmd2, mmd_loss, paper_sigmas

F64 = torch.float64


def sample(n, m, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=F64)
    y = torch.randn(m, d, generator=gen, dtype=F64) * 1.2 + 0.5
    return x.requires_grad_(), y.requires_grad_()


def dense_reference(x, y, estimator, kernel, sigmas):
    """The textbook estimator on dense Gram matrices of direct differences, plain autograd."""

    def gram(a, b):
        d2 = (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)  # (n, m)
        if kernel == "gaussian":
            return sum(torch.exp(-d2 / (2 * s * s)) for s in sigmas)
        return sum(torch.rsqrt(1 + d2 / (s * s)) for s in sigmas)

    n, m = len(x), len(y)
    kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
    if estimator == "biased":
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    off_x, off_y = kxx.sum() - kxx.diagonal().sum(), kyy.sum() - kyy.diagonal().sum()
    return off_x / (n * (n - 1)) + off_y / (m * (m - 1)) - 2 * kxy.mean()


def penalty_gradients(fn, x, y):
    """d/d(x, y) of ||d fn / dx||^2: needs the gradient's own gradient."""
    (gx,) = torch.autograd.grad(fn(x, y), x, create_graph=True)
    return torch.autograd.grad(gx.pow(2).sum(), (x, y))


@pytest.mark.parametrize("double_backward", [None, True])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq"])
def test_gradgradcheck(kernel, estimator, double_backward):
    x, y = sample(5, 4, d=2)

    def f(a, b):
        return mmd2(a, b, sigmas=[0.8, 1.6], estimator=estimator, kernel=kernel, block_size=2,
                    double_backward=double_backward)

    assert torch.autograd.gradgradcheck(f, (x, y))


def test_gradgradcheck_power_chain_and_loss():
    x, y = sample(5, 4, d=2)
    sig = [s / 2 for s in paper_sigmas("mnist")]
    assert torch.autograd.gradgradcheck(lambda a, b: mmd2(a, b, sigmas=sig), (x, y))
    assert torch.autograd.gradgradcheck(lambda a, b: mmd_loss(a, b, sigmas=sig), (x, y))


@pytest.mark.parametrize("double_backward", [None, True])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("kernel", ["gaussian", "imq"])
def test_gradient_penalty_matches_dense_autograd(kernel, estimator, double_backward):
    x, y = sample(9, 7, d=4, seed=1)
    sig = (0.7, 2.0)
    got = penalty_gradients(lambda a, b: mmd2(
        a, b, sigmas=sig, estimator=estimator, kernel=kernel, block_size=4,
        double_backward=double_backward), x, y)
    ref = penalty_gradients(lambda a, b: dense_reference(a, b, estimator, kernel, sig), x, y)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-13)


def test_first_order_gradient_is_the_same_on_both_paths():
    x, y = sample(11, 8, d=5, seed=2)
    sig = paper_sigmas("tfd-code")
    fast = torch.autograd.grad(mmd2(x, y, sigmas=sig, block_size=4), (x, y))
    plain = torch.autograd.grad(mmd2(x, y, sigmas=sig, block_size=4, double_backward=True),
                                (x, y))
    for a, b in zip(fast, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-14)


def test_first_order_backward_stays_on_the_fast_path(monkeypatch):
    def fail(*args):
        raise AssertionError("the plain autograd path ran for a first-order gradient")

    monkeypatch.setattr(blocked, "autograd_quadform", fail)
    x, y = sample(8, 6)
    mmd_loss(x, y, sigmas=[1.0, 2.0]).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    with pytest.raises(AssertionError, match="plain autograd path ran"):
        torch.autograd.grad(mmd2(x, y, sigmas=[1.0]), x, create_graph=True)


def test_only_inputs_that_need_it_get_second_order_gradients():
    x, y = sample(6, 5)
    y = y.detach()
    (gx,) = torch.autograd.grad(mmd2(x, y, sigmas=[1.0]), x, create_graph=True)
    gx.pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and y.grad is None


def test_double_backward_false_refuses_a_second_derivative():
    x, y = sample(6, 5)
    loss = mmd2(x, y, sigmas=[1.0], double_backward=False)
    with pytest.raises(RuntimeError, match="first-order gradient only"):
        torch.autograd.grad(loss, x, create_graph=True)
    (gx,) = torch.autograd.grad(mmd2(x, y, sigmas=[1.0], double_backward=False), x)
    assert torch.isfinite(gx).all()
