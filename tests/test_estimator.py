"""GMMN as a scikit-learn estimator: parameters, cloning, fitted state, random_state, and
scikit-learn's own estimator checks (those that apply to an unsupervised generative model)."""

from __future__ import annotations

import functools
import inspect
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from gmmn import GMMN
from gmmn.api import NotFittedError, array_splits
from gmmn.errors import ConfigError, DataError
from gmmn.presets import get_preset

# Small and fast: a few dozen iterations of a one-layer generator.
TINY = {"iterations": 20, "hidden": (8,), "sample_batch_size": 32, "progress": False}
# Smaller still for scikit-learn's checks, which fit about 30 times on arrays of 10-100 rows.
CHECK_PARAMS = {"iterations": 3, "hidden": (4,), "sample_batch_size": 8, "progress": False}

# scikit-learn checks that do not apply to GMMN, each with the reason (docs/training.md,
# "Python API", lists the same).
SKIPPED_CHECKS = {
    # Nothing to check: these only call predict, transform, decision_function, predict_proba,
    # score_samples or score, which a generative model without a density does not have (it
    # has sample). Each would fit and then compare nothing.
    "check_estimators_unfitted": "calls predict-like methods only; "
                                 "test_unfitted_use_raises_not_fitted_error covers sample/save",
    "check_dict_unchanged": "compares __dict__ around predict-like methods only",
    "check_fit2d_predict1d": "calls predict-like methods on 1-d input only",
    "check_methods_subset_invariance": "compares predict-like methods on batches only",
    "check_methods_sample_order_invariance": "compares predict-like methods only",
    "check_fit_idempotent": "compares predict-like outputs only; "
                            "test_random_state_makes_fits_reproducible refits and compares "
                            "samples",
    # Applicable, but the check demands scikit-learn's exact wording where gmmn raises its own
    # DataError (a ValueError) with gmmn's: test_unusable_data_is_one_data_error checks those.
    "check_complex_data": "wants 'Complex data not supported'; gmmn says 'complex-valued'",
    "check_fit2d_1sample": "wants '1 sample' in the message; gmmn says 'an (N, D) array with "
                           "N >= 2, got shape (1, 10)'",
    "check_estimators_empty_data_messages": "wants '0 feature(s) (shape=(12, 0)) while a "
                                            "minimum of 1 is required'; gmmn says 'empty "
                                            "(shape (12, 0))'",
    "check_dtype_object": "wants object arrays of numbers accepted and a TypeError for a dict "
                          "in one; gmmn refuses any object array with a DataError "
                          "('non-numeric dtype object')",
    # scikit-learn skips it itself unless SCIPY_ARRAY_API=1 is set.
    "check_array_api_input": "GMMN does not declare array API support: fit converts its "
                             "input to a CPU float32 tensor itself",
}


def _check_name(check) -> str:
    while isinstance(check, functools.partial):
        check = check.func
    return check.__name__


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    # Outside [0, 1]: the tabular preset standardises and picks the linear output's lr.
    return np.random.default_rng(0).normal(size=(60, 3)) * 2 + 5


@pytest.fixture(scope="module")
def fitted(x) -> GMMN:
    return GMMN(random_state=3, **TINY).fit(x)


# --- parameters -------------------------------------------------------------------------------

def test_get_params_returns_every_init_argument_stored_unchanged():
    given = {"preset": "digits-gmmn", "autoencoder": False, "iterations": 7, "lr": 0.05,
             "momentum": 0.5, "hidden": [8, 4], "prior_dim": 5, "sigmas": [1.0, 2.0],
             "sigma_weights": [1.0, 0.5], "standardize": True, "data_batch_size": 16,
             "sample_batch_size": 32, "ae_hidden": [8, 2], "ae_dropout": [0.1, 0.1],
             "pretrain_iterations": 2, "finetune_iterations": 3,
             "config_overrides": {"late_from": 3}, "device": "cpu", "random_state": 9,
             "progress": "stages"}
    assert set(given) == set(inspect.signature(GMMN).parameters)  # every parameter covered
    model = GMMN(**given)
    params = model.get_params()
    assert params == given
    for name, value in given.items():  # the very objects given: no copy, no conversion
        assert params[name] is value, name


