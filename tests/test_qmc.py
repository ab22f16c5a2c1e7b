"""Randomised QMC prior points (gmmn.qmc), copula samplers and pseudo-observations
(gmmn.copulas), and their use in sampling and training, against independent references:
scipy's discrepancy and rankdata, known integrals, known Kendall's tau, two-sample tests."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.stats import qmc as scipy_qmc

from gmmn.config import TrainConfig
from gmmn.copulas import (
    clayton_copula,
    clayton_theta,
    cvm_statistic,
    equicorrelation,
    kendall_tau,
    pobs,
    rho_from_tau,
    t_copula,
    t_copula_cdm,
)
from gmmn.errors import ConfigError, DataError
from gmmn.families.base import PriorSampler
from gmmn.families.chain import ChainSampler
from gmmn.models import GenerativeModel, Generator
from gmmn.qmc import EPS, MAX_DIM, inverse_cdf, prior_points, sobol_points
from gmmn.sampling import FunctionSampler


def _sampler(prior: str = "normal", *, dim: int = 2, prior_dim: int = 3) -> PriorSampler:
    g = Generator(prior_dim, (16,), dim, sigmoid_output=False, init_std=0.5,
                  generator=torch.Generator().manual_seed(0), prior=prior)
    return PriorSampler(GenerativeModel(g), {"dim": dim, "mean": None, "std": None},
                        what="a test model")


# --- Sobol' points --------------------------------------------------------------------------

def test_scrambled_sobol_has_lower_discrepancy_than_pseudo_random_points():
    n, d = 1024, 5
    rng = np.random.default_rng(0)
    sob = [scipy_qmc.discrepancy(sobol_points(n, d, seed=s)) for s in range(5)]
    mc = [scipy_qmc.discrepancy(rng.random((n, d))) for _ in range(5)]
    assert max(sob) < min(mc) / 5


def test_each_coordinate_is_stratified_one_point_per_interval():
    # a scrambled Sobol' net of 2^m points puts one point in each [k/n, (k+1)/n) per axis
    n = 256
    u = sobol_points(n, 4, seed=3)
    for j in range(4):
        assert np.array_equal(np.sort(np.floor(u[:, j] * n)), np.arange(n))
    # pseudo-random points are not
    v = np.random.default_rng(0).random((n, 4))
    assert len(np.unique(np.floor(v[:, 0] * n))) < n


def test_qmc_error_of_a_smooth_integral_falls_faster_than_root_n():
    # E[prod_j (1 + (U_j - 1/2))] = 1 over U ~ U[0, 1]^3; RMSE over 20 randomisations
    def rmse(n: int, qmc: bool) -> float:
        errs = []
        for s in range(20):
            u = sobol_points(n, 3, seed=s) if qmc else np.random.default_rng(s).random((n, 3))
            errs.append(np.prod(1 + (u - 0.5), axis=1).mean() - 1.0)
        return float(np.sqrt(np.mean(np.square(errs))))

    ns = (2**7, 2**12)
    rate = math.log(rmse(ns[1], True) / rmse(ns[0], True)) / math.log(ns[1] / ns[0])
    assert rate < -0.9  # MC: -0.5; scrambled nets reach about -1.5 here
    assert rmse(2**12, True) < rmse(2**12, False) / 10


def test_the_same_seed_gives_the_same_points_and_seeds_are_independent():
    a, b = sobol_points(64, 3, seed=7), sobol_points(64, 3, seed=7)
    assert np.array_equal(a, b)
    assert not np.allclose(a, sobol_points(64, 3, seed=8))
    assert np.array_equal(prior_points(64, 3, prior="normal", seed=7),
                          prior_points(64, 3, prior="normal", seed=7))


def test_one_call_is_one_sequence_not_restarted():
    # the first 128 of 256 points are the 128 points of the same randomisation
    assert np.array_equal(sobol_points(256, 2, seed=1)[:128], sobol_points(128, 2, seed=1))


def test_normal_inverse_cdf_stays_finite_at_the_ends():
    z = inverse_cdf(np.array([[0.0, 1.0, EPS / 2, 1 - EPS / 4, 0.5]]), "normal")
    assert np.isfinite(z).all()
    assert z[0, 0] == pytest.approx(stats.norm.ppf(EPS)) and z[0, 1] == -z[0, 0]
    assert abs(z).max() < 8.2 and z[0, 4] == 0.0
    u = inverse_cdf(np.array([[0.0, 0.25, 1.0]]), "uniform")
    assert u.tolist() == [[-1.0, -0.5, 1.0]]
    pts = prior_points(1024, 2, prior="normal", seed=0)
    assert torch.isfinite(pts).all() and pts.dtype == torch.float32


def test_a_count_other_than_a_power_of_two_warns_and_says_why():
    with pytest.warns(UserWarning, match="power of two.*balanced"):
        sobol_points(1000, 2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sobol_points(1024, 2, seed=0)


def test_bad_input_is_one_clear_error():
    with pytest.raises(ConfigError, match="prior dimension from 1 to 21201"):
        sobol_points(8, MAX_DIM + 1)
    with pytest.raises(ConfigError, match="prior dimension"):
        sobol_points(8, 0)
    with pytest.raises(DataError, match="number of Sobol' points"):
        sobol_points(0, 2)
    with pytest.raises(ConfigError, match="unknown prior"):
        inverse_cdf(np.zeros((1, 1)), "cauchy")
    with pytest.raises(ConfigError, match="qmc must be True"):
        _sampler().sample(8, seed=0, qmc="yes")


# --- samplers -------------------------------------------------------------------------------

def test_the_default_pseudo_random_path_is_unchanged():
    s = _sampler("uniform")
    expected = s.model.sample(32, generator=torch.Generator().manual_seed(5))
    assert torch.equal(s.sample(32, seed=5), expected)
    assert torch.equal(s.sample(32, seed=5, qmc=False), expected)


@pytest.mark.parametrize("prior", ["uniform", "normal"])
def test_a_generator_fed_sobol_points_has_the_pseudo_random_distribution(prior):
    s = _sampler(prior)
    x = s.sample(4096, seed=1, qmc=True).numpy()
    y = s.sample(4096, seed=2).numpy()
    assert np.isfinite(x).all()
    pairs = [(x[:, 0], y[:, 0]), (x[:, 1], y[:, 1]), (x.sum(1), y.sum(1)),
             (x[:, 0] - x[:, 1], y[:, 0] - y[:, 1])]
    for a, b in pairs:  # Kolmogorov-Smirnov two-sample tests, Bonferroni over 4 at 1%
        assert stats.ks_2samp(a, b).pvalue > 0.0025
    assert torch.equal(s.sample(256, seed=9, qmc=True), s.sample(256, seed=9, qmc=True))
    assert not torch.equal(s.sample(256, seed=9, qmc=True), s.sample(256, seed=9))


def test_samplers_without_a_prior_refuse_qmc():
    chain = ChainSampler.__new__(ChainSampler)
    with pytest.raises(ConfigError, match="Markov chain.*drop qmc"):
        chain.sample(8, seed=0, qmc=True)
    fn = FunctionSampler(lambda n, seed=None: torch.zeros(n, 2))
    assert fn.sample(4, seed=0).shape == (4, 2)


# --- copulas --------------------------------------------------------------------------------

def test_pobs_are_scipy_ranks_over_n_plus_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x[:10, 1] = 0.5  # ties: average ranks
    expected = np.column_stack([stats.rankdata(x[:, j]) for j in range(3)]) / 201
    assert np.allclose(pobs(x), expected)
    assert np.allclose(pobs(pobs(x)), pobs(x))  # idempotent
    assert pobs(x).min() > 0 and pobs(x).max() < 1
    with pytest.raises(DataError, match="finite"):
        pobs(np.array([[np.nan, 1.0]]))


def test_the_t_copula_has_the_kendall_tau_it_was_set_from():
    corr = equicorrelation(4, rho_from_tau(0.5))
    u = t_copula(4000, df=4, corr=corr, seed=0)
    tau = kendall_tau(u)[np.triu_indices(4, 1)]
    assert np.allclose(tau, 0.5, atol=0.03)
    assert ((u > 0) & (u < 1)).all()


def test_the_conditional_distribution_method_gives_the_same_t_copula():
    corr = equicorrelation(3, rho_from_tau(0.3))
    v = t_copula_cdm(sobol_points(4096, 3, seed=0), df=4, corr=corr)
    assert np.allclose(kendall_tau(v)[np.triu_indices(3, 1)], 0.3, atol=0.03)
    w = t_copula(4096, df=4, corr=corr, seed=1)
    for j in range(3):
        assert stats.ks_2samp(v[:, j], w[:, j]).pvalue > 0.003
    assert stats.ks_2samp(v.max(1), w.max(1)).pvalue > 0.003


def test_the_clayton_copula_has_its_kendall_tau_and_lower_tail_dependence():
    u = clayton_copula(4000, theta=clayton_theta(0.5), d=3, seed=0)
    assert np.allclose(kendall_tau(u)[np.triu_indices(3, 1)], 0.5, atol=0.03)
    # lower tail dependence 2^(-1/theta) = 2^-0.5 ~ 0.71: P(U2 < q | U1 < q) for small q
    q = 0.02
    lam = ((u[:, 0] < q) & (u[:, 1] < q)).mean() / q
    assert 0.5 < lam < 0.9


def test_copula_inputs_are_checked():
    with pytest.raises(ConfigError, match="Kendall's tau"):
        clayton_theta(1.5)
    with pytest.raises(ConfigError, match="correlation"):
        t_copula(8, df=4, corr=[[1, 2], [2, 1]])
    with pytest.raises(ConfigError, match="degrees of freedom"):
        t_copula(8, df=0, corr=equicorrelation(2, 0.1))
    with pytest.raises(ConfigError, match="theta"):
        clayton_copula(8, theta=-1.0, d=2)


def test_the_cvm_statistic_separates_a_wrong_copula():
    corr = equicorrelation(3, rho_from_tau(0.5))
    ref = t_copula(20000, df=4, corr=corr, seed=0)
    same = cvm_statistic(t_copula(500, df=4, corr=corr, seed=1), ref)
    indep = cvm_statistic(np.random.default_rng(2).random((500, 3)), ref)
    assert same < indep / 10


# --- the pobs transform ---------------------------------------------------------------------

def test_the_transform_is_a_checked_run_field():
    from gmmn.presets import get_preset

    cfg = get_preset("tabular-gmmn").override(transform="pobs")
    assert cfg.transform == "pobs" and '"transform": "pobs"' in cfg.to_json()
    with pytest.raises(ConfigError, match="unknown --transform"):
        cfg.override(transform="ranks")
    with pytest.raises(ConfigError, match="drop --standardize"):
        cfg.override(standardize=True)
    assert TrainConfig.__dataclass_fields__["transform"].default is None


@pytest.mark.integration
def test_a_pobs_run_records_its_transform_and_samples_the_copula_scale(tmp_path):
    from gmmn.api import GMMN, load_run

    x = np.random.default_rng(0).standard_t(4, size=(256, 2)) * 50 + 10
    model = GMMN(iterations=30, hidden=(16,), prior_dim=2, progress=False,
                 config_overrides={"transform": "pobs", "prior": "normal"}).fit(x)
    assert model.run_.data["transform"] == "pobs" and model.config_.transform == "pobs"
    assert not model.config_.standardize
    s = model.sample(512, seed=0, qmc=True)
    assert s.shape == (512, 2) and (s >= 0).all() and (s <= 1).all()
    assert np.array_equal(s, model.sample(512, seed=0, qmc=True))
    model.save(tmp_path / "m.pt")
    run = load_run(tmp_path / "m.pt")
    assert run.data["transform"] == "pobs"
    assert torch.equal(run.sample(64, seed=3, qmc=True),
                       torch.from_numpy(model.sample(64, seed=3, qmc=True)))


@pytest.mark.integration
def test_gmmn_sample_qmc_on_the_command_line(tmp_path):
    from gmmn.api import GMMN
    from gmmn.cli import main

    x = np.random.default_rng(0).random((128, 2))
    model = GMMN(iterations=5, hidden=(8,), prior_dim=2, progress=False).fit(x)
    model.save(tmp_path / "m.pt")
    assert main(["sample", "--run", str(tmp_path / "m.pt"), "--n", "64", "--seed", "4",
                 "--qmc", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "s.npy"), model.sample(64, seed=4, qmc=True))
