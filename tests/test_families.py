"""Switching a preset's family, the older family flags, and the estimator's and evaluation's
edges that the family layout touches (no training: unit tier)."""

from __future__ import annotations

import argparse

import pytest
import torch

from gmmn.cli.train import family_flag
from gmmn.errors import ConfigError
from gmmn.evaluate.report import evaluate_run
from gmmn.families import switch_family
from gmmn.presets import get_preset


def test_switching_family_applies_the_flags_before_checking():
    # A GMMN+AE cannot choose its kernel from the data; the explicit --sigmas that fixes
    # that must be part of the one check, not applied after it.
    cfg = switch_family(get_preset("tabular-gmmn"), "gmmn-ae", sigmas=(1.0,),
                        ae_hidden=(8, 4), ae_dropout=(0.1, 0.1))
    assert cfg.family == "gmmn-ae" and cfg.sigmas == (1.0,) and cfg.ae_hidden == (8, 4)
    with pytest.raises(ConfigError, match="give its --sigmas explicitly"):
        switch_family(get_preset("tabular-gmmn"), "gmmn-ae")
    dbn = switch_family(get_preset("tabular-gmmn"), "dbn", lr=0.1)  # the tabular lr is None
    assert dbn.lr == 0.1
    with pytest.raises(ConfigError, match="--cd-k is not a setting of the gmmn family; drop it "
                                          "or choose --family dbn"):
        switch_family(get_preset("digits-gmmn"), "gmmn", cd_k=2, lr=0.1)
    with pytest.raises(ConfigError, match=r"--cd-k is not a setting of the gmmn family \(preset "
                                          r"digits-gmmn\); drop it, or train a family that "
                                          r"has it \(--family\)"):
        get_preset("digits-gmmn").override(cd_k=2)


def _flags(**given) -> argparse.Namespace:
    return argparse.Namespace(**{"family": None, "autoencoder": None, "gan": None,
                                 "baseline": None, **given})


@pytest.mark.parametrize(("given", "current", "family"), [
    ({"autoencoder": True}, "gmmn", "gmmn-ae"),
    ({"autoencoder": False}, "gmmn-ae", "gmmn"),
    ({"autoencoder": False}, "gan", "gan"),  # --no-X leaves only family X
    ({"gan": False}, "gmmn-ae", "gmmn-ae"),
    ({"gan": True}, "gmmn", "gan"),
    ({"baseline": "none"}, "gmmn-ae", "gmmn-ae"),
    ({"baseline": "none"}, "dbn", "gmmn"),
    ({"baseline": "scae"}, "gmmn", "scae"),
    ({}, "gsn", None),
])
def test_the_older_family_flags_mean_what_they_meant(given, current, family):
    assert family_flag(_flags(**given), current) == family


def test_the_older_flags_refuse_what_they_refused():
    with pytest.raises(ConfigError, match="unknown --baseline 'gan'; choose dbn, scae, gsn"):
        family_flag(_flags(baseline="gan"), "gmmn")
    with pytest.raises(ConfigError, match="more than one model family"):
        family_flag(_flags(gan=True, autoencoder=True), "gmmn")


def test_evaluate_run_given_a_run_instead_of_a_sampler_says_what_to_pass(tmp_path):
    from gmmn.api import Run
    from gmmn.data import load_dataset

    run = Run(get_preset("digits-gmmn"), {}, torch.nn.Linear(1, 1), True)
    with pytest.raises(ConfigError, match=r"pass run.sampler\(\) \(and status=run.status\)"):
        evaluate_run(run, load_dataset("digits"), out_dir=tmp_path / "eval")
    assert not (tmp_path / "eval").exists()  # refused before anything was written


def test_a_loaded_estimator_clones_every_setting_it_trained_with():
    from gmmn.api import _other_settings

    cfg = get_preset("digits-gmmn").override(late_from=5, output="linear", iterations=7)
    assert _other_settings(cfg) == {"late_from": 5, "output": "linear"}  # iterations: a param
    ae = switch_family(get_preset("tabular-gmmn"), "gmmn-ae", sigmas=(1.0,), ae_lr=0.05)
    assert _other_settings(ae)["ae_lr"] == 0.05