def test_every_parameter_is_keyword_only_and_defaults_to_todays_behaviour():
    sig = inspect.signature(GMMN)
    assert all(p.kind is p.KEYWORD_ONLY for p in sig.parameters.values())
    defaults = {k: p.default for k, p in sig.parameters.items()}
    assert defaults.pop("sigmas") == "median" and defaults.pop("random_state") == 0
    assert defaults.pop("device") == "cpu" and defaults.pop("progress") is True
    assert defaults.pop("autoencoder") is False
    assert all(v is None for v in defaults.values()), defaults  # None: the preset's value


def test_set_params_changes_what_fit_trains_and_refuses_unknown_names(x):
    model = GMMN()
    assert model.set_params(lr=0.05, random_state=4, hidden=(6,)) is model
    assert (model.lr, model.random_state, model.hidden) == (0.05, 4, (6,))
    cfg = model._config(array_splits(x))
    assert (cfg.lr, cfg.seed, cfg.hidden) == (0.05, 4, (6,))
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        model.set_params(bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        GMMN(bogus=1)  # no **overrides any more: config_overrides takes other fields


def test_parameters_reach_the_config_and_unset_ones_keep_the_preset(x):
    splits = array_splits(x)
    base = get_preset("digits-gmmn")
    plain = GMMN(preset="digits-gmmn")._config(splits)
    # Only what fit itself decides differs from the preset: data, seed, device, no periodic
    # checkpoints, the linear output's lr, median kernel scales, the batch capped at N.
    assert plain.momentum == base.momentum and plain.hidden == base.hidden
    assert plain.prior_dim == base.prior_dim and plain.standardize is base.standardize
    assert plain.lr is None and plain.sigmas is None and plain.data_batch_size == len(x)
    assert plain.checkpoint_every == 0 and plain.seed == 0 and plain.device == "cpu"
    cfg = GMMN(preset="digits-gmmn", iterations=np.int64(7), lr=np.float32(0.25),
               momentum=0.5, hidden=[8, np.int64(4)], prior_dim=5, sigmas=[1, 2],
               sigma_weights=np.array([1.0, 0.5]), standardize=True, data_batch_size=16,
               sample_batch_size=32, random_state=np.uint32(9),
               config_overrides={"late_from": 3, "late_momentum": 0.95}
               )._config(splits)
    assert (cfg.iterations, cfg.lr, cfg.momentum, cfg.hidden) == (7, 0.25, 0.5, (8, 4))
    assert (cfg.prior_dim, cfg.sigmas, cfg.sigma_weights) == (5, (1.0, 2.0), (1.0, 0.5))
    assert (cfg.standardize, cfg.data_batch_size, cfg.sample_batch_size) == (True, 16, 32)
    assert (cfg.seed, cfg.late_from, cfg.late_momentum) == (9, 3, 0.95)
    assert type(cfg.iterations) is int and type(cfg.seed) is int  # numpy values converted
    ae = GMMN(autoencoder=True, ae_hidden=(8, 2), ae_dropout=(0.1, 0.2),
              pretrain_iterations=2, finetune_iterations=3)._config(splits)
    assert ae.preset == "digits-gmmn-ae" and ae.family == "gmmn-ae"
    assert (ae.ae_hidden, ae.ae_dropout) == ((8, 2), (0.1, 0.2))
    assert (ae.pretrain_iterations, ae.finetune_iterations) == (2, 3)
    assert ae.sigmas == get_preset("digits-gmmn-ae").sigmas  # "median": kept for codes


def test_auto_leaves_a_setting_to_the_data_whatever_the_preset(x):
    cfg = GMMN(preset="digits-gmmn", standardize="auto", prior_dim="auto",
               data_batch_size="auto")._config(array_splits(x))
    assert cfg.standardize is None and cfg.prior_dim is None and cfg.data_batch_size is None
    unit = array_splits(np.random.default_rng(0).uniform(size=(40, 3)))
    assert GMMN(preset="digits-gmmn")._config(unit).lr == 2.0  # the preset's
    assert GMMN(preset="digits-gmmn", lr="auto")._config(unit).lr is None


def test_config_overrides_refuses_fields_set_elsewhere_and_unknown_ones(x):
    splits = array_splits(x)
    for fields, message in [({"lr": 0.1}, r"sets lr \(use GMMN\(lr=\.\.\.\)\)"),
                            ({"seed": 1}, r"seed \(use GMMN\(random_state=\.\.\.\)\)"),
                            ({"dataset": "mnist"}, r"dataset \(fit\(X\) trains on X\)"),
                            ({"preset": "x"}, r"preset \(use GMMN\(preset=\.\.\.\)\)"),
                            ({"bogus": 1}, r"unknown config field\(s\) \['bogus'\]"),
                            ({"baseline": "dbn"}, r"unknown config field\(s\) \['baseline'\]"),
                            ([("late_from", 3)], "must be a dict")]:
        with pytest.raises(ConfigError, match=message):
            GMMN(config_overrides=fields)._config(splits)


@pytest.mark.integration
def test_bad_values_are_config_errors_from_fit_not_from_init(x):
    model = GMMN(lr=-1.0, hidden="8", sigmas="abc")  # stored as given: no check in __init__
    assert model.lr == -1.0
    with pytest.raises(ConfigError, match="hidden must be a sequence"):
        model.fit(x)
    with pytest.raises(ConfigError, match="--lr must be positive"):
        GMMN(lr=-1.0).fit(x)


# --- random_state -----------------------------------------------------------------------------

@pytest.mark.integration
def test_random_state_makes_fits_reproducible(x, fitted):
    again = GMMN(random_state=3, **TINY).fit(x)
    assert np.array_equal(again.sample(50, seed=0), fitted.sample(50, seed=0))
    refit = again.fit(x)  # a second fit of the same estimator: the same model again
    assert np.array_equal(refit.sample(50, seed=0), fitted.sample(50, seed=0))
    other = GMMN(random_state=4, **TINY).fit(x)
    assert not np.allclose(other.sample(50, seed=0), fitted.sample(50, seed=0))
    assert (fitted.config_.seed, other.config_.seed) == (3, 4)


def test_random_state_none_draws_a_seed_from_numpys_global_rng(x):
    splits, state = array_splits(x), np.random.get_state()
    try:
        np.random.seed(11)
        first = GMMN(random_state=None)._config(splits).seed
        second = GMMN(random_state=None)._config(splits).seed
        np.random.seed(11)
        repeated = GMMN(random_state=None)._config(splits).seed
    finally:
        np.random.set_state(state)
    assert first == repeated and first != second and 0 <= first < 2**32


@pytest.mark.parametrize("bad", [np.random.RandomState(0), np.random.default_rng(0), -1,
                                 2**32, True, 1.5, "0"])
def test_random_state_refuses_numpy_generators_and_non_seeds(x, bad):
    with pytest.raises(ConfigError, match="random_state must be a whole number"):
        GMMN(random_state=bad)._config(array_splits(x))


# --- fitted state -----------------------------------------------------------------------------

def test_unfitted_use_raises_not_fitted_error(tmp_path):
    model = GMMN()
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(model)
    for use in (lambda: model.sample(3), lambda: model.save(tmp_path / "m.pt")):
        with pytest.raises(NotFittedError, match="not fitted yet; call fit") as info:
            use()
        # scikit-learn's error for scikit-learn code, gmmn's DataError for gmmn's callers
        assert isinstance(info.value, SklearnNotFittedError)
        assert isinstance(info.value, DataError)
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.integration
def test_fit_sets_the_fitted_attributes_and_keeps_the_parameters(x, fitted):
    check_is_fitted(fitted)
    assert fitted.n_features_in_ == 3
    assert fitted.config_ is fitted.run_.config and fitted.config_.preset == "tabular-gmmn"
    assert fitted.chosen_["standardize"] is True and fitted.chosen_["lr"] == 0.1
    assert set(fitted.chosen_) == {"standardize", "data_batch_size", "sigmas", "prior_dim",
                                   "lr"}
    assert fitted.fit_check_ is not None and not fitted.fit_check_.binding  # 20 iterations
    assert fitted.get_params() == GMMN(random_state=3, **TINY).get_params()  # untouched
    assert fitted.sample(4).shape == (4, 3)


@pytest.mark.integration
def test_clone_round_trip_gives_an_unfitted_copy(fitted):
    model = GMMN(config_overrides={"late_from": 5}, hidden=[8], **{
        k: v for k, v in TINY.items() if k != "hidden"})
    copy = clone(model)
    assert copy.get_params() == model.get_params() and copy is not model
    assert copy.config_overrides is not model.config_overrides  # deep-copied
    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params()
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(twin)
    assert not hasattr(twin, "run_") and not hasattr(twin, "_state")
    check_is_fitted(fitted)  # the original stays fitted


@pytest.mark.integration
def test_pickle_and_load_keep_the_fitted_model(tmp_path, fitted):
    s = fitted.sample(20, seed=1)
    assert np.array_equal(pickle.loads(pickle.dumps(fitted)).sample(20, seed=1), s)
    fitted.save(tmp_path / "m.pt")
    loaded = GMMN.load(tmp_path / "m.pt")
    check_is_fitted(loaded)
    assert np.array_equal(loaded.sample(20, seed=1), s)
    assert loaded.n_features_in_ == 3 and loaded.chosen_ is None and loaded.fit_check_ is None
    params = loaded.get_params()  # the stored config's values, chosen ones included
    assert params["random_state"] == 3 and params["preset"] == "tabular-gmmn"
    assert params["lr"] == 0.1 and params["standardize"] is True
    assert params["sigmas"] == fitted.config_.sigmas and params["hidden"] == (8,)
    cfg = clone(loaded)._config(array_splits(np.zeros((60, 3)) + np.arange(3)))
    assert (cfg.lr, cfg.sigmas, cfg.seed) == (0.1, fitted.config_.sigmas, 3)


@pytest.mark.integration
def test_progress_is_a_parameter_and_fit_can_override_it(x, capsys):
    model = GMMN(**{**TINY, "progress": "stages"})
    model.fit(x)
    assert "stage gmmn" in capsys.readouterr().err
    model.fit(x, progress=False)
    assert "stage gmmn" not in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.parametrize("data, message", [
    (np.ones((1, 3)), r"N >= 2, got shape \(1, 3\)"),
    (np.empty((12, 0)), r"empty \(shape \(12, 0\)\)"),
    (np.ones((10, 2)) * 1j, "complex-valued"),
    (np.ones((10, 2), dtype=object), "non-numeric dtype object"),
    (np.ones(10), r"an \(N, D\) array"),
])
def test_unusable_data_is_one_data_error(data, message):
    # What the skipped wording checks exercise: refused before training, as a ValueError.
    with pytest.raises(DataError, match=message):
        GMMN(**TINY).fit(data)


# --- scikit-learn's estimator checks ----------------------------------------------------------

_CHECKS = parametrize_with_checks([GMMN(**CHECK_PARAMS)])


@pytest.mark.integration
@_CHECKS
def test_sklearn_estimator_checks(estimator, check):
    name = _check_name(check)
    if name in SKIPPED_CHECKS:
        pytest.skip(f"{name}: {SKIPPED_CHECKS[name]}")
    check(estimator)


def test_every_skipped_check_exists_and_is_listed_in_the_docs():
    params = _CHECKS.mark.args[1]
    names = {_check_name(getattr(p, "values", p)[1]) for p in params}
    assert set(SKIPPED_CHECKS) <= names, set(SKIPPED_CHECKS) - names
    assert len(names - set(SKIPPED_CHECKS)) >= 25  # most checks do run
    docs = (Path(__file__).parents[1] / "docs" / "training.md").read_text()
    section = docs.split("## Python API", 1)[1].split("\n## ", 1)[0]
    missing = [n for n in SKIPPED_CHECKS if f"`{n}`" not in section]
    assert not missing, f"docs/training.md's Python API section does not list {missing}"
