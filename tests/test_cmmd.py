"""The conditional MMD (gmmn.mmd.cmmd2) against the paper's Gram-matrix formula written with
explicit inverses and traces, the delta-kernel reduction to per-class MMDs, and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

import gmmn.mmd as mmd_mod
from gmmn.mmd import MMDError, cmmd2, cmmd_loss, mmd2

SIGMAS = (0.7, 1.5)


def _gauss(a: torch.Tensor, b: torch.Tensor, sigmas) -> torch.Tensor:
    """Gaussian mixture Gram matrix by a double loop, float64 (sigmas: standard deviations)."""
    out = torch.zeros(len(a), len(b), dtype=torch.float64)
    for i in range(len(a)):
        for j in range(len(b)):
            d2 = float(((a[i].double() - b[j].double()) ** 2).sum())
            out[i, j] = sum(math.exp(-d2 / (2 * s * s)) for s in sigmas)
    return out


def _delta(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.tensor([[float(bool((a[i] == b[j]).all())) for j in range(len(b))]
                         for i in range(len(a))], dtype=torch.float64)


def _reference(x, y, cx, cy, *, lam, cond) -> float:
    """Tr(K_x A_x L_x A_x) + Tr(K_y A_y L_y A_y) - 2 Tr(K_xy A_y L_yx A_x), A = (K + lam I)^-1."""
    cx, cy = cx.reshape(len(cx), -1), cy.reshape(len(cy), -1)
    kx, ky, kxy = cond(cx, cx), cond(cy, cy), cond(cx, cy)
    lx, ly, lyx = _gauss(x, x, SIGMAS), _gauss(y, y, SIGMAS), _gauss(y, x, SIGMAS)
    ax = torch.linalg.inv(kx + lam * torch.eye(len(x), dtype=torch.float64))
    ay = torch.linalg.inv(ky + lam * torch.eye(len(y), dtype=torch.float64))
    return float(torch.trace(kx @ ax @ lx @ ax) + torch.trace(ky @ ay @ ly @ ay)
                 - 2 * torch.trace(kxy @ ay @ lyx @ ax))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lam", [0.1, 1.0, 10.0])
def test_delta_kernel_matches_the_formula_with_explicit_inverses(dtype, lam):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 3, generator=g, dtype=dtype), torch.randn(7, 3, generator=g,
                                                                      dtype=dtype)
    cx, cy = torch.randint(3, (9,), generator=g), torch.randint(3, (7,), generator=g)
    got = cmmd2(x, y, cx, cy, sigmas=SIGMAS, lam=lam)
    assert got.dtype == dtype
    ref = _reference(x, y, cx, cy, lam=lam, cond=_delta)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert float(got) == pytest.approx(ref, rel=tol, abs=tol)


def test_gaussian_condition_kernel_matches_the_formula():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, 2, generator=g, dtype=torch.float64), torch.randn(
        10, 2, generator=g, dtype=torch.float64)
    cx, cy = torch.randn(8, 2, generator=g, dtype=torch.float64), torch.randn(
        10, 2, generator=g, dtype=torch.float64)
    got = cmmd2(x, y, cx, cy, sigmas=SIGMAS, lam=0.3, condition_kernel="gaussian",
                condition_sigmas=[0.5, 2.0])
    ref = _reference(x, y, cx, cy, lam=0.3, cond=lambda a, b: _gauss(a, b, (0.5, 2.0)))
    assert float(got) == pytest.approx(ref, rel=1e-10)


def test_one_hot_rows_and_labels_give_the_same_delta_kernel():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.randn(12, 4, generator=g, dtype=torch.float64)
    lx, ly = torch.randint(4, (12,), generator=g), torch.randint(4, (12,), generator=g)
    eye = torch.eye(4)
    a = cmmd2(x, y, lx, ly, sigmas=SIGMAS)
    b = cmmd2(x, y, eye[lx], eye[ly], sigmas=SIGMAS)
    assert float(a) == pytest.approx(float(b), rel=1e-12)


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_delta_kernel_with_equal_class_counts_is_a_weighted_sum_of_per_class_mmds(lam):
    # CMMD^2 = sum_k (n_k / (n_k + lam))^2 MMD^2_biased(x_k, y_k) when n_k = m_k.
    g = torch.Generator().manual_seed(4)
    labels = torch.tensor([0] * 5 + [1] * 8 + [2] * 3)
    x = torch.randn(16, 3, generator=g, dtype=torch.float64)
    y = torch.randn(16, 3, generator=g, dtype=torch.float64) + 0.5
    # y's labels: the same class counts as x's, on other rows
    cy = labels[torch.randperm(16, generator=g)]
    got = cmmd2(x, y, labels, cy, sigmas=SIGMAS, lam=lam)
    want = sum((int(n) / (int(n) + lam)) ** 2
               * float(mmd2(x[labels == k], y[cy == k], sigmas=SIGMAS))
               for k, n in zip(*labels.unique(return_counts=True), strict=True))
    assert float(got) == pytest.approx(want, rel=1e-7)


def test_delta_kernel_with_unequal_counts_compares_shrunk_class_means():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(10, 2, generator=g, dtype=torch.float64), torch.randn(
        7, 2, generator=g, dtype=torch.float64)
    cx = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    cy = torch.tensor([0, 1, 1, 1, 3, 3, 3])  # class 2 only in x, class 3 only in y
    lam = 0.7
    want = 0.0
    for k in range(4):
        a, b = x[cx == k], y[cy == k]
        sa, sb = len(a) + lam, len(b) + lam  # sum over the class / (n_k + lam)
        kaa = _gauss(a, a, SIGMAS).sum() if len(a) else 0.0
        kbb = _gauss(b, b, SIGMAS).sum() if len(b) else 0.0
        kab = _gauss(a, b, SIGMAS).sum() if len(a) and len(b) else 0.0
        want += float(kaa / sa**2 + kbb / sb**2 - 2 * kab / (sa * sb))
    assert float(cmmd2(x, y, cx, cy, sigmas=SIGMAS, lam=lam)) == pytest.approx(want, rel=1e-10)


def test_small_lam_tends_to_the_plain_sum_of_per_class_mmds():
    g = torch.Generator().manual_seed(6)
    cx = torch.tensor([0] * 6 + [1] * 4)
    cy = torch.tensor([0] * 3 + [1] * 9)
    x, y = torch.randn(10, 2, generator=g, dtype=torch.float64), torch.randn(
        12, 2, generator=g, dtype=torch.float64)
    plain = sum(float(mmd2(x[cx == k], y[cy == k], sigmas=SIGMAS)) for k in (0, 1))
    assert float(cmmd2(x, y, cx, cy, sigmas=SIGMAS, lam=1e-7)) == pytest.approx(plain, rel=1e-5)


def test_it_sees_a_conditional_difference_that_the_joint_mmd_cannot():
    # Same outputs, labels of the two classes swapped: equal marginals, different conditionals.
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(20, 2, generator=g) - 2, torch.randn(20, 2, generator=g) + 2
    x = torch.cat([a, b])
    labels = torch.tensor([0] * 20 + [1] * 20)
    assert float(mmd2(x, x, sigmas=SIGMAS)) == pytest.approx(0.0, abs=1e-6)
    same = cmmd2(x, x, labels, labels, sigmas=SIGMAS)
    swapped = cmmd2(x, x, labels, 1 - labels, sigmas=SIGMAS)
    assert abs(float(same)) < 1e-6
    assert float(swapped) > 1.0


@pytest.mark.integration  # about 0.7 s
def test_gradcheck_in_samples_and_in_gaussian_conditions():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    cx, cy = torch.randint(2, (6,), generator=g), torch.randint(2, (5,), generator=g)
    assert torch.autograd.gradcheck(
        lambda a, b: cmmd2(a, b, cx, cy, sigmas=SIGMAS, lam=0.5), (x, y))
    ex = torch.randn(6, 1, generator=g, dtype=torch.float64, requires_grad=True)
    ey = torch.randn(5, 1, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda a, c: cmmd2(a, y.detach(), c, ey, sigmas=SIGMAS, lam=0.5,
                           condition_kernel="gaussian", condition_sigmas=[1.0]), (x, ex))


def test_the_loss_is_the_square_root_with_a_finite_gradient_at_zero():
    x = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1] * 4)
    loss = cmmd_loss(x, x.detach(), labels, labels, sigmas=SIGMAS)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    assert bool(torch.isfinite(x.grad).all())
    y = torch.randn(8, 2, dtype=torch.float64)
    xd = x.detach()
    assert float(cmmd_loss(xd, y, labels, labels, sigmas=SIGMAS)) == pytest.approx(
        math.sqrt(float(cmmd2(xd, y, labels, labels, sigmas=SIGMAS))), rel=1e-12)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cx": torch.zeros(4)}, r"cx has shape \(4,\); pass one condition per sample: \(5,\)"),
    ({"cy": torch.zeros(6, 2)}, "cx has 1 condition columns but cy has 2"),
    ({"lam": 0.0}, r"lam=0.0 must be a finite number > 0"),
    ({"lam": float("nan")}, "must be a finite number > 0"),
    ({"condition_kernel": "cosine"}, "unknown condition_kernel 'cosine'"),
    ({"condition_kernel": "gaussian"}, "needs condition_sigmas"),
    ({"condition_sigmas": [1.0]}, "with condition_kernel='delta' drop it"),
    ({"cx": [0, 1, 0, 1, 0]}, "cx is a list; pass a torch.Tensor"),
])
def test_bad_arguments_are_one_clear_error(kwargs, message):
    args = {"cx": torch.zeros(5), "cy": torch.zeros(6), **kwargs}
    with pytest.raises(MMDError, match=message):
        cmmd2(torch.randn(5, 2), torch.randn(6, 2), args.pop("cx"), args.pop("cy"),
              sigmas=SIGMAS, **args)


def test_gaussian_conditions_must_be_floats():
    with pytest.raises(MMDError, match="cx must hold finite floats"):
        cmmd2(torch.randn(3, 2), torch.randn(3, 2), torch.tensor([0, 1, 2]),
              torch.tensor([0, 1, 2]), sigmas=SIGMAS, condition_kernel="gaussian",
              condition_sigmas=[1.0])


def test_batches_over_the_memory_budget_are_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(mmd_mod, "CMMD_MEMORY_BUDGET", mmd_mod.cmmd_bytes(10, 10) - 1)
    dense = {"sigmas": SIGMAS, "condition_kernel": "gaussian", "condition_sigmas": [1.0]}
    with pytest.raises(MMDError, match=r"the CMMD of 10 and 10 rows would hold .* pass "
                                       r"smaller batches"):
        cmmd2(torch.randn(10, 2), torch.randn(10, 2), torch.zeros(10), torch.zeros(10), **dense)
    assert float(cmmd2(torch.randn(9, 2), torch.randn(10, 2), torch.zeros(9), torch.zeros(10),
                       **dense)) >= 0  # one row fewer fits
    # The delta kernel streams over Gram tiles per class: no such limit.
    assert float(cmmd2(torch.randn(10, 2), torch.randn(10, 2), torch.zeros(10),
                       torch.zeros(10), sigmas=SIGMAS)) >= 0


def test_the_per_class_route_of_the_delta_kernel_equals_the_dense_route():
    from gmmn.mmd import _spec, cmmd2_dense

    g = torch.Generator().manual_seed(9)
    x, y = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(
        25, 3, generator=g, dtype=torch.float64)
    cx, cy = torch.randint(5, (40, 1), generator=g), torch.randint(6, (25, 1), generator=g)
    dense = cmmd2_dense(x, y, cx, cy, spec=_spec("gaussian", SIGMAS, None),
                        condition_kernel="delta", condition_spec=None, lam=0.4)
    assert float(cmmd2(x, y, cx, cy, sigmas=SIGMAS, lam=0.4)) == pytest.approx(float(dense),
                                                                             rel=1e-10)
