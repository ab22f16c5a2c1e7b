"""MMD estimators against brute-force float64 double loops, gradients by gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmn.mmd import MMDError, median_heuristic, mmd2, mmd_loss, paper_sigmas
from gmmn.mmd._kernels import make_spec, power_plan

F64 = torch.float64


def k_ref(a, b, kernel, sigmas, weights):
    """One kernel value by the textbook formula, in Python floats."""
    d2 = sum((float(u) - float(v)) ** 2 for u, v in zip(a, b, strict=True))
    out = 0.0
    for s, w in zip(sigmas, weights, strict=True):
        if kernel == "gaussian":
            out += w * math.exp(-d2 / (2 * s * s))
        elif kernel == "laplacian":
            out += w * math.exp(-math.sqrt(d2) / s)
        else:
            out += w / math.sqrt(1 + d2 / (s * s))
    return out


def mmd2_ref(x, y, estimator, kernel="gaussian", sigmas=(1.0,), weights=None):
    """Double loops over the definitions of the biased, unbiased and linear estimators."""
    weights = weights or [1.0] * len(sigmas)
    n, m = len(x), len(y)

    def k(a, b):
        return k_ref(a, b, kernel, sigmas, weights)

    if estimator == "linear":
        half = min(n, m) // 2
        hs = [k(x[2 * i], x[2 * i + 1]) + k(y[2 * i], y[2 * i + 1])
              - k(x[2 * i], y[2 * i + 1]) - k(x[2 * i + 1], y[2 * i]) for i in range(half)]
        return sum(hs) / half
    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if estimator == "biased" or i != j)
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if estimator == "biased" or i != j)
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m))
    if estimator == "biased":
        return sxx / n**2 + syy / m**2 - 2 * sxy / (n * m)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)


def sample(n, m, d=3, shift=0.4, seed=0, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    y = torch.randn(m, d, generator=gen, dtype=dtype) * 1.3 + shift
    return x, y


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq"])
@pytest.mark.parametrize("estimator", ["biased", "unbiased", "linear"])
def test_estimators_match_double_loop(estimator, kernel):
    x, y = sample(9, 7)
    sig, w = (0.7, 2.0), (1.0, 0.5)
    got = mmd2(x, y, sigmas=sig, weights=w, estimator=estimator, kernel=kernel, block_size=4)
    ref = mmd2_ref(x, y, estimator, kernel, sig, w)
    assert got.dtype == F64
    assert float(got) == pytest.approx(ref, rel=1e-10, abs=1e-12)


def test_paper_scales_use_the_power_chain_and_match_double_loop():
    sig = paper_sigmas("mnist")
    base, mult = power_plan(tuple(0.5 / s**2 for s in sig))
    assert base == pytest.approx(1 / 160, rel=1e-12) and mult == (40, 16, 8, 4, 2, 1)
    x, y = sample(8, 6, shift=1.0)
    for est in ("biased", "unbiased"):
        ref = mmd2_ref(x * 2, y * 2, est, sigmas=sig)
        assert float(mmd2(x * 2, y * 2, sigmas=sig, estimator=est)) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("name", ["mnist", "tfd", "mnist-code", "tfd-code"])
def test_power_chain_equals_one_exp_per_scale(name):
    from gmmn.mmd._blocked import QuadFormMMD

    x, y = sample(30, 25, d=5, shift=0.2)
    x, y = x * 3, y * 3
    sig = tuple(paper_sigmas(name))
    fast, slow = make_spec("gaussian", sig, (1.0,) * len(sig)), make_spec(
        "gaussian", sig, (1.0,) * len(sig), fast=False)
    assert fast.plan is not None and slow.plan is None
    coefs = (1 / 900, 1 / 625, -1 / 750)
    a = QuadFormMMD.apply(x, y, fast, coefs, 0.0, 8)
    b = QuadFormMMD.apply(x, y, slow, coefs, 0.0, 8)
    assert float(a) == pytest.approx(float(b), rel=1e-12)


def test_no_power_chain_for_incommensurate_scales():
    assert power_plan((0.5, 0.5 * math.pi)) is None


def test_paper_sigmas_are_square_roots_of_the_released_variances():
    assert paper_sigmas("mnist") == pytest.approx([math.sqrt(v) for v in (2, 5, 10, 20, 40, 80)])
    assert paper_sigmas("tfd") == pytest.approx([math.sqrt(v) for v in (5, 10, 20, 40, 80, 160)])
    assert paper_sigmas("mnist-code") == [1.0]
    assert paper_sigmas("tfd-code") == pytest.approx([math.sqrt(v) for v in (1, 2, 5, 10, 20, 40)])
    with pytest.raises(MMDError, match="unknown scale set"):
        paper_sigmas("cifar")


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq"])
def test_gradcheck_mmd2_through_the_custom_function(estimator, kernel):
    x, y = sample(7, 6, shift=0.5)
    x.requires_grad_()
    y.requires_grad_()

    def f(a, b):
        return mmd2(a, b, sigmas=[0.8, 1.6], estimator=estimator, kernel=kernel, block_size=3)

    assert torch.autograd.gradcheck(f, (x, y))


def test_gradcheck_one_exp_per_scale_path():
    sig = [0.8, 0.8 * math.pi]  # no common base: one exp per scale
    assert make_spec("gaussian", tuple(sig), (1.0, 1.0)).plan is None
    x, y = sample(7, 5, shift=0.5)
    x.requires_grad_()
    y.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: mmd2(a, b, sigmas=sig, weights=[0.3, 1.2], block_size=4), (x, y))


def test_gradcheck_mmd_loss_and_linear_and_rff():
    x, y = sample(8, 6, shift=0.5)
    x.requires_grad_()
    y.requires_grad_()
    sig = paper_sigmas("tfd-code")
    assert torch.autograd.gradcheck(lambda a, b: mmd_loss(a, b, sigmas=sig), (x, y))
    assert torch.autograd.gradcheck(
        lambda a, b: mmd2(a, b, sigmas=[1.0], estimator="linear"), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: mmd2(
        a, b, sigmas=[1.0], estimator="rff", num_features=16,
        generator=torch.Generator().manual_seed(3)), (x, y))


def test_no_grad_gives_the_same_value_without_a_graph():
    x, y = sample(10, 12)
    x.requires_grad_()
    with torch.no_grad():
        a = mmd_loss(x, y, sigmas=[1.0, 2.0])
    b = mmd_loss(x, y, sigmas=[1.0, 2.0])
    assert not a.requires_grad and b.requires_grad
    assert float(a) == float(b.detach())


def test_gradient_only_for_inputs_that_need_it():
    x, y = sample(10, 12)
    x.requires_grad_()
    mmd_loss(x, y, sigmas=[1.0]).backward()
    assert x.grad is not None and y.grad is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mmd_of_a_set_with_itself_is_zero_with_zero_gradient(dtype):
    x, _ = sample(20, 1, d=4, dtype=dtype)
    a = x.clone().requires_grad_()
    loss = mmd_loss(a, x, sigmas=paper_sigmas("mnist"))
    loss.backward()
    tol = 1e-6 if dtype == torch.float64 else 2e-3
    assert float(loss.detach()) <= tol
    assert torch.isfinite(a.grad).all()
    assert float(a.grad.abs().max()) <= tol
    assert float(mmd2(x, x, sigmas=[1.0], estimator="unbiased")) == pytest.approx(
        mmd2_ref(x.double(), x.double(), "unbiased"), abs=1e-5)


def test_loss_gradient_at_a_clamped_zero_is_zero_not_huge():
    x = torch.zeros(3, 2, dtype=F64, requires_grad=True)
    mmd_loss(x, torch.zeros(4, 2, dtype=F64), sigmas=[1.0]).backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_symmetry_and_permutation_invariance():
    x, y = sample(15, 11, shift=0.3)
    base = mmd2(x, y, sigmas=[1.0, 2.0])
    assert float(mmd2(y, x, sigmas=[1.0, 2.0])) == pytest.approx(float(base), rel=1e-12)
    gen = torch.Generator().manual_seed(5)
    px, py = torch.randperm(15, generator=gen), torch.randperm(11, generator=gen)
    for est in ("biased", "unbiased"):
        a = mmd2(x, y, sigmas=[1.0], estimator=est)
        b = mmd2(x[px], y[py], sigmas=[1.0], estimator=est)
        assert float(b) == pytest.approx(float(a), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocked_equals_dense_in_value_and_gradient(dtype):
    x, y = sample(23, 17, d=6, dtype=dtype)
    sig = paper_sigmas("mnist")
    results = []
    for block in (40, 5, 1):
        a = x.clone().requires_grad_()
        b = y.clone().requires_grad_()
        v = mmd2(a, b, sigmas=[s / 2 for s in sig], block_size=block)
        v.backward()
        results.append((v.detach(), a.grad, b.grad))
    tol = 1e-12 if dtype == F64 else 1e-5
    for got in results[1:]:
        for g, r in zip(got, results[0], strict=True):
            torch.testing.assert_close(g, r, rtol=tol, atol=tol)


def test_rff_converges_to_the_exact_biased_estimate():
    x, y = sample(60, 50, d=4, shift=0.7)
    exact = float(mmd2(x, y, sigmas=[1.0, 2.0]))
    errors = []
    for feats in (16, 256, 8192):
        runs = [float(mmd2(x, y, sigmas=[1.0, 2.0], estimator="rff", num_features=feats,
                           generator=torch.Generator().manual_seed(s))) for s in range(4)]
        errors.append(sum(abs(r - exact) for r in runs) / 4)
    assert errors[2] < errors[0] / 4
    assert errors[2] < 0.05 * exact


def test_rff_is_reproducible_with_a_generator():
    x, y = sample(10, 10)
    a = mmd2(x, y, sigmas=[1.0], estimator="rff", generator=torch.Generator().manual_seed(1))
    b = mmd2(x, y, sigmas=[1.0], estimator="rff", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


@pytest.mark.parametrize("estimator", ["biased", "unbiased", "linear", "rff"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_result_keeps_dtype_and_device(estimator, dtype):
    x, y = sample(12, 10, dtype=dtype)
    out = mmd2(x, y, sigmas=[1.0], estimator=estimator, generator=torch.Generator().manual_seed(0))
    assert out.dim() == 0 and out.dtype == dtype and out.device == x.device
    ref = mmd2(x.double(), y.double(), sigmas=[1.0], estimator=estimator,
               generator=torch.Generator().manual_seed(0))
    assert float(out) == pytest.approx(float(ref), rel=1e-3, abs=1e-4)


def test_unbiased_can_be_negative():
    # Under H0 the unbiased estimate is 0 in expectation, so some draws fall below 0.
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(10, 3, dtype=F64, generator=gen)
    vals = [float(mmd2(x, torch.randn(10, 3, dtype=F64, generator=gen), sigmas=[1.0],
                       estimator="unbiased")) for _ in range(20)]
    assert min(vals) < 0


def test_median_heuristic_is_the_median_pairwise_distance():
    x = torch.tensor([[0.0], [1.0]], dtype=F64)
    y = torch.tensor([[3.0]], dtype=F64)
    # distances 1, 3, 2 -> median 2
    assert median_heuristic(x, y) == pytest.approx(2.0)
    big = torch.randn(1500, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    assert 1.0 < median_heuristic(big, big + 0.1) < 2.5


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 9), m=st.integers(2, 9), block=st.integers(1, 6),
       shift=st.floats(-2, 2), sigma=st.floats(0.3, 5))
def test_property_blocked_biased_matches_reference(n, m, block, shift, sigma):
    x, y = sample(n, m, d=2, shift=shift, seed=n * 10 + m)
    got = float(mmd2(x, y, sigmas=[sigma], block_size=block))
    assert got == pytest.approx(mmd2_ref(x, y, "biased", sigmas=(sigma,)), rel=1e-9, abs=1e-12)
    assert got >= -1e-12


BAD = [
    (lambda x, y: mmd2(x, torch.randn(4, 2), sigmas=[1.0]), "same number of columns"),
    (lambda x, y: mmd2(x[:0], y, sigmas=[1.0]), "x is empty"),
    (lambda x, y: mmd2(x, y[:0], sigmas=[1.0]), "y is empty"),
    (lambda x, y: mmd2(x.clone().fill_(float("nan")), y, sigmas=[1.0]), "x contains NaN"),
    (lambda x, y: mmd2(x, y.clone().fill_(float("inf")), sigmas=[1.0]), "y contains NaN or inf"),
    (lambda x, y: mmd2(x, y, sigmas=[1.0, 0.0]), "must all be finite and > 0"),
    (lambda x, y: mmd2(x, y, sigmas=[-1.0]), "must all be finite and > 0"),
    (lambda x, y: mmd2(x, y, sigmas=[]), "sigmas is empty"),
    (lambda x, y: mmd2(x, y, sigmas=[1.0, 2.0], weights=[1.0]), "one weight per scale"),
    (lambda x, y: mmd2(x, y, sigmas=[1.0], weights=[-1.0]), "must be finite, >= 0"),
    (lambda x, y: mmd2(x, y, sigmas=[1.0], estimator="quadratic"), "unknown estimator"),
    (lambda x, y: mmd2(x, y, sigmas=[1.0], kernel="cosine"), "unknown kernel"),
    (lambda x, y: mmd2(x[0], y, sigmas=[1.0]), "pass a 2-D tensor"),
    (lambda x, y: mmd2(x[None], y, sigmas=[1.0]), "pass a 2-D tensor"),
    (lambda x, y: mmd2(x, y.float(), sigmas=[1.0]), "one dtype and device"),
    (lambda x, y: mmd2(x.long(), y.long(), sigmas=[1.0]), "convert it to float32"),
    (lambda x, y: mmd2(x[:1], y, sigmas=[1.0], estimator="unbiased"), "needs >= 2 samples"),
    (lambda x, y: mmd2(x[:1], y, sigmas=[1.0], estimator="linear"), "needs >= 2 samples"),
    (lambda x, y: mmd2(x, y, sigmas=[1.0], estimator="rff", kernel="imq"), "only kernel='gaussian"),
    (lambda x, y: mmd2(x, y, sigmas=[1.0, 2.0], estimator="rff", num_features=1), "num_features"),
    (lambda x, y: mmd2(x, y, sigmas=[1.0], block_size=0), "block_size=0"),
    (lambda x, y: mmd2(x.numpy(), y, sigmas=[1.0]), "pass a torch.Tensor"),
]


@pytest.mark.parametrize(("call", "message"), BAD)
def test_bad_input_raises_one_clear_mmd_error(call, message):
    x, y = sample(5, 4, d=3)
    with pytest.raises(MMDError, match=message):
        call(x, y)


def test_linear_generator_shuffles_x_and_y_before_pairing():
    x, y = sample(10, 10)
    gen = torch.Generator().manual_seed(1)
    px, py = torch.randperm(10, generator=gen), torch.randperm(10, generator=gen)
    got = mmd2(x, y, sigmas=[1.0], estimator="linear", generator=torch.Generator().manual_seed(1))
    assert float(got) == pytest.approx(mmd2_ref(x[px], y[py], "linear"), rel=1e-12)


def test_linear_on_sorted_rows_is_biased_until_shuffled():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 1, generator=gen, dtype=F64)
    y = torch.randn(4000, 1, generator=gen, dtype=F64)  # one distribution: MMD^2 = 0
    x = x[x[:, 0].argsort()]  # consecutive rows of x are near neighbours
    ordered = float(mmd2(x, y, sigmas=[1.0], estimator="linear"))
    shuffled = [float(mmd2(x, y, sigmas=[1.0], estimator="linear",
                           generator=torch.Generator().manual_seed(s))) for s in range(3)]
    assert ordered > 0.25
    assert all(abs(v) < 0.06 for v in shuffled)


def test_linear_warns_when_unequal_sizes_drop_rows():
    x, y = sample(9, 14)
    with pytest.warns(UserWarning, match="8 rows of each set: 1 of x's 9 and 6 of y's 14"):
        mmd2(x, y, sigmas=[1.0], estimator="linear")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mmd2(x, y[:9], sigmas=[1.0], estimator="linear")  # n == m: nothing to say


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("estimator", ["biased", "unbiased", "linear", "rff"])
def test_half_precision_is_computed_in_float32_with_a_warning(half, estimator):
    x, y = sample(40, 30, d=5, shift=0.5)
    xh, yh = x.to(half).requires_grad_(), y.to(half)
    with pytest.warns(UserWarning, match="computed in torch.float32 and returned in float32"):
        got = mmd2(xh, yh, sigmas=[1.0, 2.0], estimator=estimator,
                   generator=torch.Generator().manual_seed(0))
    assert got.dtype == torch.float32
    # Exactly the MMD of the rounded data: no further half-precision error.
    ref = mmd2(xh.detach().double(), yh.double(), sigmas=[1.0, 2.0], estimator=estimator,
               generator=torch.Generator().manual_seed(0))
    assert float(got) == pytest.approx(float(ref), rel=1e-5, abs=1e-7)
    got.backward()
    assert xh.grad.dtype == half and torch.isfinite(xh.grad.float()).all()


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq"])
@pytest.mark.parametrize(("scale", "sigma"), [(1e20, 1.0), (1.0, 1e-30)])
def test_float32_beyond_its_range_computes_in_float64_not_nan(kernel, scale, sigma):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(50, 4, generator=gen) * scale).requires_grad_()
    y = torch.rand(50, 4, generator=gen) * scale
    with pytest.warns(UserWarning, match="computed in torch.float64"):
        got = mmd2(x, y, sigmas=[sigma], kernel=kernel)
    # Every pair is ~1e20 sigma apart: only the k(z_i, z_i) = 1 terms remain.
    assert got.dtype == torch.float32 and float(got) == pytest.approx(1 / 50 + 1 / 50)
    got.backward()
    # No pair interacts, so the true gradient is ~0 (a k(z_i, z_i) term has none at all).
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().max()) < 1e-6
    with pytest.warns(UserWarning, match="computed in torch.float64"):
        assert math.isfinite(float(mmd_loss(x, y, sigmas=[sigma])))


def test_scales_float64_cannot_hold_raise_one_clear_error():
    x, y = sample(6, 5)
    with pytest.raises(MMDError, match="overflow torch.float64; rescale the data and the sig"):
        mmd2(x * 1e160, y * 1e160, sigmas=[1.0])
    with pytest.raises(MMDError, match="with smallest sigma 1e-100: the kernel exponents"):
        mmd2(x * 1e100, y, sigmas=[1e-100, 1.0])
    assert math.isfinite(float(mmd2(x, y, sigmas=[1e-140])))  # tiny, yet representable
    with pytest.raises(MMDError, match="where 1/\\(2 sigma\\^2\\) cannot be represented"):
        mmd2(x, y, sigmas=[1e-200])
    with pytest.raises(MMDError, match="where 1/\\(2 sigma\\^2\\) cannot be represented"):
        mmd2(x, y, sigmas=[1e200])
    from gmmn.mmd import two_sample_test

    with pytest.raises(MMDError, match="overflow torch.float64"):
        two_sample_test(x * 1e160, y, permutations=5)
