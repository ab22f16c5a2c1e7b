"""Metrics on known cases: closed forms, brute-force double loops, real vs collapsed sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from gmmn.data import load_dataset
from gmmn.errors import DataError
from gmmn.evaluate.metrics import (
    _unbiased_poly_mmd2,
    class_coverage,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_inception_distance,
    nearest_neighbours,
    precision_recall,
)


def _random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d


def test_frechet_closed_form_for_diagonal_gaussians():
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    va, vb = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expect = 1.0 + 4.0 + ((1 - 3) ** 2 + (2 - 1) ** 2 + 0.0)
    got = frechet_distance_from_stats(mu_a, np.diag(va), mu_b, np.diag(vb))
    assert got == pytest.approx(expect, abs=1e-10)


@pytest.mark.parametrize("rank", [None, 3])
def test_frechet_matches_scipy_sqrtm_formula_even_for_singular_covariances(rank):
    rng = np.random.default_rng(0)
    ca, cb = _random_cov(rng, 8, rank), _random_cov(rng, 8, rank)
    mu_a, mu_b = rng.standard_normal(8), rng.standard_normal(8)
    ref = (mu_a - mu_b) @ (mu_a - mu_b) + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
    got = frechet_distance_from_stats(mu_a, ca, mu_b, cb)
    assert got == pytest.approx(ref, rel=1e-6, abs=1e-6)


def test_frechet_of_identical_sets_is_zero_and_of_shifted_sets_the_shift():
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(1))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    # A shift leaves the covariance alone: FD = |shift|^2 (up to float32 rounding of x + 0.5).
    assert frechet_distance(x, x + 0.5) == pytest.approx(6 * 0.25, abs=1e-6)


def test_unbiased_kid_statistic_matches_a_double_loop():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(7, 4, generator=g).double(), torch.randn(5, 4, generator=g).double()

    def k(a, b):
        return (float(a @ b) / 4 + 1) ** 3
    sxx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
    syy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    sxy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert _unbiased_poly_mmd2(x, y) == pytest.approx(sxx + syy - 2 * sxy, rel=1e-12)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(3)
    vals, biased = [], []
    for _ in range(300):
        x, y = torch.randn(20, 5, generator=g).double(), torch.randn(20, 5, generator=g).double()
        vals.append(_unbiased_poly_mmd2(x, y))
        kxx, kyy = (x @ x.T / 5 + 1) ** 3, (y @ y.T / 5 + 1) ** 3
        biased.append(float(kxx.mean() + kyy.mean() - 2 * ((x @ y.T / 5 + 1) ** 3).mean()))
    se = np.std(vals) / math.sqrt(len(vals))
    assert abs(np.mean(vals)) < 3 * se
    assert np.mean(biased) > 10 * se  # the V-statistic's bias is visible at this size
    a = torch.randn(400, 5, generator=g)
    mean, std = kernel_inception_distance(a, a + 1.0, n_subsets=5, subset_size=100)
    assert mean > 10 * max(std, 1e-3)


def test_coverage_of_uniform_and_collapsed_labels():
    full = class_coverage(torch.arange(100) % 10, n_classes=10)
    assert (full["classes_present"], full["kl"], full["total_variation"]) == (1.0, 0.0, 0.0)
    one = class_coverage(torch.full((50,), 3), n_classes=10)
    assert one["classes_present"] == 0.1
    assert one["kl"] == pytest.approx(math.log(10))
    assert one["total_variation"] == pytest.approx(0.9)
    ref = torch.tensor([0] * 30 + [1] * 70)
    assert class_coverage(ref, n_classes=2, reference=ref)["kl"] == pytest.approx(0.0)
    with pytest.raises(DataError):
        class_coverage(torch.tensor([10]), n_classes=10)


def test_precision_recall_matches_a_brute_force_definition():
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(40, 3, generator=g), 0.5 + torch.randn(30, 3, generator=g)

    def radii(s):
        d = torch.cdist(s.double(), s.double())
        return torch.sort(d, dim=1).values[:, 3]  # column 0 is the point itself

    def covered(p, c):
        d = torch.cdist(p.double(), c.double())
        return float((d <= radii(c)[None, :]).any(1).double().mean())
    p, r = precision_recall(real, fake, k=3)
    assert p == pytest.approx(covered(fake, real)) and r == pytest.approx(covered(real, fake))
    assert 0 < p < 1 and 0 < r < 1  # a partial overlap, so both branches are exercised
    assert precision_recall(real, real, k=3) == (1.0, 1.0)  # identical sets: the ceiling


def test_nearest_neighbours_match_brute_force():
    g = torch.Generator().manual_seed(5)
    q, ref = torch.rand(9, 4, generator=g), torch.rand(30, 4, generator=g)
    d, i = nearest_neighbours(q, ref, k=2)
    bf = torch.cdist(q.double(), ref.double())
    v, j = torch.sort(bf, dim=1)
    torch.testing.assert_close(d, v[:, :2])
    assert torch.equal(i, j[:, :2])


def test_collapsed_generator_scores_worse_than_real_data_everywhere():
    sp = load_dataset("digits")
    real, good = sp.test, sp.train[: len(sp.test)]
    collapsed = sp.train[:1].repeat(len(sp.test), 1)
    fd_good, fd_bad = frechet_distance(real, good), frechet_distance(real, collapsed)
    kid_good = kernel_inception_distance(real, good, subset_size=100)[0]
    kid_bad = kernel_inception_distance(real, collapsed, subset_size=100)[0]
    rec_good = precision_recall(real, good)[1]
    rec_bad = precision_recall(real, collapsed)[1]
    cov_good = class_coverage(sp.train_labels[: len(sp.test)], n_classes=10)["classes_present"]
    cov_bad = class_coverage(sp.train_labels[:1].repeat(50), n_classes=10)["classes_present"]
    assert fd_bad > 3 * fd_good and kid_bad > 3 * kid_good
    assert rec_good > 0.5 > 0.05 > rec_bad and cov_good == 1.0 > cov_bad


# The kernel-width heuristics: gmmn.api.median_sigmas and gmmn.training.blocks.median_distance
# build on gmmn.mmd.median_heuristic, so all three agree, on degenerate data too.

def test_median_widths_are_median_heuristics_with_its_fallbacks():
    from gmmn.api import MEDIAN_RATIOS, median_sigmas
    from gmmn.mmd import median_heuristic
    from gmmn.training.blocks import median_distance

    same = torch.ones(6, 3)  # every point equal: median and mean 0, so 1 (as gmmn.mmd says)
    assert median_distance(same) == median_heuristic(same[:2], same[2:]) == 1.0
    assert median_sigmas(same) == pytest.approx(MEDIAN_RATIOS)
    mostly = torch.zeros(5, 1)
    mostly[0] = 10.0  # 4 pairs at distance 10, 6 at 0: median 0, mean 4
    assert median_distance(mostly) == median_heuristic(mostly[:1], mostly[1:]) == 4.0
    assert median_sigmas(mostly) == pytest.approx(tuple(4.0 * r for r in MEDIAN_RATIOS))
    assert median_distance(mostly[:1]) == 1.0  # no pair at all


def test_median_heuristic_subsets_the_pooled_rows_by_its_seed():
    from gmmn.mmd import median_heuristic
    from gmmn.training.blocks import median_distance

    x = torch.rand(1500, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pick = torch.randperm(1500, generator=torch.Generator().manual_seed(3))[:1000]
    sub = x[pick]
    d = torch.cdist(sub, sub)
    expected = float(d[torch.triu_indices(1000, 1000, 1).unbind()].median())
    assert median_heuristic(x[:600], x[600:], seed=3) == expected
    assert median_distance(x, seed=3) == expected
