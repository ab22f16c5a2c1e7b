"""Parzen log-likelihood against brute-force float64 double loops, and the protocol rules."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmn.data import Splits, load_dataset
from gmmn.errors import ConfigError, DataError
from gmmn.evaluate import (
    GAN_SIGMAS,
    MNIST_SIGMAS,
    choose_on_validation,
    parzen_log_densities,
    parzen_log_likelihood,
    parzen_protocol,
    select_parzen_sigma,
)


def reference(samples, data, sigmas) -> np.ndarray:
    """Double loop in float64: distances by differences, log-sum-exp with the max removed."""
    s = np.asarray(samples, dtype=np.float64)
    x = np.asarray(data, dtype=np.float64)
    n, d = s.shape
    out = np.empty((len(x), len(sigmas)))
    for i in range(len(x)):
        dist = np.array([np.sum((x[i] - s[j]) ** 2) for j in range(n)])
        for k, sig in enumerate(sigmas):
            a = -dist / (2 * sig * sig)
            lse = a.max() + math.log(np.sum(np.exp(a - a.max())))
            out[i, k] = lse - math.log(n) - 0.5 * d * math.log(2 * math.pi * sig * sig)
    return out


def test_random_data_matches_reference_for_every_sigma_and_block_size():
    g = torch.Generator().manual_seed(0)
    s, x = torch.rand(120, 30, generator=g), torch.rand(70, 30, generator=g)
    sig = [0.05, 0.1, 0.3, 1.0, 3.0]
    ref = reference(s, x, sig)
    for bs in (None, 1, 13, 70):
        got = parzen_log_densities(s, x, sigmas=sig, batch_size=bs).numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", ["sphere", "one-hot"])
def test_all_distances_alike_is_exact_where_truncation_would_fail(shape, caplog):
    # Every sample is equally far from every data point, so all N terms carry equal weight:
    # keeping only the near ones would be off by up to log N = 5.3 nats.
    g = torch.Generator().manual_seed(1)
    n, d, r = 200, 300, 2.0
    if shape == "sphere":
        s = torch.randn(n, d, generator=g)
        s = r * s / s.norm(dim=1, keepdim=True)
        x = torch.zeros(3, d)
        dist2 = r * r
    else:
        s = r * torch.eye(d)[:n]
        x = r * torch.eye(d)[n:n + 5]
        dist2 = 2 * r * r
    sig = [0.1, 0.5, 2.0]
    with caplog.at_level(logging.DEBUG, logger="gmmn.parzen"):
        got = parzen_log_densities(s, x, sigmas=sig).numpy()
    assert "dense float64 fallback" in caplog.text
    closed = [-dist2 / (2 * q * q) - 0.5 * d * math.log(2 * math.pi * q * q) for q in sig]
    # float32 points lie on the sphere to ~1e-7 relative only: the closed form to 1e-4.
    np.testing.assert_allclose(got, np.broadcast_to(closed, got.shape), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got, reference(s, x, sig), rtol=0, atol=1e-6)


def test_float32_cancellation_is_avoided_far_from_the_origin(caplog):
    # ||x||^2 ~ 8e6: a float32 ||x||^2 + ||s||^2 - 2 x.s is off by ~1 in distance, i.e. tens of
    # nats at sigma 0.1. The naive float32 value must be wrong here for the test to mean much.
    g = torch.Generator().manual_seed(2)
    s = 100.0 + torch.rand(400, 784, generator=g)
    x = s[:40] + 0.02 * torch.randn(40, 784, generator=g)
    sig = [0.1, 0.2]
    ref = reference(s, x, sig)
    naive = torch.logsumexp(-(torch.cdist(x, s, compute_mode="use_mm_for_euclid_dist") ** 2)
                            / (2 * 0.1**2), dim=1) - math.log(400) \
        - 392 * math.log(2 * math.pi * 0.01)
    assert np.abs(naive.numpy() - ref[:, 0]).max() > 0.01
    with caplog.at_level(logging.DEBUG, logger="gmmn.parzen"):
        got = parzen_log_densities(s, x, sigmas=sig).numpy()
    assert "fallback" not in caplog.text  # the fast path, not the dense one, did this
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), m=st.integers(1, 20), d=st.integers(1, 20),
       scale=st.sampled_from([0.01, 1.0, 30.0]), offset=st.sampled_from([0.0, 50.0]),
       sigma=st.floats(0.01, 10.0), seed=st.integers(0, 2**16))
def test_property_matches_reference(n, m, d, scale, offset, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    s = offset + scale * torch.randn(n, d, generator=g)
    x = offset + scale * torch.randn(m, d, generator=g)
    got = parzen_log_densities(s, x, sigmas=[sigma, 2 * sigma]).numpy()
    np.testing.assert_allclose(got, reference(s, x, [sigma, 2 * sigma]), rtol=1e-9, atol=1e-5)


def test_mean_stderr_and_sigma_selection_follow_the_reference():
    g = torch.Generator().manual_seed(3)
    s, x = torch.rand(150, 16, generator=g), torch.rand(60, 16, generator=g)
    ref = reference(s, x, MNIST_SIGMAS)
    best = MNIST_SIGMAS[int(np.argmax(ref.mean(0)))]
    assert best not in (MNIST_SIGMAS[0], MNIST_SIGMAS[-1])  # an interior maximum: not trivial
    assert select_parzen_sigma(s, x, sigmas=MNIST_SIGMAS) == best
    k = MNIST_SIGMAS.index(best)
    mean, stderr = parzen_log_likelihood(s, x, sigma=best)
    assert mean == pytest.approx(ref[:, k].mean(), abs=1e-6)
    assert stderr == pytest.approx(ref[:, k].std() / math.sqrt(60), rel=1e-6)


def test_progress_counts_rows_and_bad_inputs_raise_user_errors():
    calls = []
    parzen_log_densities(torch.rand(10, 3), torch.rand(25, 3), sigmas=[0.2], batch_size=10,
                         progress=lambda done, total: calls.append((done, total)))
    assert calls == [(10, 25), (20, 25), (25, 25)]
    with pytest.raises(DataError, match="columns"):
        parzen_log_densities(torch.rand(10, 3), torch.rand(5, 4), sigmas=[0.2])
    with pytest.raises(DataError, match="NaN"):
        parzen_log_densities(torch.full((4, 3), math.nan), torch.rand(5, 3), sigmas=[0.2])
    with pytest.raises(ConfigError, match="bandwidths"):
        parzen_log_densities(torch.rand(10, 3), torch.rand(5, 3), sigmas=[0.0])


def _pool_sampler(pool: torch.Tensor):
    seeds = []

    def sample_fn(n, *, seed):
        seeds.append(seed)
        return pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]]
    return sample_fn, seeds


def test_protocol_selects_on_validation_and_scores_fresh_samples():
    sp = load_dataset("digits")
    sample_fn, seeds = _pool_sampler(sp.train)
    res = parzen_protocol(sample_fn, sp, n_samples=300, seed=5)
    assert seeds == [5, 6]
    val_s, test_s = sample_fn(300, seed=5), sample_fn(300, seed=6)
    ref_curve = reference(val_s, sp.validation, MNIST_SIGMAS).mean(0)
    np.testing.assert_allclose(res.validation_curve, ref_curve, atol=1e-6)
    assert res.sigma == MNIST_SIGMAS[int(np.argmax(ref_curve))]
    mean, stderr = parzen_log_likelihood(test_s, sp.test, sigma=res.sigma)
    assert (res.mean, res.stderr, res.n_test) == (pytest.approx(mean), pytest.approx(stderr),
                                                  len(sp.test))


def _tfd_like(g) -> Splits:
    # Folds at different scales, so per-fold best bandwidths differ from the pooled choice.
    vf = tuple(0.5 + k * 0.03 * torch.randn(30, 8, generator=g) for k in range(1, 6))
    tf = tuple(0.5 + k * 0.03 * torch.randn(20, 8, generator=g) for k in range(1, 6))
    return Splits("tfd", vf[0], vf[0], tf[0], None, None, None, None, "test",
                  validation_folds=vf, test_folds=tf)


def test_tfd_protocol_one_sigma_for_all_folds_and_fold_mean_stderr():
    g = torch.Generator().manual_seed(4)
    sp = _tfd_like(g)
    pool = 0.5 + 0.08 * torch.randn(400, 8, generator=g)
    sample_fn, _ = _pool_sampler(pool)
    res = parzen_protocol(sample_fn, sp, n_samples=200)
    grid = res.sigmas
    assert grid[0] == 0.05 and grid[-1] == 0.24 and len(grid) == 20
    val_s, test_s = sample_fn(200, seed=0), sample_fn(200, seed=1)
    curves = np.stack([reference(val_s, v, grid).mean(0) for v in sp.validation_folds])
    per_fold_best = {grid[int(np.argmax(c))] for c in curves}
    assert len(per_fold_best) > 1  # the pooled rule matters for this data
    assert res.sigma == grid[int(np.argmax(curves.mean(0)))]
    k = grid.index(res.sigma)
    fold_means = np.array([reference(test_s, t, grid)[:, k].mean() for t in sp.test_folds])
    assert res.mean == pytest.approx(fold_means.mean(), abs=1e-6)
    assert res.stderr == pytest.approx(fold_means.std() / math.sqrt(5), rel=1e-6)
    np.testing.assert_allclose(res.fold_means, fold_means, atol=1e-6)


def test_gan_variant_uses_one_sample_set_and_the_first_1000_validation_rows():
    g = torch.Generator().manual_seed(5)
    pool = torch.rand(300, 6, generator=g)
    # Rows past 1000 are far away: counting them would push the choice to the widest sigma.
    valid = torch.cat([torch.rand(1000, 6, generator=g), 5 + torch.rand(200, 6, generator=g)])
    sp = Splits("mnist", pool, valid, torch.rand(50, 6, generator=g), None, None, None, None, "t")
    sample_fn, seeds = _pool_sampler(pool)
    res = parzen_protocol(sample_fn, sp, n_samples=100, variant="gan")
    assert seeds == [0] and res.sigmas == GAN_SIGMAS
    s = sample_fn(100, seed=0)
    curve = reference(s, valid[:1000], GAN_SIGMAS).mean(0)
    assert res.sigma == GAN_SIGMAS[int(np.argmax(curve))] != GAN_SIGMAS[-1]
    assert res.mean == pytest.approx(parzen_log_likelihood(s, sp.test, sigma=res.sigma)[0])
    with pytest.raises(ConfigError, match="variant"):
        parzen_protocol(sample_fn, sp, variant="nope")


def test_choose_on_validation_picks_the_best_validation_score_without_reading_the_test_set():
    g = torch.Generator().manual_seed(6)
    pool = torch.rand(200, 5, generator=g)
    valid = pool[:60] + 0.02 * torch.randn(60, 5, generator=g)
    # A test set of NaN: any use of it would turn a score into NaN or raise.
    sp = Splits("mnist", pool, valid, torch.full((40, 5), float("nan")), None, None, None,
                None, "t")
    near, seeds = _pool_sampler(pool)
    far, _ = _pool_sampler(pool + 0.3)  # the same pool shifted off the validation data
    choice = choose_on_validation({0.5: far, 1.0: near, "wide": _pool_sampler(pool * 3)[0]},
                                  sp, n_samples=80, seed=3)
    assert seeds == [3]  # one draw per candidate, with the protocol's validation seed
    for label, fn in ((0.5, far), (1.0, near)):
        curve = reference(fn(80, seed=3), valid, MNIST_SIGMAS).mean(0)
        assert choice.scores[label]["validation_ll"] == pytest.approx(curve.max(), abs=1e-6)
        assert choice.scores[label]["sigma"] == MNIST_SIGMAS[int(np.argmax(curve))]
    assert choice.best == 1.0 and choice.to_dict()["chosen"] == 1.0
    assert all(np.isfinite(r["validation_ll"]) for r in choice.scores.values())
    with pytest.raises(ConfigError, match="at least one"):
        choose_on_validation({}, sp)
